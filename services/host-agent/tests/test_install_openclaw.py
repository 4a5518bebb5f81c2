from __future__ import annotations

import json

import pytest
from yourclaw_host_agent import install_openclaw
from yourclaw_host_agent.install_openclaw import (
    OPENCLAW_VERSION,
    ensure_openclaw,
    installed_version,
)


def _fake_install(home, version: str, *, marker: bool = True) -> None:
    package = home / "node_modules" / "openclaw"
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"version": version}))
    if marker:
        (home / ".installed").write_text(version + "\n")


class TestEnsureOpenclaw:
    def test_installed_version_is_a_noop(self, tmp_path, monkeypatch, capsys):
        _fake_install(tmp_path, OPENCLAW_VERSION)
        monkeypatch.setattr(install_openclaw.subprocess, "run", _no_npm)

        entry = ensure_openclaw(tmp_path)

        assert entry == tmp_path.resolve() / "node_modules/openclaw/openclaw.mjs"
        assert "already installed" in capsys.readouterr().err

    def test_half_finished_install_does_not_count(self, tmp_path):
        _fake_install(tmp_path, OPENCLAW_VERSION, marker=False)

        assert installed_version(tmp_path) is None

    def test_other_version_does_not_count(self, tmp_path):
        _fake_install(tmp_path, "2026.1.1")

        assert installed_version(tmp_path) == "2026.1.1"
        assert installed_version(tmp_path) != OPENCLAW_VERSION

    def test_npm_failure_is_reported(self, tmp_path, monkeypatch):
        class Done:
            returncode = 1

        monkeypatch.setattr(install_openclaw.subprocess, "run", lambda *a, **k: Done())

        with pytest.raises(RuntimeError, match="npm install openclaw@"):
            ensure_openclaw(tmp_path / "oc", say=False)
        assert installed_version(tmp_path / "oc") is None


def _no_npm(*args, **kwargs):
    raise AssertionError("npm must not run when the pinned version is installed")
