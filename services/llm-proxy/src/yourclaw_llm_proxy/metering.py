"""Usage out of the providers' answers, and one row per call with its price.

Each provider reports usage its own way; `Usage` holds it in one form:
- OpenAI (and Google's OpenAI-compatible API): `usage.prompt_tokens` (cached
  ones included, `prompt_tokens_details.cached_tokens`), `completion_tokens`;
  streamed, in the last chunk when `stream_options.include_usage` is set.
  Transcriptions: `usage` of type `tokens` or `duration` (seconds). Speech
  (`/audio/speech`) answers audio and no usage: tts-1 bills the characters
  of the request's `input` (`speech_usage`).
- Anthropic: `usage.input_tokens` (cache excluded), `output_tokens`,
  `cache_read_input_tokens`, `cache_creation_input_tokens`; streamed, in
  `message_start` and (output, cumulative) in `message_delta`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from yourclaw_common import outbox
from yourclaw_common.db import Connection
from yourclaw_common.events import UsageAllowanceWarning, UsageCapReached

from yourclaw_llm_proxy import metrics
from yourclaw_llm_proxy.prices import PRICE_VERSION, Price, Provider, Usage

__all__ = [
    "WARN_SHARE",
    "Call",
    "Spend",
    "StreamUsage",
    "month_of",
    "next_month",
    "notify_cap_reached",
    "record",
    "speech_usage",
    "spend_of",
    "usage_from_body",
]

# The share of the allowance (or the user's cap) at which the user hears once.
WARN_SHARE = 0.8


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _openai_usage(usage: dict[str, Any]) -> Usage:
    if usage.get("type") == "duration":
        seconds = usage.get("seconds")
        return Usage(
            audio_seconds=float(seconds) if isinstance(seconds, int | float) else 0.0
        )
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _int(usage.get("prompt_tokens")) or _int(usage.get("input_tokens"))
    output = _int(usage.get("completion_tokens")) or _int(usage.get("output_tokens"))
    return Usage(input=max(0, prompt - cached), output=output, cache_read=cached)


def _anthropic_usage(usage: dict[str, Any], base: Usage | None = None) -> Usage:
    base = base or Usage()
    return Usage(
        input=_int(usage.get("input_tokens")) or base.input,
        output=_int(usage.get("output_tokens")) or base.output,
        cache_read=_int(usage.get("cache_read_input_tokens")) or base.cache_read,
        cache_write=_int(usage.get("cache_creation_input_tokens")) or base.cache_write,
    )


def usage_from_body(provider: Provider, body: bytes) -> Usage | None:
    """The usage of a whole (not streamed) JSON answer; None if it has none."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    if provider is Provider.ANTHROPIC:
        return _anthropic_usage(usage)
    return _openai_usage(usage)


def speech_usage(payload: dict[str, Any]) -> Usage:
    """What a speech call bills: the characters of the text it spoke."""
    text = payload.get("input")
    return Usage(characters=len(text) if isinstance(text, str) else 0)


class StreamUsage:
    """Reads usage out of a server-sent event stream as its chunks pass by.

    Only `data:` lines that mention "usage" are parsed, so the text deltas of a
    long answer cost a byte search each, not a JSON parse.
    """

    def __init__(self, provider: Provider):
        self.provider = provider
        self.usage: Usage | None = None
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > 1_000_000:  # no newline in a megabyte: not SSE
            self._tail = b""
        for line in lines:
            if line.startswith(b"data:") and b'"usage"' in line:
                self._line(line[5:].strip())

    def _line(self, payload: bytes) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        if self.provider is not Provider.ANTHROPIC:
            usage = event.get("usage")
            if isinstance(usage, dict):
                self.usage = _openai_usage(usage)
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self.usage = _anthropic_usage(usage)
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            usage = event["usage"]
            base = self.usage or Usage()
            # Output is cumulative; newer APIs repeat the input counts too.
            self.usage = replace(
                _anthropic_usage(usage, base),
                output=_int(usage.get("output_tokens")) or base.output,
            )


def month_of(at: datetime) -> date:
    """The first day of `at`'s UTC calendar month."""
    return at.astimezone(UTC).date().replace(day=1)


def next_month(month: date) -> datetime:
    """Midnight UTC of the first day after `month`: when its allowance resets."""
    if month.month == 12:
        return datetime(month.year + 1, 1, 1, tzinfo=UTC)
    return datetime(month.year, month.month + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Spend:
    """A user's spend this month (micro-dollars) and their own cap, if set.

    Two limits: the plan's allowance caps what platform keys paid; the user's
    cap, when set, caps everything, their own keys' calls included.
    """

    platform: int = 0
    total: int = 0
    cap: int | None = None

    def reached(
        self, *, byok: bool, allowance: int, share: float = 1.0
    ) -> tuple[int, int] | None:
        """(spent, limit) of the first limit a call of this kind has reached
        `share` of; None when it may go ahead."""
        if self.cap is not None and self.total >= self.cap * share:
            return self.total, self.cap
        if not byok and self.platform >= allowance * share:
            return self.platform, allowance
        return None


async def spend_of(
    conn: Connection, user_id: UUID, *, at: datetime | None = None
) -> Spend:
    """The user's spend this month and their own cap."""
    row = await conn.fetchrow(
        """
        SELECT m.platform_cost_microusd, m.cost_microusd, u.llm_monthly_cap_usd
        FROM users u
        LEFT JOIN llm_usage_monthly m ON m.user_id = u.id AND m.month = $2
        WHERE u.id = $1
        """,
        user_id,
        month_of(at or datetime.now(UTC)),
    )
    if row is None:
        return Spend()
    cap = row["llm_monthly_cap_usd"]
    return Spend(
        platform=int(row["platform_cost_microusd"] or 0),
        total=int(row["cost_microusd"] or 0),
        cap=None if cap is None else round(cap * 1_000_000),
    )


@dataclass(frozen=True)
class Call:
    """One provider call to meter."""

    user_id: UUID
    assistant_id: UUID
    provider: Provider
    model: str
    endpoint: str
    byok: bool
    status: int
    stream: bool
    usage: Usage
    price: Price


async def record(
    conn: Connection,
    call: Call,
    *,
    allowance_microusd: int,
    service: str,
    at: datetime | None = None,
) -> int:
    """Store the call and add it to the month's totals; when platform spend
    reaches the allowance for the first time this month, queue one
    `usage.cap_reached`. Returns the call's cost (micro-dollars). The caller
    owns the transaction."""
    at = at or datetime.now(UTC)
    cost = call.price.cost_microusd(call.usage)
    u = call.usage
    key_source = "BYOK" if call.byok else "PLATFORM"
    await conn.execute(
        """
        INSERT INTO llm_calls (user_id, assistant_id, provider, model, endpoint,
            key_source, status, stream, input_tokens, output_tokens,
            cache_read_tokens, cache_write_tokens, cost_microusd, price_version,
            created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        """,
        call.user_id,
        call.assistant_id,
        call.provider.value,
        call.model,
        call.endpoint,
        key_source,
        call.status,
        call.stream,
        u.input,
        u.output,
        u.cache_read,
        u.cache_write,
        cost,
        PRICE_VERSION,
        at,
    )
    month = month_of(at)
    totals = await conn.fetchrow(
        """
        INSERT INTO llm_usage_monthly AS m (user_id, month, calls, input_tokens,
            output_tokens, cache_read_tokens, cache_write_tokens, cost_microusd,
            platform_cost_microusd)
        VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (user_id, month) DO UPDATE SET
            calls = m.calls + 1,
            input_tokens = m.input_tokens + EXCLUDED.input_tokens,
            output_tokens = m.output_tokens + EXCLUDED.output_tokens,
            cache_read_tokens = m.cache_read_tokens + EXCLUDED.cache_read_tokens,
            cache_write_tokens = m.cache_write_tokens + EXCLUDED.cache_write_tokens,
            cost_microusd = m.cost_microusd + EXCLUDED.cost_microusd,
            platform_cost_microusd = m.platform_cost_microusd
                + EXCLUDED.platform_cost_microusd,
            updated_at = now()
        RETURNING platform_cost_microusd, cost_microusd,
            (SELECT llm_monthly_cap_usd FROM users WHERE id = $1) AS cap
        """,
        call.user_id,
        month,
        u.input,
        u.output,
        u.cache_read,
        u.cache_write,
        cost,
        0 if call.byok else cost,
    )
    for kind, tokens in u.kinds.items():
        if tokens:
            metrics.TOKENS.labels(call.model, kind).inc(tokens)
    metrics.COST.labels(call.model, key_source).inc(cost / 1_000_000)
    assert totals is not None  # an upsert returns its row
    cap = totals["cap"]
    spend = Spend(
        platform=totals["platform_cost_microusd"],
        total=totals["cost_microusd"],
        cap=None if cap is None else round(cap * 1_000_000),
    )
    if reached := spend.reached(byok=call.byok, allowance=allowance_microusd):
        await notify_cap_reached(
            conn,
            call.user_id,
            month,
            reached,
            assistant_id=call.assistant_id,
            service=service,
        )
    elif near := spend.reached(
        byok=call.byok, allowance=allowance_microusd, share=WARN_SHARE
    ):
        await _notify_once(
            conn,
            "warned_at",
            UsageAllowanceWarning(
                user_id=call.user_id,
                month=month,
                spent_usd=near[0] / 1_000_000,
                allowance_usd=near[1] / 1_000_000,
                resets_at=next_month(month),
            ),
            service=service,
        )
    return cost


async def notify_cap_reached(
    conn: Connection,
    user_id: UUID,
    month: date,
    reached: tuple[int, int],
    *,
    assistant_id: UUID | None,
    service: str,
) -> bool:
    """Queue `usage.cap_reached` unless it was already this month; `reached` is
    what `Spend.reached` answered (spent, the allowance or cap reached)."""
    spent_microusd, allowance_microusd = reached
    return await _notify_once(
        conn,
        "cap_notified_at",
        UsageCapReached(
            user_id=user_id,
            assistant_id=assistant_id,
            month=month,
            spent_usd=spent_microusd / 1_000_000,
            allowance_usd=allowance_microusd / 1_000_000,
            resets_at=next_month(month),
        ),
        service=service,
    )


async def _notify_once(
    conn: Connection,
    column: Literal["cap_notified_at", "warned_at"],
    event: UsageCapReached | UsageAllowanceWarning,
    *,
    service: str,
) -> bool:
    """Queue `event` unless the month's `column` says it was already."""
    claimed = await conn.fetchval(
        f"""
        INSERT INTO llm_usage_monthly AS m (user_id, month, {column})
        VALUES ($1, $2, now())
        ON CONFLICT (user_id, month) DO UPDATE SET {column} = now()
            WHERE m.{column} IS NULL
        RETURNING 1
        """,  # noqa: S608 (the column is one of two literals)
        event.user_id,
        event.month,
    )
    if not claimed:
        return False
    await outbox.add(conn, event, service=service)
    return True
