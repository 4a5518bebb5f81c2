"""The stand-ins serve only where YOURCLAW_ENV=dev is said outright."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from yourclaw_common.embedded import free_port
from yourclaw_devkit.devsim import DevsimSettings, NotDevError, require_dev


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "YOURCLAW_ENV"}
    env.update(values)
    return env


class TestRequireDev:
    def test_unset_is_refused(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)  # no .env
        monkeypatch.delenv("YOURCLAW_ENV", raising=False)

        with pytest.raises(NotDevError, match="unless YOURCLAW_ENV=dev"):
            require_dev(DevsimSettings())

    @pytest.mark.parametrize("value", ["production", "Dev", "development", ""])
    def test_anything_but_dev_is_refused(self, value):
        with pytest.raises(NotDevError):
            require_dev(DevsimSettings(_env_file=None, yourclaw_env=value))

    def test_dev_is_allowed(self):
        require_dev(DevsimSettings(_env_file=None, yourclaw_env="dev"))


class TestCli:
    @pytest.mark.parametrize("env", [{"YOURCLAW_ENV": "production"}, {}])
    def test_refuses_to_start_outside_dev(self, tmp_path, env):
        done = subprocess.run(
            [sys.executable, "-m", "yourclaw_devkit.devsim", "--port", "0"],
            cwd=tmp_path,
            env=_env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert done.returncode != 0
        assert "refuses to start unless YOURCLAW_ENV=dev" in done.stderr

    def test_serves_in_dev(self, tmp_path):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "yourclaw_devkit.devsim", "--port", str(port)],
            cwd=tmp_path,
            env=_env(YOURCLAW_ENV="dev"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, "devsim exited"
                try:
                    response = httpx.get(f"http://127.0.0.1:{port}/_devsim/health")
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "devsim did not answer"
                    time.sleep(0.2)
                    continue
                assert response.json() == {"status": "ok"}
                break
        finally:
            proc.terminate()
            proc.wait(timeout=30)
