"""Tenant files are written without following links a tenant planted."""

from __future__ import annotations

import os
import uuid

import pytest
from yourclaw_common.events import ContainerSpec, container_name
from yourclaw_host_agent.errors import InvalidSpec
from yourclaw_host_agent.layout import (
    DataLayout,
    remove_tree,
    validate_spec,
    write_files,
)


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


USER = uuid.UUID("6f1c2c3e-8d8c-4b0e-9a57-0d7c1b9b5a01")


def _spec(**fields):
    return ContainerSpec(
        user_id=USER, name=container_name(USER), port=19100, spec_hash="h", **fields
    )


class TestRemoveFiles:
    def test_writes_the_files_and_deletes_the_removed_ones(self, tmp_path):
        paths = DataLayout(tmp_path).user(USER)
        (paths.workspace).mkdir(parents=True)
        (paths.workspace / "AGENTS.md").write_text("OpenClaw's template")
        (paths.workspace / "USER.md").write_text("Name: Ada")
        spec = _spec(
            files={"workspace/CLAUDE.md": "ours"},
            remove_files=("workspace/AGENTS.md", "workspace/SOUL.md"),
        )
        validate_spec(spec)

        write_files(paths, dict(spec.files), spec.remove_files)

        assert not (paths.workspace / "AGENTS.md").exists()
        assert (paths.workspace / "USER.md").read_text() == "Name: Ada"
        assert (paths.workspace / "CLAUDE.md").read_text() == "ours"

    @pytest.mark.parametrize(
        "rel", ["../other/workspace/AGENTS.md", "/etc/passwd", "run/gateway.pid"]
    )
    def test_a_removal_outside_config_or_workspace_is_refused(self, rel):
        with pytest.raises(InvalidSpec):
            validate_spec(_spec(remove_files=(rel,)))

    def test_a_removal_through_a_planted_link_deletes_nothing_outside(self, tmp_path):
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "AGENTS.md").write_text("host file")
        paths = DataLayout(tmp_path / "data").user(USER)
        paths.root.mkdir(parents=True)
        (paths.workspace / "sub").parent.mkdir()
        (paths.workspace / "sub").symlink_to(outside)

        write_files(paths, {}, ("workspace/sub/AGENTS.md",))

        assert (outside / "AGENTS.md").read_text() == "host file"

    def test_a_removed_file_that_is_a_link_goes_its_target_stays(self, tmp_path):
        outside = tmp_path / "outside.md"
        outside.write_text("host file")
        paths = DataLayout(tmp_path / "data").user(USER)
        paths.workspace.mkdir(parents=True)
        (paths.workspace / "AGENTS.md").symlink_to(outside)

        write_files(paths, {}, ("workspace/AGENTS.md",))

        assert not (paths.workspace / "AGENTS.md").is_symlink()
        assert outside.read_text() == "host file"
