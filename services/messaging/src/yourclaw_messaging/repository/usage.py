"""Usage the limits and the /status and /usage commands read: daily counts,
shared rate windows, this month's model spend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection


async def count_in_window(
    conn: Connection, user_id: UUID, scope: str, window_start: datetime
) -> int:
    """Add one to a shared window counter and return the new count (atomic)."""
    count: int = await conn.fetchval(
        """
        INSERT INTO rate_windows (user_id, scope, window_start, count)
        VALUES ($1, $2, $3, 1)
        ON CONFLICT (user_id, scope, window_start)
            DO UPDATE SET count = rate_windows.count + 1
        RETURNING count
        """,
        user_id,
        scope,
        window_start,
    )
    return count


async def usage_today(conn: Connection, user_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT inbound_count, outbound_count, tokens_in, tokens_out FROM usage_daily "
        "WHERE user_id = $1 AND day = (now() AT TIME ZONE 'utc')::date",
        user_id,
    )


@dataclass(frozen=True)
class ModelSpend:
    """This UTC month's model spend (llm-proxy's totals) and the user's own cap."""

    calls: int
    tokens: int
    cache_read_tokens: int
    cost_usd: float
    platform_usd: float
    cap_usd: float | None


async def model_spend(conn: Connection, user_id: UUID) -> ModelSpend:
    row = await conn.fetchrow(
        """
        SELECT coalesce(m.calls, 0) AS calls,
               coalesce(m.input_tokens + m.output_tokens + m.cache_read_tokens
                        + m.cache_write_tokens, 0) AS tokens,
               coalesce(m.cache_read_tokens, 0) AS cache_read_tokens,
               coalesce(m.cost_microusd, 0) AS cost,
               coalesce(m.platform_cost_microusd, 0) AS platform,
               u.llm_monthly_cap_usd AS cap
        FROM users u
        LEFT JOIN llm_usage_monthly m ON m.user_id = u.id
            AND m.month = date_trunc('month', now() AT TIME ZONE 'utc')::date
        WHERE u.id = $1
        """,
        user_id,
    )
    if row is None:
        return ModelSpend(0, 0, 0, 0.0, 0.0, None)
    return ModelSpend(
        calls=row["calls"],
        tokens=row["tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cost_usd=row["cost"] / 1_000_000,
        platform_usd=row["platform"] / 1_000_000,
        cap_usd=None if row["cap"] is None else float(row["cap"]),
    )


async def model_called_within(conn: Connection, user_id: UUID, seconds: float) -> bool:
    """Whether llm-proxy recorded a model call of the user's in the last
    `seconds` (by the database's clock, which stamps the calls)."""
    called: bool = await conn.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM llm_calls
            WHERE user_id = $1 AND created_at >= now() - make_interval(secs => $2)
        )
        """,
        user_id,
        seconds,
    )
    return called


async def model_calls_refused(conn: Connection, user_id: UUID, model: str) -> bool:
    """Whether llm-proxy refuses this user's calls to `model` this month: it
    told them so once (usage.cap_reached), and neither their own key for the
    model's provider nor the absence of their own cap lets the call through."""
    provider = model.partition("/")[0].upper()
    refused: bool = await conn.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM llm_usage_monthly m JOIN users u ON u.id = m.user_id
            WHERE m.user_id = $1
              AND m.month = date_trunc('month', now() AT TIME ZONE 'utc')::date
              AND m.cap_notified_at IS NOT NULL
              AND (u.llm_monthly_cap_usd IS NOT NULL OR NOT EXISTS (
                  SELECT 1 FROM api_keys k
                  WHERE k.user_id = $1 AND k.provider = $2))
        )
        """,
        user_id,
        provider,
    )
    return refused
