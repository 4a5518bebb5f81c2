"""The config render.py writes is valid for the pinned OpenClaw: its own
`openclaw config validate` (strict: an unknown key is an error) accepts it.

The first check after the pin moves (docs/openclaw.md): a release that renamed
or dropped a key we write fails here in seconds, naming the key, before any
gateway boots."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from yourclaw_common.models import DEFAULT_MODEL
from yourclaw_host_agent.install_openclaw import node_bin_dir, openclaw_entry
from yourclaw_provisioner.render import (
    CONFIG_FILE,
    MCP_IDLE_TTL_SECONDS,
    GatewaySecrets,
    build_spec,
)

pytestmark = pytest.mark.slow  # the openclaw CLI in a subprocess, seconds each


def _rendered() -> dict[str, Any]:
    spec = build_spec(
        user_id=uuid.uuid4(),
        assistant_id=uuid.uuid4(),
        port=18789,
        model=DEFAULT_MODEL,
        secrets=GatewaySecrets(
            gateway_token="g" * 43, notify_secret="n" * 43, proxy_token="p" * 43
        ),
        llm_proxy_url="http://127.0.0.1:8790",
        image="yourclaw-openclaw:latest",
    )
    config: dict[str, Any] = json.loads(spec.files[CONFIG_FILE])
    return config


def _validate(openclaw_dir: Path, tmp_path: Path, config: dict[str, Any]) -> Any:
    """`openclaw config validate --json` on `config`, with the environment the
    runtimes give a gateway (its own state dir and home, nothing inherited)."""
    state, home = tmp_path / "config", tmp_path / "home"
    state.mkdir()
    home.mkdir()
    (state / "openclaw.json").write_text(json.dumps(config))
    cli = [str(node_bin_dir() / "node"), str(openclaw_entry(openclaw_dir))]
    done = subprocess.run(
        [*cli, "config", "validate", "--json"],
        env={
            "PATH": f"{node_bin_dir()}:/usr/bin:/bin",
            "HOME": str(home),
            "OPENCLAW_HOME": str(home),
            "OPENCLAW_STATE_DIR": str(state),
            "OPENCLAW_CONFIG_PATH": str(state / "openclaw.json"),
            "OPENCLAW_WORKSPACE_DIR": str(tmp_path / "workspace"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def test_the_rendered_config_is_valid_for_the_pinned_openclaw(openclaw_dir, tmp_path):
    config = _rendered()
    # The idle browser's eviction, a key OpenClaw's doctor once removed.
    assert config["mcp"]["sessionIdleTtlMs"] == MCP_IDLE_TTL_SECONDS * 1000

    code, report = _validate(openclaw_dir, tmp_path, config)

    assert report.get("issues") is None, report["issues"]
    assert report["valid"] is True
    assert report["warnings"] == []
    assert code == 0


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (("gateway", "http", "endpoints"), "chatCompletionz"),
        (("tools",), "allowlist"),
    ],
)
def test_a_key_the_pinned_openclaw_does_not_know_is_refused(
    openclaw_dir, tmp_path, path, key
):
    """The check is strict, as a new release's schema would be: a renamed key
    is named, not ignored."""
    config = _rendered()
    section = config
    for part in path:
        section = section[part]
    section[key] = {"enabled": True}

    code, report = _validate(openclaw_dir, tmp_path, config)

    assert code != 0
    assert report["valid"] is False
    assert {"path": ".".join(path), "message": f'Unrecognized key: "{key}"'} in (
        report["issues"]
    )
