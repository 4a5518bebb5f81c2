"""Chaos: faults injected mid-traffic; every accepted message answered exactly once.

gateway-api, messaging, billing and devsim (the Twilio, Stripe and assistant
stand-ins) run as separate processes on embedded NATS JetStream and
PostgreSQL (durable: fsync on), supervised as `make up` and compose supervise
them: a process that exits is started again after a short pause. Signed
WhatsApp webhooks go in at a steady rate from many users while one fault is
injected; a webhook that is not answered 200 is sent again with the same
MessageSid for a while, as Twilio's retries do. After each fault the script
waits for the replies and counts them at the Twilio stand-in, where the user
would see them.

The provisioner and a host-agent (process runtime, with a stand-in OpenClaw
that only answers its health checks) run too, with CHAOS_HOSTED_ASSISTANTS
assistants placed on that host; they get no traffic, they are watched: none
may leave READY, move, get a new placement generation or lose its gateway
process. The host is declared lost after 5 + 20 s of silence here, well
inside the freezes, so only fencing keeps them.

Faults: kill -9 of messaging, billing, gateway-api, the provisioner and the
host-agent (restarted at once; the new agent adopts the running gateways);
NATS frozen (SIGSTOP, then SIGCONT: a partition without a restart); the
host-agent frozen; PostgreSQL stopped; NATS restarted. While billing is
killed, new users also sign in, open a Stripe Checkout through gateway-api
and pay it at the stand-in, one a second (opened again while billing is
down); the stand-in sends the signed webhooks. Every Stripe event accepted
must be recorded by billing, every paid user end with an ACTIVE subscription
announced once, and get a READY assistant.

Columns: sent (webhooks), accepted (answered 200 at some try), answered once,
lost (accepted, no reply), duplicated (accepted, more than one reply),
recovery s (from the dependency's return, or the restart, to the first reply
sent after it), new message answered after s (from the same moment to the
first reply to a message sent after it: it queues behind the backlog the fault
built up), a quiet user's message answered after s (one message, sent at the
return by a user who wrote nothing during the fault: no backlog of theirs is
ahead of it). The times are PostgreSQL's (messaging's rows), so this script's
own pauses do not count. Below the table, where the first message sent after
the return spent its time. Exits 1 when anything is lost or duplicated, an
assistant left READY or was replaced, a gateway removed, or a Stripe event or
subscription lost or applied twice.

    .tools/bin/uv run python bench/chaos.py        # `make chaos`
    CHAOS_FREEZE_SECONDS=60 CHAOS_FAULTS=NATS .tools/bin/uv run python bench/chaos.py
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
from yourclaw_common.events import (
    STRIPE_EVENT_SUBJECTS,
    AssistantProvisionRequested,
    Subject,
    ensure_topology,
)
from yourclaw_common.nats import publish
from yourclaw_common.nats_auth import OPERATOR, host_user, new_passwords, users_for
from yourclaw_devkit.checkout import CheckoutError, checkout_for_email, press_pay
from yourclaw_devkit.cli import dev_whatsapp_message, register_dev_user
from yourclaw_devkit.defaults import (
    DEV_STRIPE_PRICE_ID,
    DEV_STRIPE_SECRET_KEY,
    DEV_STRIPE_WEBHOOK_SECRET,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_gateway_api.webhooks.stripe import STRIPE_WEBHOOK_PATH
from yourclaw_host_agent.install_openclaw import OPENCLAW_VERSION

USERS = int(os.environ.get("CHAOS_USERS", "20"))
HOSTED = int(os.environ.get("CHAOS_HOSTED_ASSISTANTS", "2"))
RATE = float(os.environ.get("CHAOS_RATE", "8"))  # messages per second
# How long the assistant takes per turn, so that turns are in flight when a
# process dies.
TURN_SECONDS = float(os.environ.get("CHAOS_TURN_SECONDS", "0.5"))
# The three minutes; CHAOS_FREEZE_SECONDS=60 for a quicker run.
FREEZE_SECONDS = float(os.environ.get("CHAOS_FREEZE_SECONDS", "180"))
PG_DOWN_SECONDS = float(os.environ.get("CHAOS_PG_DOWN_SECONDS", "30"))
# How long each message is offered again while it is refused (Twilio retries):
# past the longest outage, so a message sent as it starts is accepted after it.
RETRY_SECONDS = float(
    os.environ.get(
        "CHAOS_RETRY_SECONDS", str(max(FREEZE_SECONDS, PG_DOWN_SECONDS) + 60)
    )
)
SETTLE_SECONDS = float(os.environ.get("CHAOS_SETTLE_SECONDS", "120"))
# Pauses between the offers of one message: 1 s, doubling up to this.
RETRY_MAX_PAUSE = float(os.environ.get("CHAOS_RETRY_MAX_PAUSE", "8"))
# Only the faults whose name contains one of these (comma-separated), e.g.
# CHAOS_FAULTS="host-agent,PostgreSQL"; all by default.
ONLY = [w for w in os.environ.get("CHAOS_FAULTS", "").split(",") if w]
# Services that log at DEBUG (comma-separated names), e.g. CHAOS_DEBUG=gateway-api;
# the others at CHAOS_LOG_LEVEL (WARNING).
DEBUG = [w for w in os.environ.get("CHAOS_DEBUG", "").split(",") if w]
# During billing's fault a new user pays every this many seconds.
CHECKOUT_SECONDS = float(os.environ.get("CHAOS_CHECKOUT_SECONDS", "1"))
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
    accepted_at: dict[str, float] = field(default_factory=dict)
    # When the try that was accepted started, and the MessageSid of each body.
    tried_at: dict[str, float] = field(default_factory=dict)
    sids: dict[str, str] = field(default_factory=dict)
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
        self.sids[body] = sid
        form, signature = dev_whatsapp_message(self.api, phone, body, message_sid=sid)
        deadline = time.monotonic() + RETRY_SECONDS
        pause = 1.0
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                self.tried_at[body] = time.monotonic()
                resp = await client.post(
                    PATH, data=form, headers={"X-Twilio-Signature": signature}
                )
                if resp.status_code == 200:
                    self.accepted.add(body)
                    self.accepted_at[body] = time.monotonic()
                    return
            # Backing off as a provider does: a refusal that comes at once must
            # not turn every waiting message into a request a second (this
            # script would spend its CPU on them, not the services).
            await asyncio.sleep(pause)
            pause = min(RETRY_MAX_PAUSE, pause * 2)


@dataclass
class Checkouts:
    """New users who sign in, open a checkout and pay it, one every
    CHECKOUT_SECONDS; a checkout refused (billing down) is opened again."""

    api: str
    scenario: str
    started: list[str] = field(default_factory=list)
    paid: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, client: httpx.AsyncClient, until: Callable[[], bool]) -> None:
        i = 0
        while not until():
            email = f"{self.scenario}-{i}@chaos.test"
            self.started.append(email)
            task = asyncio.create_task(self._pay(client, email))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            i += 1
            await asyncio.sleep(CHECKOUT_SECONDS)
        await asyncio.gather(*self._tasks)

    async def _pay(self, client: httpx.AsyncClient, email: str) -> None:
        deadline = time.monotonic() + RETRY_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(CheckoutError, httpx.HTTPError):
                url, _ = await checkout_for_email(client, self.api, email)
                await press_pay(client, url)
                self.paid.add(email)
                return
            await asyncio.sleep(1.0)


@dataclass
class Billed:
    """What billing made of the checkouts paid during one fault."""

    users: int  # started a checkout
    paid: int
    events: int  # Stripe events of the types billing handles, answered 2xx
    undelivered: int  # events the stand-in gave up on (not 2xx after its retries)
    applied: int  # of the accepted events, recorded by billing
    active: int  # paid users whose subscription is ACTIVE
    activated_twice: int  # users announced `subscription.activated` more than once
    ready: int  # paid users whose assistant is READY

    @property
    def bad(self) -> bool:
        return bool(
            self.undelivered
            or self.applied != self.events
            or self.active != self.paid
            or self.activated_twice
        )

    def line(self) -> str:
        return (
            f"{self.users} new users opened a checkout, {self.paid} paid; Stripe "
            f"events accepted {self.events}, applied {self.applied}, not delivered "
            f"{self.undelivered}; subscriptions ACTIVE {self.active} of "
            f"{self.paid}, announced twice {self.activated_twice}; assistants "
            f"READY {self.ready}"
        )


async def _billed(
    db_url: str, devsim: httpx.AsyncClient, checkouts: Checkouts
) -> Billed:
    """Wait (up to SETTLE_SECONDS) for billing and the provisioner to finish with
    the paid users, then count."""
    query = (
        "SELECT u.email, s.status AS subscription, a.status AS assistant, "
        "(SELECT count(*) FROM outbox o WHERE o.service = 'billing' "
        " AND o.subject = $2 AND o.payload->>'user_id' = u.id::text) AS activated "
        "FROM users u LEFT JOIN subscriptions s ON s.user_id = u.id "
        "LEFT JOIN assistants a ON a.user_id = u.id WHERE u.email = ANY($1)"
    )
    paid = list(checkouts.paid)
    conn = await asyncpg.connect(db_url)
    try:
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            rows = await conn.fetch(query, paid, Subject.SUBSCRIPTION_ACTIVATED.value)
            done = len(rows) == len(paid) and all(
                r["subscription"] == "ACTIVE" and r["assistant"] == "READY"
                for r in rows
            )
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        resp = await devsim.get("/_devsim/stripe/webhooks", params={"idle": "true"})
        resp.raise_for_status()
        handled = [
            d for d in resp.json()["deliveries"] if d["type"] in STRIPE_EVENT_SUBJECTS
        ]
        accepted = [d["event_id"] for d in handled if d["delivered"]]
        applied = await conn.fetchval(
            "SELECT count(*) FROM stripe_events WHERE id = ANY($1)", accepted
        )
    finally:
        await conn.close()
    return Billed(
        users=len(checkouts.started),
        paid=len(paid),
        events=len(accepted),
        undelivered=sum(1 for d in handled if not d["delivered"]),
        applied=applied,
        active=sum(1 for r in rows if r["subscription"] == "ACTIVE"),
        activated_twice=sum(1 for r in rows if r["activated"] > 1),
        ready=sum(1 for r in rows if r["assistant"] == "READY"),
    )


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
    # A user who did not write during the fault writes once at its end.
    quiet_user: float | None
    # The first message sent after the return, hop by hop (s from the return).
    hops: str = ""
    billed: Billed | None = None


async def _scenario(
    name: str,
    fault: Callable[[], Awaitable[float]],
    *,
    api: str,
    devsim: httpx.AsyncClient,
    db_url: str,
    label: str,
    checkouts: bool = False,
) -> Row:
    """Traffic; `fault` runs after LEAD_SECONDS and returns when (monotonic) the
    dependency was back; traffic goes on TAIL_SECONDS more; then the count."""
    traffic = Traffic(api, name)
    back: list[float] = []
    quiet = f"{name}-quiet"

    async def inject(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(LEAD_SECONDS)
        print(f"  {label}: fault at {_utc()}", flush=True)
        back.append(await fault())
        print(f"  {label}: back at {_utc()}", flush=True)
        # Traffic never writes as the last user: no backlog of theirs waits.
        traffic.sent_at[quiet] = time.monotonic()
        await traffic._offer(client, quiet, _phone(USERS))

    def until() -> bool:
        return bool(back) and time.monotonic() > back[0] + TAIL_SECONDS

    paying = Checkouts(api, name)
    async with (
        httpx.AsyncClient(base_url=api, timeout=10) as client,
        httpx.AsyncClient(timeout=10) as buyer,
    ):
        injector = asyncio.create_task(inject(client))
        flows = [traffic.run(client, until)]
        if checkouts:
            flows.append(paying.run(buyer, until))
        await asyncio.gather(*flows)
        await injector
    # Wait for every accepted message to be answered (or the settle time).
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            replies = await _replies(devsim)
            if all(replies[b] for b in traffic.accepted):
                break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)  # long enough for a duplicate to show up
    replies = await _replies(devsim)
    mine = list(traffic.accepted)
    taken, answered = await _times(db_url, name)
    resumed = [t - back[0] for t in answered.values() if t >= back[0]]
    after = [
        answered[b] - back[0]
        for b, sent in traffic.sent_at.items()
        if sent >= back[0] and b in answered and b != quiet
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
        quiet_user=answered[quiet] - back[0] if quiet in answered else None,
        hops=_hops(traffic, back[0], taken, answered),
        billed=await _billed(db_url, devsim, paying) if checkouts else None,
    )


async def _times(
    db_url: str, scenario: str
) -> tuple[dict[str, float], dict[str, float]]:
    """When messaging took each inbound message of a scenario and when its reply
    was sent (monotonic), by PostgreSQL's clock: a busy script cannot skew them."""
    offset = time.time() - time.monotonic()
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT i.body, i.created_at AS taken, min(o.updated_at) AS answered "
            "FROM messages i LEFT JOIN messages o ON o.in_reply_to = i.twilio_sid "
            "AND o.direction = 'OUTBOUND' AND o.status = 'SENT' "
            "WHERE i.direction = 'INBOUND' AND i.body LIKE $1 GROUP BY i.id",
            f"{scenario}-%",
        )
    finally:
        await conn.close()
    taken = {r["body"]: r["taken"].timestamp() - offset for r in rows}
    answered = {
        r["body"]: r["answered"].timestamp() - offset
        for r in rows
        if r["answered"] is not None
    }
    return taken, answered


def _hops(
    traffic: Traffic,
    back: float,
    taken: dict[str, float],
    answered: dict[str, float],
) -> str:
    """Where the first message sent after the return spent its time, and the
    backlog it queued behind."""
    after = sorted(
        (t, b)
        for b, t in traffic.sent_at.items()
        if t >= back and not b.endswith("-quiet")
    )
    if not after:
        return ""
    sent, body = after[0]
    backlog = sum(
        1
        for b in traffic.accepted
        if traffic.sent_at[b] < sent and answered.get(b, float("inf")) > back
    )

    def at(times: dict[str, float]) -> str:
        return f"{times[body] - back:.1f}" if body in times else "—"

    first = min((t for t in taken.values() if t >= back), default=None)
    edge = min((t for t in traffic.accepted_at.values() if t >= back), default=None)
    return (
        f"webhooks accepted again at {_seconds(edge and edge - back)}, "
        f"messaging took its first message at {_seconds(first and first - back)}; "
        f"the new one ({traffic.sids[body]}): sent {sent - back:.1f}, "
        f"last try {at(traffic.tried_at)}, accepted {at(traffic.accepted_at)}, "
        f"taken by messaging {at(taken)}, answered {at(answered)}; "
        f"{backlog} earlier messages unanswered at the return"
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
    # The assistants there before the faults (billing's fault adds new ones).
    ready_of = (
        "SELECT count(*) FROM assistants WHERE status = 'READY' AND user_id = ANY($1)"
    )
    placed = (
        "SELECT user_id, status, host_id, port, generation FROM assistants "
        "WHERE host_id = $1 AND user_id = ANY($2) ORDER BY user_id"
    )
    conn = await asyncpg.connect(db_url)
    try:
        # The last one is the quiet user: it writes once, when a fault ends.
        for i in range(USERS + 1):
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
        while await conn.fetchval(ready) < USERS + 1 + HOSTED:
            if time.monotonic() > deadline:
                raise TimeoutError("the hosted assistants did not get READY")
            await asyncio.sleep(0.5)
        before = [r[0] for r in await conn.fetch("SELECT user_id FROM assistants")]
        ready_before = await conn.fetchval(ready_of, before)
        placed_before = [dict(r) for r in await conn.fetch(placed, HOST_ID, before)]
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
        ("kill -9 billing", lambda: kill("billing")),
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
            row = await _scenario(
                f"f{number}",
                fault,
                api=api,
                devsim=devsim,
                db_url=db_url,
                label=name,
                # New users pay while billing dies.
                checkouts=name == "kill -9 billing",
            )
            row.fault = name
            rows.append(row)
            print(f"  {name}: done", flush=True)

    # A few reconcile passes with everything back.
    await asyncio.sleep(5)
    conn = await asyncpg.connect(db_url)
    try:
        ready_after = await conn.fetchval(ready_of, before)
        placed_after = [dict(r) for r in await conn.fetch(placed, HOST_ID, before)]
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
        "| recovery s | new message answered after s "
        "| a quiet user's message answered after s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.fault} | {r.sent} | {r.accepted} | {r.once} | {r.lost} | "
            f"{r.duplicated} | {_seconds(r.recovery)} | {_seconds(r.new_message)} "
            f"| {_seconds(r.quiet_user)} |"
        )
    print("\nThe first message sent after the return (s from the return):")
    for r in rows:
        print(f"- {r.fault}: {r.hops or '—'}")
    for r in rows:
        if r.billed is not None:
            print(f"\nStripe during {r.fault}: {r.billed.line()}")
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
        any(r.lost or r.duplicated or (r.billed and r.billed.bad) for r in rows)
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
        # Every stream, as the operator: each service creates only the streams
        # it owns, and this stack runs no llm-proxy (USAGE's owner), for which
        # messaging would otherwise wait.
        asyncio.run(_streams(nats.url_for(OPERATOR)))
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
            "LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
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
            # Room for the assistants of the users who pay during billing's fault.
            "HOST_CAPACITY": str(HOSTED + 50),
            "OPENCLAW_INSTALL_DIR": str(entry.parents[2]),
            # No sleeping: the stand-in gateways write none of OpenClaw's
            # activity, and every assistant must stay READY to be counted.
            # Sleep and wake have their own tests and bench/density.py.
            "IDLE_SUSPEND_AFTER_SECONDS": "0",
        }

        async def migrated() -> None:
            conn = await asyncpg.connect(db_url)
            try:
                await migrate(conn)
            finally:
                await conn.close()

        asyncio.run(migrated())
        # Each secret only where it belongs (devsim's Stripe keys default to these).
        own = {
            "billing": {
                "STRIPE_SECRET_KEY": DEV_STRIPE_SECRET_KEY,
                "STRIPE_PRICE_ID": DEV_STRIPE_PRICE_ID,
                "STRIPE_API_BASE": devsim_url,
            },
            "gateway-api": {
                "STRIPE_WEBHOOK_SECRET": DEV_STRIPE_WEBHOOK_SECRET,
                "DEV_LOGIN_ENABLED": "true",
                "DEV_LOGIN_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            },
            "devsim": {"DEVSIM_STRIPE_WEBHOOK_URL": f"{api}{STRIPE_WEBHOOK_PATH}"},
        }
        python = sys.executable
        for name, argv in (
            ("devsim", [python, "-m", "yourclaw_devkit.devsim"]),
            ("gateway-api", [python, "-m", "yourclaw_gateway_api"]),
            ("messaging", [python, "-m", "yourclaw_messaging"]),
            ("billing", [python, "-m", "yourclaw_billing"]),
            ("provisioner", [python, "-m", "yourclaw_provisioner"]),
            ("host-agent", [python, "-m", "yourclaw_host_agent"]),
        ):
            user = host_user(HOST_ID) if name == "host-agent" else name
            identity = (
                {"NATS_USER": user, "NATS_PASSWORD": nats.passwords[user]}
                if nats.passwords and user in nats.passwords
                else {}
            )
            level = {"LOG_LEVEL": "DEBUG"} if name in DEBUG else {}
            services[name] = Service(
                name, argv, {**env, **own.get(name, {}), **identity, **level}, tmp
            )
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


async def _streams(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await ensure_topology(nc.jetstream())
    finally:
        await nc.close()


def _utc() -> str:
    """Wall-clock time as the services' logs print it, to find the moment there."""
    return (
        time.strftime("%H:%M:%S", time.gmtime())
        + f".{int(time.time() * 1000) % 1000:03d}"
    )


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
