"""Benchmark: sleeping assistants on the real Docker Engine (issue #19).

The whole path a message takes to a sleeping assistant, on one host: a
provisioner (ASSISTANT_SLEEP_OVERCOMMIT), a host-agent (docker runtime, idle
assistants frozen, then swapped: deep sleep, their memory moved to the host's
swap; stopped where there is no swap), messaging (wakes before the turn), the LLM
proxy and the LLM and Twilio stand-ins, on embedded NATS and PostgreSQL.

BENCH_DENSITY_USERS users each get an assistant and one reminder (an OpenClaw
automation written by OpenClaw's own CLI, due during the day), then live one
day compressed into BENCH_DAY_SECONDS: each writes BENCH_MESSAGES_PER_USER
WhatsApp messages at times drawn from a daily pattern (peaks in the morning,
at lunch and in the evening; seeded, so runs compare). The idle times are
compressed with the day. Prints:

- assistants per GB of host memory: always-on (every gateway awake all day:
  the idle resident memory of an awake gateway, measured in the same run)
  against with suspension (the fleet's resident memory averaged over the day,
  a stopped gateway counting 0), and their ratio; and the same projected
  onto a real day at the default idle times (a compressed day cannot show
  it: OpenClaw needs about a minute after a turn before it may sleep): the
  share of the day the pattern holds memory, awake or frozen, and a deep
  sleeper's resident memory as measured in the pairs for the rest;
- message → first reply, by the state the assistant was in when the message
  arrived (awake, frozen, swapped, stopped), p50 / p99; the stand-in LLM answers at
  once, so the difference to awake is our overhead (the wake); beside it
  the major page faults of the container until the reply (pages waited
  for from disk or swap: how much of a wake is paging);
- the share of reminders that ran within 60 s of their due time;
- the turns the user got our apology for instead of an answer (the
  assistant failed them), kept out of the latencies;
- the wake's own cost: BENCH_WAKE_PAIRS pairs of turns after the same quiet
  time (BENCH_PAIR_IDLE_SECONDS, past the 75 s after which OpenClaw runs its
  thaw recovery): with the assistant awake, frozen by the host's `suspend`
  verb, and frozen with its memory then moved to swap (the host-agent's own
  `swap_out`). OpenClaw's first turn after a quiet spell is slower
  awake too, so this difference, not the one to back-to-back turns, is what
  sleeping adds. BENCH_PAIR_USERS of the users take pairs at once, their
  turns spread over the quiet time, for more samples in the same hour.
  Several quiet times, comma-separated (BENCH_PAIR_IDLE_SECONDS=100,300,600),
  are taken by the pair users in turn and printed apart: how what a freeze
  adds grows with its length. BENCH_PAIR_STATES=frozen leaves out the
  swapped turn. As
  root, beside the swapped pairs: how the sleeper's memory lay in swap just
  before its turn, in pages per run of consecutive swap slots (a run comes
  back as one read).

    make images && uv run python bench/density.py
    BENCH_DENSITY_USERS=8 BENCH_DAY_SECONDS=1800 uv run python bench/density.py
    BENCH_DENSITY_USERS=6 BENCH_PAIR_USERS=6 BENCH_WAKE_PAIRS=5 \
        uv run python bench/density.py   # 30 wakes of each kind, ≈ 45 min
    BENCH_DENSITY_USERS=6 BENCH_PAIR_USERS=6 BENCH_WAKE_PAIRS=1 \
        BENCH_PAIR_IDLE_SECONDS=100,300,600 BENCH_PAIR_STATES=frozen \
        uv run python bench/density.py   # frozen for 100, 300 and 600 s

Needs a Docker Engine (`make engine`), the tenant image (`make images`) and
memory for BENCH_DENSITY_USERS booted gateways (about 1 GB each), and swap
(BENCH_SWAP_MB; as root a swap file under .data is added for the run when
the machine has less; BENCH_SWAP=zram swaps to the kernel's compressed RAM
disk instead: a deep sleeper's MB in the pairs then include its compressed
pages, the day's memory samples do not). Packets go only to this machine:
loopback and the docker bridge's gateway.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import asyncpg
import httpx
import nats
import psutil
from _stack import bench_infra, provisioner_env
from _stack import stop as stop_procs
from containers import (
    IMAGE,
    bridge_gateway,
    container_rss_mb,
    docker,
    host_memory_mb,
    require_engine,
)
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from provisioning import ReadyWatch, _hosts_known, _new_users, _pct
from yourclaw_common.crypto import SecretBox
from yourclaw_common.db import create_pool
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    AssistantDeprovisionRequested,
    AssistantProvisionRequested,
    HostHeartbeat,
    HostVerb,
    NamedContainer,
    host_command,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.defaults import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_devkit.devsim import DevsimSettings, running_devsim
from yourclaw_devkit.pytest_plugin import inbound_whatsapp
from yourclaw_devkit.swapfile import host_swap, host_zram, zram_used_mb
from yourclaw_host_agent.app import run as run_host_agent
from yourclaw_host_agent.firewall import Firewall, TenantFirewallPlan
from yourclaw_host_agent.settings import HostAgentSettings
from yourclaw_host_agent.swap import Swapped, major_faults, swap_out, swap_slots
from yourclaw_llm_proxy.app import run as run_llm_proxy
from yourclaw_llm_proxy.settings import LlmProxySettings
from yourclaw_messaging.replies import APOLOGY

USERS = int(os.environ.get("BENCH_DENSITY_USERS", "4"))
DAY_SECONDS = float(os.environ.get("BENCH_DAY_SECONDS", "1200"))
MESSAGES_PER_USER = int(os.environ.get("BENCH_MESSAGES_PER_USER", "4"))
# Shorter than a real day's 900 s and 3600 s, but not compressed with the day:
# OpenClaw's session database settles about a minute after the last turn, and
# a turn on a loaded 2-core machine writes it seconds apart.
IDLE_SUSPEND = float(os.environ.get("BENCH_IDLE_SUSPEND_SECONDS", "120"))
IDLE_STOP = float(os.environ.get("BENCH_IDLE_STOP_SECONDS", "300"))
WAKE_LEAD = float(os.environ.get("BENCH_WAKE_LEAD_SECONDS", "30"))
# The host-agent's floor of free memory below which it stops frozen sleepers;
# 0 here by default, so a shared machine's load does not decide the figures.
MEMORY_RESERVE_MB = int(os.environ.get("BENCH_MEMORY_RESERVE_MB", "0"))
SAMPLE_SECONDS = float(os.environ.get("BENCH_SAMPLE_SECONDS", "5"))
SEED = int(os.environ.get("BENCH_SEED", "19"))
WAKE_PAIRS = int(os.environ.get("BENCH_WAKE_PAIRS", "2"))
# One quiet time, or several (comma-separated): the pair users take them in
# turn, and each quiet time's pairs are printed apart.
PAIR_IDLES = [
    float(v) for v in os.environ.get("BENCH_PAIR_IDLE_SECONDS", "100").split(",")
]
# The sleeping states the pairs take after their awake turn.
PAIR_STATES = os.environ.get("BENCH_PAIR_STATES", "frozen,swapped").split(",")
if not PAIR_STATES or not set(PAIR_STATES) <= {"frozen", "swapped"}:
    raise SystemExit("BENCH_PAIR_STATES takes frozen, swapped or both")
# Users whose assistants take the pairs, each its own, their turns spread
# over the quiet time so that no two wakes coincide (more samples an hour).
PAIR_USERS = int(os.environ.get("BENCH_PAIR_USERS", "1"))
# Swap for deep sleep when the machine has less (`yourclaw_devkit.swapfile`).
SWAP_MB = int(os.environ.get("BENCH_SWAP_MB", str(1024 * (USERS + 1))))
# "zram": deep sleep swaps to compressed RAM instead (root, a kernel with zram);
# a swapped sleeper then also costs its compressed pages, counted in its MB.
SWAP_DEVICE = os.environ.get("BENCH_SWAP", "file")
REMINDER_SLACK = 60.0
# Turns the user got our apology for instead of an answer (the assistant
# failed it): kept out of the latencies, listed at the end.
FAILED: list[str] = []
# Hours of the day people write at, and how widely around them (hours).
_PEAKS = ((8.0, 1.0), (12.5, 0.75), (19.5, 1.5))


def daily_pattern(rng: random.Random, count: int) -> list[float]:
    """`count` moments of one day (fractions of it), as people write: around
    breakfast, lunch and the evening, hardly at night."""
    moments = []
    while len(moments) < count:
        hour, spread = rng.choice(_PEAKS)
        at = rng.gauss(hour, spread)
        if 6.5 <= at < 23.5:
            moments.append(at / 24)
    return sorted(moments)


def held_share(rng: random.Random, *, users: int, stop_after: float) -> float:
    """The share of a real day an assistant holds memory (awake or frozen:
    from each message or reminder until `stop_after` seconds of quiet), for
    `users` simulated users writing MESSAGES_PER_USER times a day."""
    day = 86_400.0
    shares = []
    for _ in range(users):
        moments = [at * day for at in daily_pattern(rng, MESSAGES_PER_USER)]
        moments = sorted([*moments, rng.uniform(0.15, 0.95) * day])
        held, until = 0.0, -math.inf
        for at in moments:
            held += min(stop_after, at + stop_after - max(at, until))
            until = at + stop_after
        shares.append(min(held, day) / day)
    return statistics.mean(shares)


@dataclass
class Fleet:
    """What the host's heartbeats say: each container's sleep depth."""

    sleeping: dict[str, str | None] = field(default_factory=dict)
    beats: int = 0

    async def on_beat(self, msg: Msg) -> None:
        beat = HostHeartbeat.model_validate_json(msg.data)
        self.sleeping = {c.name: c.sleeping for c in beat.containers}
        self.beats += 1

    def state(self, name: str) -> str:
        return self.sleeping.get(name) or "awake"


@dataclass
class User:
    user_id: uuid.UUID
    phone: str
    token: str = ""
    reminder_due: float = 0.0

    @property
    def name(self) -> str:
        return f"yourclaw-{self.user_id}"


async def sign_up(pool: asyncpg.Pool, users: list[uuid.UUID]) -> list[User]:
    """A proven WhatsApp number and an ACTIVE subscription for each user."""
    found = []
    for n, user_id in enumerate(users):
        phone = f"+1555019{n:04d}"
        await pool.execute(
            "INSERT INTO user_phones (user_id, phone_e164) VALUES ($1, $2)",
            user_id,
            phone,
        )
        await pool.execute(
            """
            INSERT INTO subscriptions (user_id, stripe_customer_id,
                stripe_subscription_id, status, stripe_status, current_period_end)
            VALUES ($1, $2, $3, 'ACTIVE', 'active', now() + interval '30 days')
            """,
            user_id,
            f"cus_bench_{user_id.hex[:16]}",
            f"sub_bench_{user_id.hex[:16]}",
        )
        found.append(User(user_id, phone))
    return found


def add_reminder(user: User, in_seconds: int) -> float:
    """A one-shot automation written by OpenClaw's CLI inside the gateway (as
    its automations tool does), kept after its run; its due time (Unix s)."""
    out = docker(
        "exec", "-u", "1000:1000", user.name,
        "node", "dist/index.js", "cron", "add",
        "--at", f"{in_seconds}s", "--command", "echo reminder",
        "--name", "reminder", "--no-deliver", "--keep-after-run",
        "--token", user.token, "--url", "ws://127.0.0.1:18789",
    )  # fmt: skip
    return float(json.loads(out[out.index("{") :])["nextRunAtMs"]) / 1000


def reminder_ran_at(data_dir: Path, user: User) -> float | None:
    """When the reminder last ran (Unix s), from OpenClaw's cron store, read
    from a copy (the gateway may hold it open)."""
    state = data_dir / str(user.user_id) / "config" / "state"
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal", "-shm"):
            source = state / f"openclaw.sqlite{suffix}"
            if source.exists():
                shutil.copy(source, Path(tmp) / source.name)
        db = sqlite3.connect(Path(tmp) / "openclaw.sqlite")
        try:
            rows = db.execute(
                "SELECT state_json FROM cron_jobs WHERE name = 'reminder'"
            ).fetchall()
        finally:
            db.close()
    for (state_json,) in rows:
        last = json.loads(state_json or "{}").get("lastRunAtMs")
        if last:
            return float(last) / 1000
    return None


async def replies_to(http: httpx.AsyncClient, phone: str) -> list[str]:
    """The bodies of the messages sent to `phone`, newest first."""
    resp = await http.get("/_devsim/messages", params={"to": f"whatsapp:{phone}"})
    resp.raise_for_status()
    return [str(m["body"]) for m in resp.json()["messages"]]


def container_pid(name: str) -> int:
    """The container's init process on this host; 0 when it is not running."""
    return int(docker("inspect", "-f", "{{.State.Pid}}", name) or 0)


def container_faults(name: str) -> int | None:
    """Major page faults of the container's processes so far (pages they
    waited for from disk or swap); None when it is not running."""
    pid = container_pid(name)
    return major_faults(pid) if pid else None


def pages_per_run(name: str) -> float | None:
    """Of the container's memory in swap, read in address order: pages per
    run of consecutive swap slots (a run comes back as one read; the longer,
    the fewer reads a wake waits for). None without root (slots show to root
    only) or with nothing in swap."""
    if os.geteuid() != 0:
        return None
    init = psutil.Process(container_pid(name))
    slots = [swap_slots(p.pid) for p in [init, *init.children(recursive=True)]]
    pages = sum(len(s) for s in slots)
    runs = sum(1 + sum(b != a + 1 for a, b in pairwise(s)) for s in slots if s)
    return pages / runs if runs else None


async def turn(
    js: JetStreamContext,
    http: httpx.AsyncClient,
    user: User,
    body: str,
    *,
    faults: list[int] | None = None,
) -> float | None:
    """Send one WhatsApp message; seconds until its first reply went out, None
    when that reply was the apology (listed in FAILED). `faults` gets the
    major page faults of the assistant's container until then (not for a
    stopped one: its boot starts the count again)."""
    before = len(await replies_to(http, user.phone))
    faulted = await asyncio.to_thread(container_faults, user.name)
    sent = time.perf_counter()
    await publish(js, inbound_whatsapp(user.phone, body))
    while len(replies := await replies_to(http, user.phone)) <= before:
        if time.perf_counter() - sent > 300:
            raise TimeoutError(f"no reply to {user.phone} in 300 s")
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - sent
    if APOLOGY in replies[: len(replies) - before]:  # this turn's, newest first
        FAILED.append(f"{user.name}: {body}")
        print(f"{body}: the assistant failed the turn", file=sys.stderr)
        return None
    after = await asyncio.to_thread(container_faults, user.name)
    if faults is not None and faulted is not None and after is not None:
        if after >= faulted:
            faults.append(after - faulted)
    return seconds


async def sample_memory(
    fleet: Fleet, users: list[User], stop: asyncio.Event, out: list[float]
) -> None:
    """Every SAMPLE_SECONDS: the fleet's resident memory (MB); a stopped
    gateway holds none."""
    while not stop.is_set():
        total = 0.0
        for user in users:
            if fleet.state(user.name) != "stopped":
                with suppress(subprocess.CalledProcessError, KeyError):
                    total += await asyncio.to_thread(container_rss_mb, user.name)
        out.append(total)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)


def messaging_proc(env: dict[str, str], twilio: str) -> subprocess.Popen[bytes]:
    log = os.environ.get("BENCH_LOG_DIR")
    out = Path(log, "messaging.log").open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "yourclaw_messaging"],
        env={
            **env,
            "SERVICE_NAME": "messaging",
            "TWILIO_API_BASE": twilio,
            "TWILIO_ACCOUNT_SID": DEV_TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEV_TWILIO_AUTH_TOKEN,
            "TWILIO_WHATSAPP_NUMBER": DEV_WHATSAPP_NUMBER,
            "RATE_LIMIT_MSG_PER_MIN": "0",
            "RATE_LIMIT_MSG_PER_DAY": "0",
            "ASSISTANT_TIMEOUT_SECONDS": "300",
            "ASSISTANT_WAKE_TIMEOUT_SECONDS": "200",
        },
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
    )


def provisioner_proc(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = os.environ.get("BENCH_LOG_DIR")
    out = Path(log, "provisioner.log").open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "yourclaw_provisioner"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
    )


async def run_day(
    nats_url: str, database_url: str, env: dict[str, str], tmp: Path
) -> dict[str, object]:
    suffix = uuid.uuid4().hex[:6]
    bridge, network = f"ycd{suffix}", f"yourclaw-bench-{suffix}"
    data_dir = tmp / f"host-{suffix}"
    gateway_ip = bridge_gateway()
    llm_port, devsim_port = free_port(gateway_ip), free_port(gateway_ip)
    # A port grid of its own: a stopped sleeper does not hold its port, and on
    # a machine shared with other stacks one of theirs may take it meanwhile.
    ports = 30_000 + random.Random().randrange(0, 9_000, 100)
    host = HostAgentSettings(
        _env_file=None,  # type: ignore[call-arg]
        nats_url=nats_url,
        database_url=database_url,
        host_runtime="docker",
        yourclaw_env="dev",
        host_id=f"bench-density-{suffix}",
        host_capacity=USERS,
        host_heartbeat_seconds=1,
        host_data_dir=data_dir,
        openclaw_image=IMAGE,
        tenant_network=network,
        tenant_bridge=bridge,
        tenant_host_ports=[llm_port],
        idle_suspend_after_seconds=IDLE_SUSPEND,
        idle_stop_after_seconds=IDLE_STOP,
        wake_lead_seconds=WAKE_LEAD,
        host_memory_reserve_mb=MEMORY_RESERVE_MB,
        host_port_range_start=ports,
        host_port_range_end=ports + 99,
        host_port_stride=1,
        log_level="WARNING",
    )
    env = {
        **env,
        "LLM_PROXY_URL": f"http://host.docker.internal:{llm_port}",
        "OPENCLAW_IMAGE": IMAGE,
        "ASSISTANT_SLEEP_OVERCOMMIT": "3",
        "ASSISTANT_WAKE_WAIT_SECONDS": "180",
        "HOST_COMMAND_TIMEOUT_SECONDS": "15",
        "HOST_PORT_RANGE_START": str(ports),
        "HOST_PORT_RANGE_END": str(ports + 99),
        "HOST_PORT_STRIDE": "1",
    }
    box = SecretBox(env["ENCRYPTION_KEY"])
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    pool = await create_pool(database_url, max_size=4)
    fleet, watch = Fleet(), ReadyWatch()
    await nc.subscribe("heartbeat.*", cb=fleet.on_beat)
    await nc.subscribe("assistant.ready", cb=watch.on_ready)
    stop, sampling = asyncio.Event(), asyncio.Event()
    agent = asyncio.create_task(run_host_agent(host, stop))
    proxy = asyncio.create_task(
        run_llm_proxy(
            LlmProxySettings(
                _env_file=None,  # type: ignore[call-arg]
                nats_url=nats_url,
                database_url=database_url,
                encryption_key=env["ENCRYPTION_KEY"],
                llm_proxy_host=gateway_ip,
                llm_proxy_port=llm_port,
                dev_llm_base_url=f"http://{gateway_ip}:{devsim_port}",
                log_level="WARNING",
            ),
            stop,
        )
    )
    rng = random.Random(SEED)
    result: dict[str, object] = {}
    users: list[User] = []
    procs: list[subprocess.Popen[bytes]] = []
    devsim = DevsimSettings(
        _env_file=None,  # type: ignore[call-arg]
        devsim_llm_api_key=None,
        devsim_status_callbacks=False,
    )
    async with (
        running_devsim(devsim, host=gateway_ip, port=devsim_port) as devsim_url,
        httpx.AsyncClient(base_url=devsim_url, timeout=10) as http,
    ):
        procs = [provisioner_proc(env), messaging_proc(env, devsim_url)]
        try:
            await _hosts_known(pool, 1)
            users = await sign_up(pool, await _new_users(pool, USERS))
            for user in users:
                await publish(js, AssistantProvisionRequested(user_id=user.user_id))
                await watch.wait_for([user.user_id], timeout=600)
                sealed = await pool.fetchval(
                    "SELECT gateway_token_encrypted FROM assistants WHERE user_id = $1",
                    user.user_id,
                )
                user.token = box.decrypt(sealed, owner=str(user.user_id))
            # Awake, every gateway booted and idle a while: the always-on figure.
            await asyncio.sleep(min(IDLE_SUSPEND, 15) / 2)
            result["awake_rss"] = [
                await asyncio.to_thread(container_rss_mb, u.name) for u in users
            ]
            # Two messages each, the second the baseline if the assistant is
            # still awake (one created a while ago may sleep by now); the first
            # opens OpenClaw's session, which a later turn does not pay again.
            latencies: dict[str, list[float]] = {}
            for user in users:
                state = fleet.state(user.name)
                seconds = await turn(js, http, user, "hello, are you there?")
                if seconds is not None:
                    latencies.setdefault(f"first ({state})", []).append(seconds)
                state = fleet.state(user.name)
                seconds = await turn(js, http, user, "and now?")
                if seconds is not None:
                    latencies.setdefault(state, []).append(seconds)
            result["awake"] = latencies.pop("awake", [])
            # One reminder each, due some time during the day.
            for user in users:
                due_in = int(DAY_SECONDS * rng.uniform(0.15, 0.95))
                user.reminder_due = await asyncio.to_thread(add_reminder, user, due_in)
            plan = sorted(
                (DAY_SECONDS * at, user)
                for user in users
                for at in daily_pattern(rng, MESSAGES_PER_USER)
            )
            memory: list[float] = []
            sampler = asyncio.create_task(sample_memory(fleet, users, sampling, memory))
            day_started = time.perf_counter()

            awake_mb = statistics.mean(result["awake_rss"])  # type: ignore[arg-type]

            faults: dict[str, list[int]] = {}
            result["faults"] = faults

            async def one(at: float, user: User, n: int) -> None:
                await asyncio.sleep(max(0.0, at - (time.perf_counter() - day_started)))
                state = fleet.state(user.name)
                if state == "frozen" and (
                    await asyncio.to_thread(container_rss_mb, user.name) < awake_mb / 4
                ):
                    state = "swapped"  # deep sleep: its memory is in swap
                seconds = await turn(
                    js,
                    http,
                    user,
                    f"message {n} of the day",
                    faults=faults.setdefault(state, []),
                )
                if seconds is not None:
                    latencies.setdefault(state, []).append(seconds)

            # One user's messages in order; different users' at the same time.
            by_user: dict[uuid.UUID, list[float]] = {}
            for at, user in plan:
                by_user.setdefault(user.user_id, []).append(at)

            async def user_day(user: User) -> None:
                for n, at in enumerate(by_user.get(user.user_id, [])):
                    await one(at, user, n)

            await asyncio.gather(*(user_day(u) for u in users))
            last_due = max(u.reminder_due for u in users)
            await asyncio.sleep(
                max(0.0, DAY_SECONDS - (time.perf_counter() - day_started))
            )
            await asyncio.sleep(max(0.0, last_due + REMINDER_SLACK - time.time()))
            sampling.set()
            await sampler
            takers = users[: max(1, min(PAIR_USERS, len(users)))]
            idles = [PAIR_IDLES[n % len(PAIR_IDLES)] for n in range(len(takers))]
            each = await asyncio.gather(
                *(
                    wake_pairs(
                        nc,
                        pool,
                        js,
                        http,
                        host,
                        user,
                        idle=idles[n],
                        after=n * min(PAIR_IDLES) / len(takers),
                    )
                    for n, user in enumerate(takers)
                )
            )
            result["pairs"] = {
                idle: {
                    key: [
                        value
                        for taken, pairs in zip(idles, each, strict=True)
                        if taken == idle
                        for value in pairs[key]
                    ]
                    for key in each[0]
                }
                for idle in PAIR_IDLES
            }
            result["memory"] = memory
            result["latencies"] = latencies
            result["reminders"] = [
                (u.reminder_due, reminder_ran_at(data_dir, u)) for u in users
            ]
        finally:
            for user in users:
                await publish(js, AssistantDeprovisionRequested(user_id=user.user_id))

            async def gone() -> bool:
                return not await pool.fetchval(
                    "SELECT count(*) FROM assistants WHERE host_id IS NOT NULL"
                )

            with suppress(AssertionError):
                await eventually(gone, timeout=180, interval=0.5)
            stop_procs(procs, timeout=20)
            stop.set()
            await asyncio.gather(agent, proxy, return_exceptions=True)
            await pool.close()
            await nc.drain()
            for name in docker(
                "ps", "-aq", "--filter", f"label=yourclaw.data_dir={data_dir}"
            ).split():  # fmt: skip
                docker("rm", "-f", name)
            await Firewall(TenantFirewallPlan(bridge=bridge)).remove()
            with suppress(subprocess.CalledProcessError):
                docker("network", "rm", network)
    return result


async def wake_pairs(
    nc: nats.NATS,
    pool: asyncpg.Pool,
    js: JetStreamContext,
    http: httpx.AsyncClient,
    host: HostAgentSettings,
    user: User,
    *,
    idle: float,
    after: float = 0.0,
) -> dict[str, list[float]]:
    """Turns after `idle` seconds of quiet, awake, then in PAIR_STATES: frozen,
    swapped (frozen with its memory moved to swap, as the host-agent's deep
    sleep does); the first `after` seconds from now."""
    # swapped_mb: what a deep sleeper keeps resident, read just before its turn.
    # <state> faults: the major page faults of its turns.
    # swapped pages per run: how its memory lies in swap (`pages_per_run`).
    pairs: dict[str, list[float]] = {
        "awake": [],
        "frozen": [],
        "swapped": [],
        "swapped_mb": [],
        "awake faults": [],
        "frozen faults": [],
        "swapped faults": [],
        "swapped pages per run": [],
    }

    async def recorded(status: str) -> bool:
        return bool(
            await pool.fetchval(
                "SELECT status = $2 FROM assistants WHERE user_id = $1",
                user.user_id,
                status,
            )
        )

    async def asleep_turn(label: str, *, swapped: bool) -> float | None:
        """A turn `idle` seconds after the host froze it (and, `swapped`, after its
        memory went to swap); None when the swap took nothing (said on
        stderr, the turn still taken, frozen)."""
        quiet = time.perf_counter()
        moved: Swapped | None = None
        await nc.request(
            host_command(host.host_id, HostVerb.SUSPEND),
            NamedContainer(name=user.name).model_dump_json().encode(),
            timeout=30,
        )
        await eventually(lambda: recorded("SUSPENDED"), timeout=60, interval=0.2)
        compressed = 0.0
        if swapped:
            pid = container_pid(user.name)
            before = zram_used_mb()
            moved = await asyncio.to_thread(swap_out, pid, keep_free=0)
            compressed = zram_used_mb() - before
            if moved is None:
                free = psutil.swap_memory().free >> 20
                print(
                    f"{label}: the swap took nothing ({free} MB of swap free, "
                    f"{container_rss_mb(user.name):.0f} MB resident)",
                    file=sys.stderr,
                )
        await asyncio.sleep(max(0.0, idle - (time.perf_counter() - quiet)))
        if moved is not None:
            pairs["swapped_mb"].append(
                await asyncio.to_thread(container_rss_mb, user.name) + compressed
            )
            run = await asyncio.to_thread(pages_per_run, user.name)
            if run is not None:
                pairs["swapped pages per run"].append(run)
        faults: list[int] = []
        seconds = await turn(js, http, user, label, faults=faults)
        if swapped and moved is None:
            return None
        pairs[f"{'swapped' if swapped else 'frozen'} faults"].extend(faults)
        return seconds

    await asyncio.sleep(after)
    await turn(js, http, user, "before the pairs")  # awake, whatever it was
    for n in range(WAKE_PAIRS):
        await asyncio.sleep(idle)
        faults: list[int] = []
        seconds = await turn(js, http, user, f"pair {n}, awake", faults=faults)
        if seconds is not None:
            pairs["awake"].append(seconds)
        pairs["awake faults"].extend(faults)
        for state in PAIR_STATES:
            seconds = await asleep_turn(
                f"pair {n}, {state}", swapped=state == "swapped"
            )
            if seconds is not None:
                pairs[state].append(seconds)
    return pairs


def _faults(values: list[int] | list[float]) -> str:
    """The major page faults of a state's turns, when counted."""
    return f" · major faults p50 {statistics.median(values):.0f}" if values else ""


def _line(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {statistics.median(values):.2f} s · p99 {_pct(values, 0.99):.2f} s · "
        f"n {len(values)}"
    )


def main() -> None:
    require_engine()
    with bench_infra("yourclaw-bench-density-", "yourclaw_bench_density") as bench:
        tmp, infra = bench
        env = provisioner_env(infra)
        print(
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"{host_memory_mb() / 1024:.1f} GiB; {USERS} users, one day in "
            f"{DAY_SECONDS:.0f} s, {MESSAGES_PER_USER} messages each; frozen after "
            f"{IDLE_SUSPEND:.0f} s idle, swapped (else stopped) after {IDLE_STOP:.0f} s"
        )
        # Deep sleep needs swap: a file of its own on a machine without.
        swap = (
            host_zram(SWAP_MB)
            if SWAP_DEVICE == "zram"
            else host_swap(SWAP_MB, Path(__file__).resolve().parents[1] / ".data")
        )
        with swap:
            result = asyncio.run(
                run_day(infra.operator_url, infra.database_url, env, tmp)
            )
    awake_rss = result["awake_rss"]
    memory = result["memory"]
    latencies = result["latencies"]
    reminders = result["reminders"]
    assert isinstance(awake_rss, list)
    assert isinstance(memory, list)
    assert isinstance(latencies, dict)
    assert isinstance(reminders, list)
    per_gateway = statistics.mean(awake_rss)
    always_on = 1024 / per_gateway
    asleep_mean = statistics.mean(memory) / USERS if memory else math.nan
    with_sleep = 1024 / asleep_mean if asleep_mean else math.inf
    print(
        f"\nalways-on         {per_gateway:.0f} MB per awake gateway → "
        f"{always_on:.2f} assistants per GB"
    )
    print(
        f"with suspension   {asleep_mean:.0f} MB per assistant over the day → "
        f"{with_sleep:.2f} assistants per GB ({with_sleep / always_on:.1f} times)"
    )
    by_idle = result["pairs"]
    assert isinstance(by_idle, dict)
    swapped_mb = [mb for pairs in by_idle.values() for mb in pairs["swapped_mb"]]
    held = held_share(random.Random(SEED), users=10_000, stop_after=3_600)
    # What a deep sleeper keeps resident, as measured in the pairs; none for
    # a stopped one (a host without swap, or a run without pairs).
    kept = statistics.median(swapped_mb) if swapped_mb else 0.0
    per_assistant = held * per_gateway + (1 - held) * kept
    print(
        f"projected         a real day at the default idle times (frozen after "
        f"900 s, swapped after 3600 s), the same pattern: memory held "
        f"{100 * held:.0f} % of the day, a deep sleeper keeping {kept:.0f} MB "
        f"({'measured' if swapped_mb else 'none measured: as if stopped'}) → "
        f"{1024 / per_assistant:.2f} assistants per GB "
        f"({per_gateway / per_assistant:.1f} times)"
    )
    awake = result["awake"]
    faults = result["faults"]
    assert isinstance(awake, list)
    assert isinstance(faults, dict)
    base = statistics.median(awake or latencies.get("awake") or [0.0])
    print(f"\nmessage → first reply (stand-in LLM)\n  awake (baseline)  {_line(awake)}")
    for state, label in (
        ("awake", "awake (the day)"),
        ("frozen", "from frozen"),
        ("swapped", "from swapped"),
        ("stopped", "from stopped"),
    ):
        values = latencies.get(state, [])
        overhead = (
            f" · overhead p50 {statistics.median(values) - base:.2f} s"
            if values
            else ""
        )
        print(
            f"  {label:<17} {_line(values)}{overhead}{_faults(faults.get(state, []))}"
        )
    for idle, pairs in by_idle.items():
        if not pairs["awake"]:
            continue
        quiet = statistics.median(pairs["awake"])
        print(
            f"\nafter {idle:.0f} s of quiet (pairs)\n"
            f"  awake             {_line(pairs['awake'])}"
            f"{_faults(pairs['awake faults'])}"
        )
        for state in PAIR_STATES:
            values = pairs[state]
            runs = pairs["swapped pages per run"] if state == "swapped" else []
            print(
                f"  {state:<17} {_line(values)}"
                + (
                    f" · what sleeping adds p50 "
                    f"{statistics.median(values) - quiet:.2f} s"
                    if values
                    else ""
                )
                + _faults(pairs[f"{state} faults"])
                + (
                    f" · p50 {statistics.median(runs):.0f} pages a run of swap slots"
                    if runs
                    else ""
                )
            )
    on_time = [
        ran is not None and ran - due <= REMINDER_SLACK for due, ran in reminders
    ]
    lateness = [ran - due for due, ran in reminders if ran is not None]
    print(
        f"\nfailed turns      {len(FAILED)} answered with the apology, kept out "
        f"of the figures above" + "".join(f"\n  {label}" for label in FAILED)
    )
    print(
        f"\nreminders         {sum(on_time)} of {len(on_time)} within "
        f"{REMINDER_SLACK:.0f} s of due ({100 * sum(on_time) / len(on_time):.0f} %)"
        + (f", latest {max(lateness):+.1f} s" if lateness else "")
    )


if __name__ == "__main__":
    main()
