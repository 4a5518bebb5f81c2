"""Benchmark: the platform's own latency, from Twilio's webhook to the Twilio send.

gateway-api, messaging and the stand-ins (Twilio Messages + a zero-latency
OpenAI-compatible assistant) run as separate processes on real NATS JetStream
and PostgreSQL. Signed webhooks go in; every reply is recorded (`messages`
rows) and handed to the Twilio stand-in. Latency is the time from sending the
webhook to messaging recording Twilio's answer (the outbound row's
`updated_at`), so it includes the webhook, the JetStream hop, every Postgres
write, the assistant call and the Twilio call.

The stand-ins are `bench/_standins.py` by default: the same wire formats as
devsim at a fraction of its CPU, because here they share the two CPUs with the
platform, and in production Twilio and the assistants are other machines.
`BENCH_STANDINS=devsim` runs devsim itself.

    uv run python bench/e2e_overhead.py
    BENCH_BURST=5000 BENCH_USERS=2000 BENCH_MESSAGING_REPLICAS=2 uv run python bench/e2e_overhead.py

Uses NATS_URL / DATABASE_URL when set, else starts embedded servers.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import datetime

import asyncpg
import psutil
from _stack import Edge, run_edge
from _standins import KeepAliveClient, signed_form_post
from yourclaw_common.crypto import SecretBox
from yourclaw_common.db import migrate
from yourclaw_devkit.cli import register_dev_user

LIGHT = int(os.environ.get("BENCH_LIGHT", "200"))
LIGHT_RATE = float(os.environ.get("BENCH_LIGHT_RATE", "20"))
BURST = int(os.environ.get("BENCH_BURST", "20000"))
# Enough users that none passes the default limit of 5 messages a minute.
USERS = int(os.environ.get("BENCH_USERS", "5000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
# "lean": bench/_standins.py; "devsim": the stand-ins `make up` runs (FastAPI,
# with a request log and the simulator's store), which cost several times more.
STANDINS = os.environ.get("BENCH_STANDINS", "lean")
# Messaging replicas, each its own process (they share the consumer).
REPLICAS = int(os.environ.get("BENCH_MESSAGING_REPLICAS", "1"))
# Twilio's status callbacks (sent, delivered) for every reply, as production
# has them: two more signed webhooks, events and statements per message.
CALLBACKS = os.environ.get("BENCH_STATUS_CALLBACKS", "0") == "1"
# What "done" means for a reply, and what its latency is measured to.
DONE = "status = 'SENT'" + (" AND delivery_status = 'delivered'" if CALLBACKS else "")
SID = "ACbench" + "0" * 27
TOKEN = "bench-twilio-auth-token"
SENDER = "whatsapp:+14155238886"
PATH = "/api/v1/webhooks/twilio/whatsapp"
ASSISTANT_TOKEN = "bench-gateway-token"


def _phone(i: int) -> str:
    return f"+1555{i:07d}"


class Sender:
    """Twilio: signed webhooks over keep-alive connections.

    A bare HTTP/1.1 client (`_standins.KeepAliveClient`) rather than aiohttp or
    httpx: the load generator shares the CPUs with the platform, and those
    clients cost 0.2-1.5 ms a request here. Requests can be signed ahead of
    time, as Twilio signs on its own machines.
    """

    def __init__(self, public_url: str):
        self.url = public_url + PATH
        self.client = KeepAliveClient(self.url)
        self.sent_at: dict[str, float] = {}

    def signed(self, i: int) -> tuple[str, bytes]:
        """The webhook for message `i`: its MessageSid and the whole request."""
        sid = "SM" + uuid.uuid4().hex
        form = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": SID,
            "From": f"whatsapp:{_phone(i % USERS)}",
            "To": SENDER,
            "Body": f"bench {i}",
            "NumMedia": "0",
        }
        return sid, signed_form_post(self.url, form, TOKEN)

    async def post(self, sid: str, request: bytes) -> None:
        self.sent_at[sid] = time.time()
        status = await self.client.send(request)
        if not 200 <= status < 300:
            raise RuntimeError(f"gateway-api answered HTTP {status} to {sid}")

    async def send(self, i: int) -> None:
        await self.post(*self.signed(i))


async def _sent_times(pool: asyncpg.Pool, sids: list[str]) -> dict[str, datetime]:
    rows = await pool.fetch(
        "SELECT in_reply_to, updated_at FROM messages "
        f"WHERE in_reply_to = ANY($1::text[]) AND {DONE}",
        sids,
    )
    return {r["in_reply_to"]: r["updated_at"] for r in rows}


async def _wait_all(pool: asyncpg.Pool, sids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = await pool.fetchval(
            "SELECT count(*) FROM messages WHERE in_reply_to = ANY($1::text[]) "
            f"AND {DONE}",
            sids,
        )
        if done >= len(sids):
            return
        # Seldom: the count is PostgreSQL work, charged to the platform's CPU.
        await asyncio.sleep(0.5)
    raise TimeoutError(f"only {done}/{len(sids)} replies sent")


_ROLES = (
    ("yourclaw_gateway_api", "gateway-api"),
    ("yourclaw_messaging", "messaging"),
    ("yourclaw_devkit.devsim", "stand-ins (Twilio + assistant)"),
    ("_standins.py", "stand-ins (Twilio + assistant)"),
    ("nats-server", "nats-server"),
    ("postgres", "postgres"),
)


_PLATFORM = ("gateway-api", "messaging", "nats-server", "postgres")


def _cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by this benchmark's processes, by role."""
    me = psutil.Process()
    used: dict[str, float] = {"benchmark client": sum(me.cpu_times()[:2])}
    for proc in me.children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            seconds = sum(proc.cpu_times()[:2])
        except psutil.Error:
            continue
        role = next((r for key, r in _ROLES if key in cmdline), "other")
        used[role] = used.get(role, 0.0) + seconds
    return used


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


MEASURED_TO = "'delivered' callback recorded" if CALLBACKS else "Twilio send recorded"


async def _run(edge: Edge) -> None:
    api, devsim = edge.api, edge.standins
    pool = await asyncpg.create_pool(edge.database_url, min_size=1, max_size=4)
    box = SecretBox(edge.key)
    async with pool.acquire() as conn:
        await migrate(conn)
        for i in range(USERS):
            await register_dev_user(
                conn, phone=_phone(i), endpoint=devsim, token=ASSISTANT_TOKEN, box=box
            )
    sender = Sender(api)
    # Warm up: messages in flight at once, so that every connection of each
    # pool has prepared its statements (the first use of a statement on a
    # connection costs ~15 ms of planning; a replica pays it once).
    await asyncio.gather(
        *(sender.send(USERS - 1 - k) for k in range(min(CONCURRENCY, USERS)))
    )
    await _wait_all(pool, list(sender.sent_at), 60)
    sender.sent_at.clear()

    # Light load: one message at a time, LIGHT_RATE per second.
    for i in range(LIGHT):
        await sender.send(i)
        await asyncio.sleep(1 / LIGHT_RATE)
    sids = list(sender.sent_at)
    await _wait_all(pool, sids, 120)
    done = await _sent_times(pool, sids)
    light = [
        (done[s].timestamp() - sender.sent_at[s]) * 1000 for s in sids if s in done
    ]
    sender.sent_at.clear()

    # Burst: BURST messages from USERS users, CONCURRENCY in flight,
    # signed before the clock starts (Twilio signs on its own machines).
    queue = iter([sender.signed(i) for i in range(BURST)])
    cpu_before = _cpu_by_role()
    started, started_wall = time.perf_counter(), time.time()

    async def worker() -> None:
        for sid, request in queue:
            await sender.post(sid, request)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    accepted = time.perf_counter() - started
    sids = list(sender.sent_at)
    await _wait_all(pool, sids, 600)
    cpu_after = _cpu_by_role()
    done = await _sent_times(pool, sids)
    # Until the last reply was recorded, not until the poll that saw it.
    total = max(done.values()).timestamp() - started_wall
    burst = [(done[s].timestamp() - sender.sent_at[s]) * 1000 for s in sids]
    notices = await pool.fetchval(
        "SELECT count(*) FROM messages WHERE kind <> 'reply' AND direction = 'OUTBOUND'"
    )
    if notices:
        raise SystemExit(f"{notices} replies were notices, not turns: more users")
    await pool.close()
    cpu = {
        role: (cpu_after[role] - cpu_before.get(role, 0.0)) * 1000 / BURST
        for role in cpu_after
    }
    cpu_lines = "\n".join(
        f"            {role:<32} {ms:5.2f} ms"
        for role, ms in sorted(cpu.items(), key=lambda item: -item[1])
    )
    # In production Twilio, the assistant and the senders are other machines.
    own = sum(cpu.get(role, 0.0) for role in _PLATFORM)

    print(
        f"""
machine     {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}
stand-ins   {STANDINS} (BENCH_STANDINS: lean or devsim), status callbacks \
{"on" if CALLBACKS else "off"} (BENCH_STATUS_CALLBACKS)
light load  {len(light)} messages at {LIGHT_RATE:g}/s, webhook → {MEASURED_TO}:
            p50 {statistics.median(light):.1f} ms, p99 {_pct(light, 99):.1f} ms, \
max {max(light):.1f} ms
burst       {BURST} messages from {USERS} users, {CONCURRENCY} in flight, {REPLICAS} messaging replica(s):
            webhooks accepted in {accepted:.1f} s ({BURST / accepted:.0f}/s), \
all replies {"delivered" if CALLBACKS else "sent"} after {total:.1f} s
            → {BURST / total:.0f} messages/s through gateway + messaging, \
latency p50 {statistics.median(burst):.0f} ms, p99 {_pct(burst, 99):.0f} ms
cpu/message during the burst ({sum(cpu.values()):.2f} ms in all, \
{os.cpu_count() or 1} CPUs give {(os.cpu_count() or 1) * 1000:.0f} ms/s):
{cpu_lines}
platform    {own:.2f} ms of CPU per message ({", ".join(_PLATFORM)}): \
{(os.cpu_count() or 1) * 1000 / own:.0f} messages/s on these CPUs when the \
stand-ins and the load generator run elsewhere (an estimate, not a measurement)
"""
    )


def main() -> None:
    def env(edge: Edge) -> dict[str, str]:
        return {
            # devsim serves only in a dev environment.
            "YOURCLAW_ENV": "dev",
            "TWILIO_WHATSAPP_NUMBER": SENDER,
            "DEVSIM_PORT": edge.standins.rpartition(":")[2],
            "DEVSIM_STATUS_CALLBACKS": "true" if CALLBACKS else "false",
            "BENCH_STATUS_CALLBACKS": "1" if CALLBACKS else "0",
            "TWILIO_STATUS_CALLBACK_URL": (
                f"{edge.api}/api/v1/webhooks/twilio/status" if CALLBACKS else ""
            ),
            "DEVSIM_LLM_DELAY_SECONDS": "0",
            "MESSAGING_CONCURRENCY": str(CONCURRENCY),
        }

    if STANDINS == "devsim":
        standins = ([sys.executable, "-m", "yourclaw_devkit.devsim"], "/_devsim/health")
    elif STANDINS != "lean":
        raise SystemExit(f"BENCH_STANDINS={STANDINS!r}: lean or devsim")

    run_edge(
        "yourclaw-e2e-bench-",
        "bench_e2e",
        _run,
        twilio=(SID, TOKEN),
        assistant_token=ASSISTANT_TOKEN,
        env=env,
        standins=standins if STANDINS == "devsim" else None,
        replicas=REPLICAS,
    )


if __name__ == "__main__":
    main()
