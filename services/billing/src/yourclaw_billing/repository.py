"""Every SQL statement of the billing service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from yourclaw_common.db import Connection

__all__ = [
    "SubscriptionRow",
    "customer_for_user",
    "get_subscription",
    "insert_customer",
    "known_events",
    "lock_user",
    "past_due_since_before",
    "record_event",
    "set_status",
    "subscription_counts",
    "upsert_subscription",
    "user_exists",
    "user_for_customer",
]


@dataclass(frozen=True)
class SubscriptionRow:
    """A user's row in `subscriptions`: the subscription we follow for them."""

    user_id: UUID
    stripe_customer_id: str
    stripe_subscription_id: str
    status: str
    stripe_status: str
    current_period_end: datetime | None
    stripe_updated_at: datetime | None
    past_due_since: datetime | None
    stripe_subscription_created_at: datetime | None


async def record_event(
    conn: Connection, *, event_id: str, type_: str, created: datetime
) -> bool:
    """The inbox: record a Stripe event id; False if it was recorded before.

    A concurrent duplicate waits on the primary key until this transaction ends.
    """
    inserted = await conn.fetchval(
        "INSERT INTO stripe_events (id, type, stripe_created_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO NOTHING RETURNING 1",
        event_id,
        type_,
        created,
    )
    return inserted is not None


async def known_events(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT id FROM stripe_events WHERE id = ANY($1::text[])", list(event_ids)
    )
    return {r["id"] for r in rows}


async def lock_user(conn: Connection, user_id: UUID) -> None:
    """Serialise billing's work on one user until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('billing:' || $1, 0))",
        str(user_id),
    )


async def user_exists(conn: Connection, user_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM users WHERE id = $1", user_id))


async def get_subscription(conn: Connection, user_id: UUID) -> SubscriptionRow | None:
    row = await conn.fetchrow(
        """
        SELECT user_id, stripe_customer_id, stripe_subscription_id, status,
               stripe_status, current_period_end, stripe_updated_at, past_due_since,
               stripe_subscription_created_at
        FROM subscriptions WHERE user_id = $1
        """,
        user_id,
    )
    return SubscriptionRow(**dict(row)) if row else None


async def upsert_subscription(conn: Connection, row: SubscriptionRow) -> None:
    await conn.execute(
        """
        INSERT INTO subscriptions (
            user_id, stripe_customer_id, stripe_subscription_id, status, stripe_status,
            current_period_end, stripe_updated_at, past_due_since,
            stripe_subscription_created_at
        ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (user_id) DO UPDATE SET
            stripe_customer_id = EXCLUDED.stripe_customer_id,
            stripe_subscription_id = EXCLUDED.stripe_subscription_id,
            status = EXCLUDED.status,
            stripe_status = EXCLUDED.stripe_status,
            current_period_end = EXCLUDED.current_period_end,
            stripe_updated_at = EXCLUDED.stripe_updated_at,
            past_due_since = EXCLUDED.past_due_since,
            stripe_subscription_created_at = EXCLUDED.stripe_subscription_created_at,
            updated_at = now()
        """,
        row.user_id,
        row.stripe_customer_id,
        row.stripe_subscription_id,
        row.status,
        row.stripe_status,
        row.current_period_end,
        row.stripe_updated_at,
        row.past_due_since,
        row.stripe_subscription_created_at,
    )


async def set_status(conn: Connection, user_id: UUID, status: str) -> None:
    await conn.execute(
        "UPDATE subscriptions SET status = $2, updated_at = now() WHERE user_id = $1",
        user_id,
        status,
    )


async def past_due_since_before(
    conn: Connection, cutoff: datetime, *, limit: int = 500
) -> list[UUID]:
    """Users whose PAST_DUE started before `cutoff` (their grace has run out)."""
    rows = await conn.fetch(
        "SELECT user_id FROM subscriptions WHERE status = 'PAST_DUE' "
        "AND past_due_since < $1 ORDER BY past_due_since LIMIT $2",
        cutoff,
        limit,
    )
    return [r["user_id"] for r in rows]


async def customer_for_user(conn: Connection, user_id: UUID) -> str | None:
    value = await conn.fetchval(
        "SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1", user_id
    )
    return str(value) if value is not None else None


async def user_for_customer(conn: Connection, customer_id: str) -> UUID | None:
    value = await conn.fetchval(
        "SELECT user_id FROM billing_customers WHERE stripe_customer_id = $1",
        customer_id,
    )
    return value if isinstance(value, UUID) else None


async def insert_customer(conn: Connection, user_id: UUID, customer_id: str) -> None:
    await conn.execute(
        "INSERT INTO billing_customers (user_id, stripe_customer_id) VALUES ($1, $2)",
        user_id,
        customer_id,
    )


async def subscription_counts(conn: Connection) -> dict[str, int]:
    """How many subscriptions are in each status."""
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM subscriptions GROUP BY status"
    )
    return {row["status"]: int(row["n"]) for row in rows}
