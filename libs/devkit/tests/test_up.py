"""`make up` supervises what it started and stops all of it.

One real `yourclaw-up` (embedded NATS and PostgreSQL, every service, the
process runtime so no engine is needed) in a temp folder on free ports.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from yourclaw_common.embedded import free_port

# One worker runs them all, in order: they share one stack, which the last stops.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("up-stack")]

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 240.0


@dataclass
class Stack:
    proc: subprocess.Popen[str]
    watch: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.output)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=False)

    def child(self, marker: str) -> psutil.Process:
        for proc in self.children():
            try:
                if any(marker in part for part in proc.cmdline()):
                    return proc
            except psutil.NoSuchProcess:
                continue
        raise LookupError(f"no child of yourclaw-up runs {marker}")

    def metrics_port(self, service: str) -> int:
        match = re.search(
            rf"{service}\s+metrics/health on http://127.0.0.1:(\d+)", self.text()
        )
        assert match, self.text()[-3000:]
        return int(match.group(1))


def wait_for(probe: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (LookupError, psutil.Error, httpx.HTTPError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def ready(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("up")
    watch = subprocess.Popen(["sleep", "3600"])
    env = {
        **{
            k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")
        },
        "YOURCLAW_DATA_DIR": str(home / ".data"),
        "YOURCLAW_WATCH_PID": str(watch.pid),
        "API_PORT": str(free_port()),
        "DEVSIM_PORT": str(free_port()),
        "TELEGRAM_SIM_PORT": str(free_port()),
        "LLM_PROXY_PORT": str(free_port()),
        "WEB_PORT": str(free_port()),
        "HOST_RUNTIME": "process",
        "WARM_POOL_SIZE": "0",
        "OPENCLAW_INSTALL_DIR": str(REPO / ".tools" / "openclaw"),
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "yourclaw_devkit.up"],
        cwd=home,  # no web build here: the API and workers only
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    this = Stack(proc, watch)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            this.output.append(line.rstrip())

    threading.Thread(target=pump, daemon=True).start()
    try:
        wait_for(
            lambda: "YourClaw is running" in this.text() or proc.poll() is not None,
            START_TIMEOUT,
            "yourclaw-up to start",
        )
        assert proc.poll() is None, this.text()[-3000:]
        yield this
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
        watch.kill()
        watch.wait()


class TestTelegram:
    def test_a_chat_is_answered_through_the_stand_in(self, stack):
        found = re.search(r"Telegram stand-in (http://127.0.0.1:\d+)", stack.text())
        assert found, stack.text()[-3000:]
        base = found.group(1)
        spoken = httpx.post(
            f"{base}/_devsim/telegram/updates",
            json={"chat_id": 4040, "text": "hello?"},
            timeout=30,
        ).json()
        # The stand-in's webhook is gateway-api's, with the secret it checks.
        assert spoken["status"] == 200, spoken

        def answered() -> bool:
            sent = httpx.get(
                f"{base}/_devsim/telegram/sent", params={"chat_id": 4040}, timeout=5
            ).json()["messages"]
            return bool(sent) and "isn't linked" in sent[0]["text"]

        wait_for(answered, 60, "messaging to answer the unlinked chat")


class TestSupervision:
    def test_a_killed_service_is_started_again(self, stack):
        port = stack.metrics_port("messaging")
        first = stack.child("yourclaw_messaging")

        first.kill()

        wait_for(
            lambda: stack.child("yourclaw_messaging").pid != first.pid and ready(port),
            60,
            "messaging to be started again and ready",
        )
        assert "messaging exited with -9; starting it again" in stack.text()

    def test_killed_embedded_nats_and_postgres_are_started_again(self, stack):
        port = stack.metrics_port("billing")
        for marker in ("nats-server", "postgres"):
            first = stack.child(marker)

            first.kill()

            wait_for(
                lambda m=marker, f=first: stack.child(m).pid != f.pid,
                60,
                f"{marker} to be started again",
            )
        # The services reconnect to both.
        wait_for(lambda: ready(port), 60, "billing to be ready again")

    def test_losing_the_make_process_stops_everything(self, stack):
        pids = [p.pid for p in stack.children()]
        assert len(pids) >= 7  # NATS, PostgreSQL, devsim and the services

        stack.watch.kill()
        stack.watch.wait()

        assert stack.proc.wait(120) == 0
        alive = [pid for pid in pids if psutil.pid_exists(pid) and _running(pid)]
        assert alive == []
        assert "is gone: stopping" in stack.text()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
