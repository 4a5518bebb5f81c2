"""Tenant files are written without following links a tenant planted."""

from __future__ import annotations

import os
import uuid

import pytest
from yourclaw_host_agent.errors import InvalidSpec
from yourclaw_host_agent.layout import DataLayout, remove_tree, write_files


@pytest.fixture
def layout(tmp_path):
    return DataLayout(tmp_path / "data")


@pytest.fixture
def outside(tmp_path):
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "secret.txt").write_text("host secret")
    return victim


class TestWriteFiles:
    def test_writes_files_with_private_config(self, layout):
        paths = layout.user(uuid.uuid4())

        write_files(
            paths,
            {"config/openclaw.json": "{}", "workspace/notes/CLAUDE.md": "hi"},
            data_root=layout.root,
        )

        assert (paths.config / "openclaw.json").read_text() == "{}"
        assert (paths.config / "openclaw.json").stat().st_mode & 0o777 == 0o600
        assert paths.config.stat().st_mode & 0o777 == 0o700
        assert (paths.workspace / "notes" / "CLAUDE.md").read_text() == "hi"

    def test_a_planted_folder_link_is_refused(self, layout, outside):
        paths = layout.user(uuid.uuid4())
        write_files(paths, {"workspace/a.md": "x"}, data_root=layout.root)
        # The tenant replaces a folder we write into with a link to the host.
        os.symlink(outside, paths.workspace / "notes")

        with pytest.raises(InvalidSpec, match="not a plain folder"):
            write_files(paths, {"workspace/notes/secret.txt": "pwned"})

        assert (outside / "secret.txt").read_text() == "host secret"

    def test_a_planted_file_link_is_replaced_not_followed(self, layout, outside):
        paths = layout.user(uuid.uuid4())
        write_files(paths, {"config/openclaw.json": "{}"}, data_root=layout.root)
        target = paths.config / "openclaw.json"
        target.unlink()
        target.symlink_to(outside / "secret.txt")

        write_files(paths, {"config/openclaw.json": '{"new": 1}'})

        assert not target.is_symlink()
        assert target.read_text() == '{"new": 1}'
        assert (outside / "secret.txt").read_text() == "host secret"

    def test_a_linked_config_folder_is_refused(self, layout, outside):
        paths = layout.user(uuid.uuid4())
        paths.root.mkdir(parents=True)
        paths.config.symlink_to(outside)

        with pytest.raises(InvalidSpec):
            write_files(paths, {"config/secret.txt": "pwned"})

        assert (outside / "secret.txt").read_text() == "host secret"

    def test_a_user_folder_leading_outside_the_data_dir_is_refused(
        self, layout, outside
    ):
        paths = layout.user(uuid.uuid4())
        layout.root.mkdir(parents=True)
        paths.root.symlink_to(outside)

        with pytest.raises(InvalidSpec, match="outside the host's data dir"):
            write_files(paths, {"config/x": "y"}, data_root=layout.root)


class TestRemoveTree:
    def test_a_planted_link_is_removed_not_its_target(self, layout, outside):
        paths = layout.user(uuid.uuid4())
        paths.root.mkdir(parents=True)
        paths.config.symlink_to(outside)

        remove_tree(paths.config, data_root=layout.root)

        assert not paths.config.exists()
        assert (outside / "secret.txt").exists()

    def test_a_warm_spare_link_takes_its_folder_along(self, layout):
        spare = layout.root / "_warm" / "0"
        spare.mkdir(parents=True)
        paths = layout.user(uuid.uuid4())
        paths.root.symlink_to(spare)

        remove_tree(paths.root, data_root=layout.root)

        assert not paths.root.exists()
        assert not spare.exists()
