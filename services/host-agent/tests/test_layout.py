import uuid

import pytest
from yourclaw_common.events import ContainerSpec, container_name
from yourclaw_host_agent.errors import InvalidSpec
from yourclaw_host_agent.layout import DataLayout, validate_spec, write_files

USER = uuid.UUID("6f1c2c3e-8d8c-4b0e-9a57-0d7c1b9b5a01")


def _spec(**fields):
    return ContainerSpec(
        user_id=USER, name=container_name(USER), port=19100, spec_hash="h", **fields
    )


class TestWriteFiles:
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
        paths.workspace.symlink_to(outside)

        write_files(paths, {}, ("workspace/AGENTS.md",))

        assert (outside / "AGENTS.md").read_text() == "host file"
