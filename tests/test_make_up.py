"""`make up` as a new user runs it: the stack comes up, a simulated WhatsApp
message gets its reply, and Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import pytest
from yourclaw_common.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]


def _run_dev(
    args: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yourclaw_devkit.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class _Output:
    """Collects a process's output lines on a thread (no pipe deadlocks)."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(
            target=self._pump, args=(proc.stdout,), daemon=True
        )
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, marker: str, proc: subprocess.Popen[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.text():
                return self.text()
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{marker!r} not seen; output:\n{self.text()[-4000:]}")

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def _nats_answer(url: str) -> str:
    """What the server says to a CONNECT with the URL's credentials (if any)
    and a PING, in the NATS wire protocol: `PONG` when it lets us in."""
    parts = urlsplit(url)
    connect = {"verbose": False, "pedantic": False, "protocol": 1}
    if parts.username:
        connect |= {
            "user": unquote(parts.username),
            "pass": unquote(parts.password or ""),
        }
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        stream = sock.makefile("rwb")
        stream.readline()  # INFO {...}
        stream.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        stream.flush()
        return stream.readline().decode().strip()


def test_make_up_serves_a_whatsapp_round_trip_and_stops_cleanly(tmp_path):
    api_port, devsim_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        # make up starts its own servers, as on a fresh machine.
        if k not in ("NATS_URL", "DATABASE_URL", "PYTEST_XDIST_WORKER")
    }
    env.update(
        API_PORT=str(api_port),
        DEVSIM_PORT=str(devsim_port),
        TELEGRAM_SIM_PORT=str(free_port()),
        WEB_PORT=str(free_port()),
        LLM_PROXY_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
        # Dev sign-in and the stand-ins need it (what `make up` sets).
        YOURCLAW_ENV="dev",
        # What `make openclaw` installed (make up runs it first); the default
        # is relative to the working directory, which is a fresh one here.
        OPENCLAW_INSTALL_DIR=str(ROOT / ".tools" / "openclaw"),
    )
    os.chmod(tmp_path, 0o755)  # the embedded PostgreSQL user must reach .data/
    up = subprocess.Popen(
        [sys.executable, "-m", "yourclaw_devkit.up"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _Output(up)
        banner = output.wait_for("YourClaw is running", up, timeout=120)
        assert f"http://127.0.0.1:{api_port}" in banner
        dev_env = (tmp_path / ".data" / "dev.env").read_text()
        # The bus takes only its users: the operator's URL is in dev.env for
        # the tools; the same server without credentials refuses.
        nats_url = re.search(r"^NATS_URL=(\S+)$", dev_env, re.M).group(1)
        anonymous = urlsplit(nats_url)._replace(
            netloc=urlsplit(nats_url).netloc.split("@")[-1]
        )
        assert "Authorization Violation" in _nats_answer(urlunsplit(anonymous))
        assert _nats_answer(nats_url) == "PONG"

        registered = _run_dev(["register", "--phone", "+15551234567"], tmp_path, env)
        assert registered.returncode == 0, registered.stderr
        sent = _run_dev(
            ["send", "--from", "+15551234567", "hello from make up"], tmp_path, env
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "Echo: hello from make up" in sent.stdout
        stranger = _run_dev(
            ["send", "--from", "+15550000000", "who are you?"], tmp_path, env
        )
        assert "Sign up at" in stranger.stdout
        # The README's walk-through: claim a number, send its code from it.
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}/api/v1") as api:
            login = api.post("/dev/login", json={"email": "walk@example.com"})
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            claim = api.post(
                "/users/me/phone", json={"phone": "+1 (555) 765-4321"}, headers=auth
            ).json()
            proved = _run_dev(
                ["send", "--from", "+15557654321", claim["code"]], tmp_path, env
            )
            assert "Your number is linked" in proved.stdout, proved.stdout
            assert api.get("/users/me", headers=auth).json()["phone_verified"] is True

        up.send_signal(signal.SIGINT)
        up.wait(60)
        output.join(10)
        assert up.returncode == 0, output.text()[-3000:]
        assert "==> stopped" in output.text()
        assert not _listening(api_port)
        assert not _listening(devsim_port)
        # The warm spare gateway (WARM_POOL_SIZE=1) went with the host-agent.
        slots = tmp_path / ".data" / "host" / "local" / ".slots"
        assert not slots.exists() or not any(slots.iterdir())
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
