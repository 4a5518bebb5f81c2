"""Chaos: faults injected mid-traffic; every accepted message answered exactly once.

gateway-api, messaging and devsim (the Twilio and assistant stand-ins) run as
separate processes on embedded NATS JetStream and PostgreSQL (durable: fsync
on), supervised as `make up` and compose supervise them: a process that exits
is started again after a short pause. Signed WhatsApp webhooks go in at a
steady rate from many users while one fault is injected; a webhook that is not
answered 200 is sent again with the same MessageSid for a while, as Twilio's
retries do. After each fault the script waits for the replies and counts them
at the Twilio stand-in, where the user would see them.

The provisioner and a host-agent (process runtime, with a stand-in OpenClaw
that only answers its health checks) run too, with CHAOS_HOSTED_ASSISTANTS
assistants placed on that host; they get no traffic, they are watched: none
may leave READY, move, get a new placement generation or lose its gateway
process. The host is declared lost after 5 + 20 s of silence here, well
inside the freezes, so only fencing keeps them.

Faults: kill -9 of messaging, gateway-api, the provisioner and the host-agent
(restarted at once; the new agent adopts the running gateways); NATS frozen
(SIGSTOP, then SIGCONT: a partition without a restart); the host-agent frozen;
PostgreSQL stopped; NATS restarted.

Columns: sent (webhooks), accepted (answered 200 at some try), answered once,
lost (accepted, no reply), duplicated (accepted, more than one reply),
recovery s (from the dependency's return, or the restart, to the next reply
the stand-in sees), new message answered after s (from the same moment to the
first reply to a message sent after it: it queues behind the backlog the fault
built up). Replies are polled every 0.25 s. Exits 1 when anything is lost or
duplicated, or an assistant left READY or was replaced, or a gateway removed.

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
import nats
import psutil
from yourclaw_common.crypto import SecretBox
from yourclaw_common.db import migrate
from yourclaw_common.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from yourclaw_common.events import AssistantProvisionRequested
from yourclaw_common.nats import publish
from yourclaw_common.nats_auth import OPERATOR, host_user, new_passwords, users_for
from yourclaw_devkit.cli import dev_whatsapp_message, register_dev_user
from yourclaw_devkit.defaults import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_host_agent.install_openclaw import OPENCLAW_VERSION

USERS = int(os.environ.get("CHAOS_USERS", "20"))
HOSTED = int(os.environ.get("CHAOS_HOSTED_ASSISTANTS", "2"))
RATE = float(os.environ.get("CHAOS_RATE", "8"))  # messages per second
# How long the assistant takes per turn, so that turns are in flight when a
# process dies.
TURN_SECONDS = float(os.environ.get("CHAOS_TURN_SECONDS", "0.5"))
FREEZE_SECONDS = float(os.environ.get("CHAOS_FREEZE_SECONDS", "60"))
PG_DOWN_SECONDS = float(os.environ.get("CHAOS_PG_DOWN_SECONDS", "30"))
# How long each message is offered again while it is refused (Twilio retries).
RETRY_SECONDS = float(os.environ.get("CHAOS_RETRY_SECONDS", "120"))
SETTLE_SECONDS = float(os.environ.get("CHAOS_SETTLE_SECONDS", "120"))
# Only the faults whose name contains one of these (comma-separated), e.g.
# CHAOS_FAULTS="host-agent,PostgreSQL"; all by default.
ONLY = [w for w in os.environ.get("CHAOS_FAULTS", "").split(",") if w]
# Traffic before the fault and after the dependency is back.
LEAD_SECONDS = 3.0
TAIL_SECONDS = 6.0
PATH = "/api/v1/webhooks/twilio/whatsapp"
ASSISTANT_TOKEN = "chaos-gateway-token"  # devsim checks no token
RESTART_PAUSE = 0.5
HOST_ID = "chaos-host"
# Where the host-agent looks for OpenClaw: a gateway that answers its health
# checks and nothing else (`node <dir>/node_modules/openclaw/openclaw.mjs gateway
# --port …`), so the agent runs unmodified.
FAKE_OPENCLAW = """\
import http from "node:http";
const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1]);
process.on("SIGTERM", () => process.exit(0));
http.createServer((req, res) => {
  const ok = req.url === "/healthz" || req.url === "/readyz";
  res.writeHead(ok ? 200 : 404, { "Content-Type": "application/json" });
  res.end(ok ? '{"ok":true,"status":"live"}' : "{}");
}).listen(port, "127.0.0.1");
"""


def _fake_openclaw(home: Path) -> Path:
    """Install the stand-in where the agent takes it for the pinned openclaw."""
    package = home / "node_modules" / "openclaw"
    package.mkdir(parents=True)
    (package / "package.json").write_text(
        f'{{"name": "openclaw", "version": "{OPENCLAW_VERSION}", "type": "module"}}'
    )
    (home / ".installed").write_text(OPENCLAW_VERSION)
    entry = package / "openclaw.mjs"
    entry.write_text(FAKE_OPENCLAW)
    return entry


def _gateways(entry: Path) -> set[int]:
    """Pids of the stand-in gateways running now."""
    found = set()
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if str(entry) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.add(proc.pid)
    return found


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
        form, signature = dev_whatsapp_message(self.api, phone, body, message_sid=sid)
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
    nats_server: EmbeddedNats,
    pg: EmbeddedPostgres,
    services: dict[str, Service],
    db_url: str,
    api: str,
    devsim_url: str,
    key: str,
    entry: Path,
) -> int:
    nats_url = nats_server.url_for(OPERATOR)
    ready = "SELECT count(*) FROM assistants WHERE status = 'READY'"
    placed = (
        "SELECT user_id, status, host_id, port, generation FROM assistants "
        "WHERE host_id = $1 ORDER BY user_id"
    )
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
        hosted = [uuid.uuid4() for _ in range(HOSTED)]
        nc = await nats.connect(nats_url)
        for user_id in hosted:
            await conn.execute("INSERT INTO users (id) VALUES ($1)", user_id)
            await publish(nc.jetstream(), AssistantProvisionRequested(user_id=user_id))
        await nc.close()
        deadline = time.monotonic() + 60
        while await conn.fetchval(ready) < USERS + HOSTED:
            if time.monotonic() > deadline:
                raise TimeoutError("the hosted assistants did not get READY")
            await asyncio.sleep(0.5)
        ready_before = await conn.fetchval(ready)
        placed_before = [dict(r) for r in await conn.fetch(placed, HOST_ID)]
        gateways_before = _gateways(entry)
    finally:
        await conn.close()

    async def kill(name: str) -> float:
        service = services[name]
        service.restarted.clear()
        service.kill9()
        await service.restarted.wait()
        return service.restarted_at

    async def freeze_host_agent() -> float:
        agent = services["host-agent"].proc
        assert agent is not None
        agent.send_signal(signal.SIGSTOP)
        await asyncio.sleep(FREEZE_SECONDS)
        agent.send_signal(signal.SIGCONT)
        return time.monotonic()

    async def freeze_nats() -> float:
        assert nats_server.proc is not None
        nats_server.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(FREEZE_SECONDS)
        nats_server.proc.send_signal(signal.SIGCONT)
        return time.monotonic()

    async def stop_postgres() -> float:
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(PG_DOWN_SECONDS)
        await asyncio.to_thread(pg.start)
        return time.monotonic()

    async def restart_nats() -> float:
        await asyncio.to_thread(nats_server.stop)
        await asyncio.to_thread(nats_server.start)
        return time.monotonic()

    faults: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("kill -9 messaging", lambda: kill("messaging")),
        ("kill -9 gateway-api", lambda: kill("gateway-api")),
        ("kill -9 provisioner", lambda: kill("provisioner")),
        ("kill -9 host-agent", lambda: kill("host-agent")),
        (f"freeze NATS {FREEZE_SECONDS:g} s (SIGSTOP)", freeze_nats),
        (f"freeze host-agent {FREEZE_SECONDS:g} s (SIGSTOP)", freeze_host_agent),
        (f"stop PostgreSQL {PG_DOWN_SECONDS:g} s", stop_postgres),
        ("restart NATS", restart_nats),
    ]
    if ONLY:
        faults = [f for f in faults if any(word in f[0] for word in ONLY)]
    rows: list[Row] = []
    async with httpx.AsyncClient(base_url=devsim_url, timeout=10) as devsim:
        for number, (name, fault) in enumerate(faults):
            row = await _scenario(f"f{number}", fault, api=api, devsim=devsim)
            row.fault = name
            rows.append(row)
            print(f"  {name}: done", flush=True)

    # A few reconcile passes with everything back.
    await asyncio.sleep(5)
    conn = await asyncpg.connect(db_url)
    try:
        ready_after = await conn.fetchval(ready)
        placed_after = [dict(r) for r in await conn.fetch(placed, HOST_ID)]
    finally:
        await conn.close()
    gateways_after = _gateways(entry)

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
    replaced = sum(
        1
        for before, after in zip(placed_before, placed_after, strict=False)
        if before != after
    ) + abs(len(placed_before) - len(placed_after))
    kept = len(gateways_before & gateways_after)
    print(
        f"assistants on {HOST_ID}: {len(placed_before)}, replaced or changed "
        f"{replaced}; their gateway processes kept {kept} of "
        f"{len(gateways_before)}"
    )
    bad = (
        any(r.lost or r.duplicated for r in rows)
        or ready_after != ready_before
        or replaced > 0
        or kept != len(gateways_before)
        or len(gateways_before) != HOSTED
    )
    return 1 if bad else 0


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="yourclaw-chaos-"))
    # Authenticated as in production: each service and the host as its own user.
    nats = EmbeddedNats(
        tmp / "nats", passwords=new_passwords(users_for([HOST_ID]))
    ).start()
    pg = EmbeddedPostgres(tmp / "postgres", fast=False).start()
    services: dict[str, Service] = {}
    entry = _fake_openclaw(tmp / "openclaw")
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
            "NATS_URL": nats.url_for(OPERATOR),
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
            # The provisioner: a silent host is suspect after 5 s and lost
            # after 20 s more, well inside the freezes.
            "HOST_HEARTBEAT_TIMEOUT_SECONDS": "5",
            "HOST_EVACUATE_AFTER_SECONDS": "20",
            "RECONCILE_INTERVAL_SECONDS": "1",
            # The host-agent (the process runtime is for development only).
            "YOURCLAW_ENV": "dev",
            "HOST_ID": HOST_ID,
            "HOST_RUNTIME": "process",
            "HOST_DATA_DIR": str(tmp / "host"),
            "HOST_HEARTBEAT_SECONDS": "1",
            "HOST_CAPACITY": str(max(HOSTED, 1)),
            "OPENCLAW_INSTALL_DIR": str(entry.parents[2]),
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
            ("provisioner", [python, "-m", "yourclaw_provisioner"]),
            ("host-agent", [python, "-m", "yourclaw_host_agent"]),
        ):
            user = host_user(HOST_ID) if name == "host-agent" else name
            identity = (
                {"NATS_USER": user, "NATS_PASSWORD": nats.passwords[user]}
                if nats.passwords and user in nats.passwords
                else {}
            )
            services[name] = Service(name, argv, {**env, **identity}, tmp)
            services[name].start()

        async def run() -> int:
            supervisors = [
                asyncio.create_task(s.supervise()) for s in services.values()
            ]
            try:
                await _wait_http(f"{devsim_url}/_devsim/health")
                await _wait_http(f"{api}/healthz")
                return await _run(
                    nats, pg, services, db_url, api, devsim_url, key, entry
                )
            finally:
                for s in services.values():
                    s.stopping = True
                await asyncio.gather(*supervisors)

        print(f"chaos: logs in {tmp}", flush=True)
        code = asyncio.run(run())
    finally:
        for service in services.values():
            service.stop()
        for pid in _gateways(entry):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
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
