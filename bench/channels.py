"""Benchmark: inbound→reply overhead per channel, against WhatsApp's in the same run.

The stack of `bench/e2e_overhead.py` (gateway-api, messaging, the lean
stand-ins for Twilio, the Telegram Bot API and a zero-latency assistant, real
NATS JetStream and PostgreSQL, each its own process), with SMS on
(`TWILIO_SMS_NUMBER`) and Telegram on (`TELEGRAM_BOT_TOKEN`,
`TELEGRAM_WEBHOOK_SECRET`, `TELEGRAM_API_BASE`). WhatsApp and SMS users have a
proven phone number; Telegram users a linked chat (a `telegram_links` row).
Webhooks go in on each channel's path (Twilio's signed forms; Telegram's
Updates with the secret token), one message at a time at `BENCH_RATE` per
second, the channels taking turns message by message so that whatever else
the machine does weighs on each alike. Latency is the time from sending the
webhook to messaging recording the provider's answer to the reply (the reply
row's `updated_at` once SENT): webhook, JetStream, every Postgres write, the
assistant call and the send.

    uv run python bench/channels.py
    BENCH_MESSAGES=400 BENCH_RATE=20 uv run python bench/channels.py

Uses NATS_URL / DATABASE_URL when set, else starts embedded servers.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
from _stack import Edge, run_edge
from _standins import KeepAliveClient, signed_form_post, telegram_update_post
from yourclaw_common.crypto import SecretBox
from yourclaw_common.db import Connection, migrate
from yourclaw_devkit.cli import register_dev_user
from yourclaw_devkit.telegram_sim import TelegramState

# Messages per channel (each from its own user: none nears a rate limit).
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "300"))
# Messages per second, all channels together.
RATE = float(os.environ.get("BENCH_RATE", "20"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "40"))
SID = "ACbench" + "0" * 27
TOKEN = "bench-twilio-auth-token"
WHATSAPP_NUMBER = "whatsapp:+14155238886"
SMS_NUMBER = "+15005550006"
ASSISTANT_TOKEN = "bench-gateway-token"
# Shaped like a bot's token ("<bot id>:<35 characters>"); no real bot's.
TELEGRAM_TOKEN = "7000000002:AAbench-yourclaw-telegram-token-000"
TELEGRAM_SECRET = "bench-telegram-webhook-secret"
# User i's Telegram chat is CHAT_BASE + i.
CHAT_BASE = 700_000_000


@dataclass
class Channel:
    """One channel's webhook, its users, and the latencies measured on it."""

    name: str
    path: str
    first_user: int
    sent_at: dict[str, float] = field(default_factory=dict)
    client: KeepAliveClient | None = None
    url: str = ""

    def connect(self, api: str) -> None:
        self.url = api + self.path
        self.client = KeepAliveClient(self.url)

    def request(self, user: int, i: int) -> tuple[str, bytes]:
        """The webhook request for message `i` of `user`, and the key the
        reply's `in_reply_to` names it by."""
        raise NotImplementedError

    async def enrol(
        self, conn: Connection, user: int, assistant: str, box: SecretBox
    ) -> None:
        """`user`: a subscriber whose READY assistant is at `assistant`,
        reachable on this channel."""
        await register_dev_user(
            conn, phone=_phone(user), endpoint=assistant, token=ASSISTANT_TOKEN, box=box
        )

    async def send(self, i: int) -> None:
        assert self.client is not None
        key, request = self.request(self.first_user + i, i)
        self.sent_at[key] = time.time()
        status = await self.client.send(request)
        if not 200 <= status < 300:
            raise RuntimeError(f"gateway-api answered HTTP {status} on {self.path}")


@dataclass
class TwilioChannel(Channel):
    """WhatsApp or SMS: Twilio's signed form, from the user's proven number."""

    # The form's From and To for a user's phone.
    addresses: Callable[[str], tuple[str, str]] = lambda phone: (phone, phone)

    def request(self, user: int, i: int) -> tuple[str, bytes]:
        sid = "SM" + uuid.uuid4().hex
        from_, to = self.addresses(_phone(user))
        form = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": SID,
            "From": from_,
            "To": to,
            "Body": f"bench {self.name} {i}",
            "NumMedia": "0",
        }
        return sid, signed_form_post(self.url, form, TOKEN)


@dataclass
class TelegramChannel(Channel):
    """Telegram: an Update with the webhook's secret token, from the user's
    linked chat (built by the Telegram stand-in's own pieces)."""

    chats: TelegramState = field(default_factory=lambda: TelegramState(TELEGRAM_TOKEN))

    def request(self, user: int, i: int) -> tuple[str, bytes]:
        chat = self.chats.chat(CHAT_BASE + user, first_name="Bench")
        message = self.chats.message_from(chat, text=f"bench {self.name} {i}")
        update = self.chats.new_update(message)
        key = f"tg:{chat.id}:{message['message_id']}"
        return key, telegram_update_post(self.url, update, TELEGRAM_SECRET)

    async def enrol(
        self, conn: Connection, user: int, assistant: str, box: SecretBox
    ) -> None:
        """`user`: a subscriber with no proven number, whose chat is linked (as
        `/start <code>` leaves it)."""
        registered = await register_dev_user(
            conn,
            phone=_phone(user),
            endpoint=assistant,
            token=ASSISTANT_TOKEN,
            box=box,
            link_phone=False,
        )
        await conn.execute(
            "INSERT INTO telegram_links (user_id, chat_id, linked_by) VALUES ($1, $2, 1)",
            registered.user_id,
            CHAT_BASE + user,
        )


def _phone(i: int) -> str:
    return f"+1555{i:07d}"


def _channels() -> list[Channel]:
    users = MESSAGES + WARMUP
    return [
        TwilioChannel(
            "whatsapp",
            "/api/v1/webhooks/twilio/whatsapp",
            0,
            addresses=lambda phone: (f"whatsapp:{phone}", WHATSAPP_NUMBER),
        ),
        TwilioChannel(
            "sms",
            "/api/v1/webhooks/twilio/sms",
            users,
            addresses=lambda phone: (phone, SMS_NUMBER),
        ),
        TelegramChannel("telegram", "/api/v1/webhooks/telegram", 2 * users),
    ]


async def _wait_all(pool: asyncpg.Pool, sids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = await pool.fetchval(
            "SELECT count(*) FROM messages WHERE in_reply_to = ANY($1::text[]) "
            "AND status = 'SENT'",
            sids,
        )
        if done >= len(sids):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"only {done}/{len(sids)} replies sent")


async def _latencies(pool: asyncpg.Pool, channel: Channel) -> list[float]:
    sids = list(channel.sent_at)
    await _wait_all(pool, sids, 120)
    rows = await pool.fetch(
        "SELECT in_reply_to, updated_at, channel, kind FROM messages "
        "WHERE in_reply_to = ANY($1::text[]) AND status = 'SENT'",
        sids,
    )
    wrong = [r for r in rows if r["channel"] != channel.name or r["kind"] != "reply"]
    if wrong:
        raise SystemExit(
            f"{len(wrong)} {channel.name} replies went out as "
            f"{wrong[0]['kind']} on {wrong[0]['channel']}"
        )
    return [
        (r["updated_at"].timestamp() - channel.sent_at[r["in_reply_to"]]) * 1000
        for r in rows
    ]


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _run(edge: Edge) -> None:
    api, devsim = edge.api, edge.standins
    pool = await asyncpg.create_pool(edge.database_url, min_size=1, max_size=4)
    channels = _channels()
    box = SecretBox(edge.key)
    async with pool.acquire() as conn:
        await migrate(conn)
        for channel in channels:
            for i in range(MESSAGES + WARMUP):
                await channel.enrol(conn, channel.first_user + i, devsim, box)
    for channel in channels:
        channel.connect(api)
    # Warm up each channel (statements prepared on every pooled connection).
    for channel in channels:
        await asyncio.gather(*(channel.send(MESSAGES + k) for k in range(WARMUP)))
        await _wait_all(pool, list(channel.sent_at), 60)
        channel.sent_at.clear()

    for i in range(MESSAGES):
        for channel in channels:
            await channel.send(i)
            await asyncio.sleep(1 / RATE)
    measured = {channel.name: await _latencies(pool, channel) for channel in channels}
    await pool.close()

    base = measured["whatsapp"]
    lines = []
    for name, values in measured.items():
        p50, mean = statistics.median(values), statistics.fmean(values)
        lines.append(
            f"  {name:<9} {len(values):>5} {p50:8.1f} {_pct(values, 90):8.1f} "
            f"{_pct(values, 99):8.1f} {mean:8.1f}   "
            f"{100 * (p50 / statistics.median(base) - 1):+6.1f} % "
            f"{100 * (mean / statistics.fmean(base) - 1):+6.1f} %"
        )
    table = "\n".join(lines)
    print(
        f"""
machine     {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, \
load average {" ".join(f"{x:.1f}" for x in os.getloadavg())}
load        {MESSAGES} messages per channel, {RATE:g}/s in all, channels in turn;
            webhook → the reply's send recorded (ms)
  channel       n      p50      p90      p99     mean   vs WhatsApp p50, mean
{table}
"""
    )


def main() -> None:
    run_edge(
        "yourclaw-channels-bench-",
        "bench_channels",
        _run,
        twilio=(SID, TOKEN),
        assistant_token=ASSISTANT_TOKEN,
        env=lambda edge: {
            "TWILIO_WHATSAPP_NUMBER": WHATSAPP_NUMBER,
            "TWILIO_SMS_NUMBER": SMS_NUMBER,
            "TWILIO_STATUS_CALLBACK_URL": "",
            "BENCH_STATUS_CALLBACKS": "0",
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            "TELEGRAM_API_BASE": edge.standins,
        },
    )


if __name__ == "__main__":
    main()
