"""Chaos: faults injected mid-traffic; every accepted message answered exactly once.

gateway-api, messaging and devsim (the Twilio and assistant stand-ins) run as
separate processes on embedded NATS JetStream and PostgreSQL (durable: fsync
on), supervised as `make up` and compose supervise them: a process that exits
is started again after a short pause. Signed WhatsApp webhooks go in at a
steady rate from many users while one fault is injected; a webhook that is not
answered 200 is sent again with the same MessageSid for a while, as Twilio's
retries do. After each fault the script waits for the replies and counts them
at the Twilio stand-in, where the user would see them.

Faults: kill -9 of messaging and of gateway-api (restarted at once); NATS
frozen (SIGSTOP, then SIGCONT: a partition without a restart); PostgreSQL
stopped; NATS restarted.

Columns: sent (webhooks), accepted (answered 200 at some try), answered once,
lost (accepted, no reply), duplicated (accepted, more than one reply),
recovery s (from the dependency's return, or the restart, to the next reply
the stand-in sees), new message answered after s (from the same moment to the
first reply to a message sent after it: it queues behind the backlog the fault
built up). Replies are polled every 0.25 s. Exits 1 when anything is lost or
duplicated or an assistant left READY.

    .tools/bin/uv run python bench/chaos.py        # `make chaos`
    CHAOS_FREEZE_SECONDS=180 CHAOS_PG_DOWN_SECONDS=30 .tools/bin/uv run python bench/chaos.py
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from yourclaw_common.crypto import SecretBox
from yourclaw_common.db import migrate
from yourclaw_common.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from yourclaw_devkit.cli import inbound_whatsapp_form, register_dev_user, sign_webhook
from yourclaw_devkit.defaults import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)

USERS = int(os.environ.get("CHAOS_USERS", "20"))
RATE = float(os.environ.get("CHAOS_RATE", "8"))  # messages per second
# How long the assistant takes per turn, so that turns are in flight when a
# process dies.
TURN_SECONDS = float(os.environ.get("CHAOS_TURN_SECONDS", "0.5"))
FREEZE_SECONDS = float(os.environ.get("CHAOS_FREEZE_SECONDS", "60"))
PG_DOWN_SECONDS = float(os.environ.get("CHAOS_PG_DOWN_SECONDS", "30"))
# How long each message is offered again while it is refused (Twilio retries).
RETRY_SECONDS = float(os.environ.get("CHAOS_RETRY_SECONDS", "120"))
SETTLE_SECONDS = float(os.environ.get("CHAOS_SETTLE_SECONDS", "120"))
# Traffic before the fault and after the dependency is back.
LEAD_SECONDS = 3.0
TAIL_SECONDS = 6.0
PATH = "/api/v1/webhooks/twilio/whatsapp"
ASSISTANT_TOKEN = "chaos-gateway-token"  # devsim checks no token
RESTART_PAUSE = 0.5


def _phone(i: int) -> str:
    return f"+1555900{i:04d}"


@dataclass
class Service:
    """One supervised process: started again whenever it exits."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restarted_at: float = 0.0
    restarted: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False

    def start(self) -> None:
        log = open(self.cwd / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def supervise(self) -> None:
        while not self.stopping:
            if self.proc is not None and self.proc.poll() is not None:
                await asyncio.sleep(RESTART_PAUSE)
                if self.stopping:
                    return
                self.start()
                self.restarts += 1
                self.restarted_at = time.monotonic()
                self.restarted.set()
            await asyncio.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Traffic:
    """Signed webhooks, one user after another, each retried until accepted."""

    api: str
    scenario: str
    sent_at: dict[str, float] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, client: httpx.AsyncClient, until: Callable[[], bool]) -> None:
        i = 0
        while not until():
            body = f"{self.scenario}-{i}"
            self.sent_at[body] = time.monotonic()
            task = asyncio.create_task(self._offer(client, body, _phone(i % USERS)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            i += 1
            await asyncio.sleep(1 / RATE)
        await asyncio.gather(*self._tasks)

    async def _offer(self, client: httpx.AsyncClient, body: str, phone: str) -> None:
        sid = f"SM{uuid.uuid4().hex}"
        form = inbound_whatsapp_form(
            phone=phone,
            body=body,
            to=DEV_WHATSAPP_NUMBER,
            account_sid=DEV_TWILIO_ACCOUNT_SID,
            message_sid=sid,
        )
        _, signature = sign_webhook(self.api, form, DEV_TWILIO_AUTH_TOKEN)
        deadline = time.monotonic() + RETRY_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                resp = await client.post(
                    PATH, data=form, headers={"X-Twilio-Signature": signature}
                )
                if resp.status_code == 200:
                    self.accepted.add(body)
                    return
            await asyncio.sleep(1.0)


async def _replies(devsim: httpx.AsyncClient) -> Counter[str]:
    """Replies the Twilio stand-in was asked to send, by the message they answer."""
    resp = await devsim.get("/_devsim/messages")
    resp.raise_for_status()
    return Counter(
        m["body"].removeprefix("Echo: ")
        for m in resp.json()["messages"]
        if m["body"].startswith("Echo: ")
    )


@dataclass
class Row:
    fault: str
    sent: int
    accepted: int
    once: int
    lost: int
    duplicated: int
    recovery: float | None
    new_message: float | None


async def _scenario(
    name: str,
    fault: Callable[[], Awaitable[float]],
    *,
    api: str,
    devsim: httpx.AsyncClient,
) -> Row:
    """Traffic; `fault` runs after LEAD_SECONDS and returns when (monotonic) the
    dependency was back; traffic goes on TAIL_SECONDS more; then the count."""
    traffic = Traffic(api, name)
    back: list[float] = []
    first_reply: dict[str, float] = {}
    watching = True

    async def watch() -> None:
        # When each reply was first seen at the stand-in (every 0.25 s).
        while watching:
            with contextlib.suppress(httpx.HTTPError):
                now = time.monotonic()
                for body in await _replies(devsim):
                    first_reply.setdefault(body, now)
            await asyncio.sleep(0.25)

    async def inject() -> None:
        await asyncio.sleep(LEAD_SECONDS)
        back.append(await fault())

    watcher = asyncio.create_task(watch())
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        injector = asyncio.create_task(inject())
        await traffic.run(
            client,
            until=lambda: bool(back) and time.monotonic() > back[0] + TAIL_SECONDS,
        )
        await injector
    # Wait for every accepted message to be answered (or the settle time).
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if all(b in first_reply for b in traffic.accepted):
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(2.0)  # long enough for a duplicate to show up
    watching = False
    await watcher
    replies = await _replies(devsim)
    mine = list(traffic.accepted)
    resumed = [t - back[0] for t in first_reply.values() if t >= back[0]]
    after = [
        first_reply[b] - back[0]
        for b, sent in traffic.sent_at.items()
        if sent >= back[0] and b in first_reply
    ]
    return Row(
        fault=name,
        sent=len(traffic.sent_at),
        accepted=len(mine),
        once=sum(1 for b in mine if replies[b] == 1),
        lost=sum(1 for b in mine if replies[b] == 0),
        duplicated=sum(1 for b in mine if replies[b] > 1),
        recovery=min(resumed) if resumed else None,
        new_message=max(0.0, min(after)) if after else None,
    )


async def _run(
    nats: EmbeddedNats,
    pg: EmbeddedPostgres,
    services: dict[str, Service],
    db_url: str,
    api: str,
    devsim_url: str,
    key: str,
) -> int:
    ready = "SELECT count(*) FROM assistants WHERE status = 'READY'"
    conn = await asyncpg.connect(db_url)
    try:
        for i in range(USERS):
            await register_dev_user(
                conn,
                phone=_phone(i),
                endpoint=devsim_url,
                token=ASSISTANT_TOKEN,
                box=SecretBox(key),
            )
        ready_before = await conn.fetchval(ready)
    finally:
        await conn.close()

    async def kill(name: str) -> float:
        service = services[name]
        service.restarted.clear()
        service.kill9()
        await service.restarted.wait()
        return service.restarted_at

    async def freeze_nats() -> float:
        assert nats.proc is not None
        nats.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(FREEZE_SECONDS)
        nats.proc.send_signal(signal.SIGCONT)
        return time.monotonic()

    async def stop_postgres() -> float:
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(PG_DOWN_SECONDS)
        await asyncio.to_thread(pg.start)
        return time.monotonic()

    async def restart_nats() -> float:
        await asyncio.to_thread(nats.stop)
        await asyncio.to_thread(nats.start)
        return time.monotonic()

    faults: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("kill -9 messaging", lambda: kill("messaging")),
        ("kill -9 gateway-api", lambda: kill("gateway-api")),
        (f"freeze NATS {FREEZE_SECONDS:g} s (SIGSTOP)", freeze_nats),
        (f"stop PostgreSQL {PG_DOWN_SECONDS:g} s", stop_postgres),
        ("restart NATS", restart_nats),
    ]
    rows: list[Row] = []
    async with httpx.AsyncClient(base_url=devsim_url, timeout=10) as devsim:
        for number, (name, fault) in enumerate(faults):
            row = await _scenario(f"f{number}", fault, api=api, devsim=devsim)
            row.fault = name
            rows.append(row)
            print(f"  {name}: done", flush=True)

    conn = await asyncpg.connect(db_url)
    try:
        ready_after = await conn.fetchval(ready)
    finally:
        await conn.close()

    print(
        f"\nmachine {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {USERS} users, {RATE:g} messages/s, "
        f"{TURN_SECONDS:g} s per turn\n"
    )
    print(
        "| fault | sent | accepted | answered once | lost | duplicated "
        "| recovery s | new message answered after s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.fault} | {r.sent} | {r.accepted} | {r.once} | {r.lost} | "
            f"{r.duplicated} | {_seconds(r.recovery)} | {_seconds(r.new_message)} |"
        )
    print(f"\nassistants READY before {ready_before}, after {ready_after}")
    bad = any(r.lost or r.duplicated for r in rows) or ready_after != ready_before
    return 1 if bad else 0


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="yourclaw-chaos-"))
    nats = EmbeddedNats(tmp / "nats").start()
    pg = EmbeddedPostgres(tmp / "postgres", fast=False).start()
    services: dict[str, Service] = {}
    code = 1
    try:
        pg.create_database("chaos")
        db_url = pg.dsn("chaos")
        api_port, devsim_port = free_port(), free_port()
        api = f"http://127.0.0.1:{api_port}"
        devsim_url = f"http://127.0.0.1:{devsim_port}"
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NATS_URL": nats.url,
            "DATABASE_URL": db_url,
            "ENCRYPTION_KEY": key,
            "LOG_LEVEL": "WARNING",
            "API_HOST": "127.0.0.1",
            "API_PORT": str(api_port),
            "PUBLIC_BASE_URL": api,
            "TWILIO_ACCOUNT_SID": DEV_TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEV_TWILIO_AUTH_TOKEN,
            "TWILIO_WHATSAPP_NUMBER": DEV_WHATSAPP_NUMBER,
            "TWILIO_API_BASE": devsim_url,
            "DEVSIM_PORT": str(devsim_port),
            "DEVSIM_STATUS_CALLBACKS": "false",
            "DEVSIM_LLM_DELAY_SECONDS": str(TURN_SECONDS),
            "DEVSIM_MAX_RECORDS": "100000",
            "RATE_LIMIT_MSG_PER_MIN": "0",
            "RATE_LIMIT_MSG_PER_DAY": "0",
            "WEBHOOK_RATE_LIMIT_PER_SECOND": "0",
            "METRICS_PORT": "0",
        }

        async def migrated() -> None:
            conn = await asyncpg.connect(db_url)
            try:
                await migrate(conn)
            finally:
                await conn.close()

        asyncio.run(migrated())
        python = sys.executable
        for name, argv in (
            ("devsim", [python, "-m", "yourclaw_devkit.devsim"]),
            ("gateway-api", [python, "-m", "yourclaw_gateway_api"]),
            ("messaging", [python, "-m", "yourclaw_messaging"]),
        ):
            services[name] = Service(name, argv, env, tmp)
            services[name].start()

        async def run() -> int:
            supervisors = [
                asyncio.create_task(s.supervise()) for s in services.values()
            ]
            try:
                await _wait_http(f"{devsim_url}/_devsim/health")
                await _wait_http(f"{api}/healthz")
                return await _run(nats, pg, services, db_url, api, devsim_url, key)
            finally:
                for s in services.values():
                    s.stopping = True
                await asyncio.gather(*supervisors)

        print(f"chaos: logs in {tmp}", flush=True)
        code = asyncio.run(run())
    finally:
        for service in services.values():
            service.stop()
        pg.stop()
        nats.stop()
    sys.exit(code)


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


async def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(url)


if __name__ == "__main__":
    main()
