"""Inbox (idempotent handlers) and outbox (publish after commit)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import asyncpg
from nats.js import JetStreamContext

from yourclaw_common.db import Connection
from yourclaw_common.events import Event
from yourclaw_common.logging import get_correlation_id, get_logger

__all__ = ["add", "claim", "relay_forever", "relay_once"]

log = get_logger(__name__)

_MSG_ID_HEADER = "Nats-Msg-Id"
_CORRELATION_HEADER = "Yourclaw-Correlation-Id"


async def claim(conn: Connection, *, consumer: str, event_id: uuid.UUID) -> bool:
    """Record that `consumer` handles `event_id`; False if it already did.

    Call inside the transaction of the handler's write: a crash rolls both back.
    """
    row = await conn.fetchval(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        consumer,
        event_id,
    )
    return row is not None


async def add(conn: Connection, event: Event, *, service: str) -> None:
    """Queue an event for publishing once the caller's transaction commits."""
    headers = {
        _MSG_ID_HEADER: event.dedupe_key(),
        _CORRELATION_HEADER: get_correlation_id() or str(event.event_id),
    }
    await conn.execute(
        "INSERT INTO outbox (service, event_id, subject, payload, headers) "
        "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (event_id) DO NOTHING",
        service,
        event.event_id,
        event.publish_subject(),
        # A dict: the pool's jsonb codec serialises it (a str would be stored as
        # a JSON string, and relayed as one).
        event.model_dump(mode="json"),
        headers,
    )


async def relay_once(
    pool: asyncpg.Pool, js: JetStreamContext, *, service: str, limit: int = 100
) -> int:
    """Publish up to `limit` pending rows of `service`; returns how many."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, subject, payload::text AS payload, headers FROM outbox "
            "WHERE service = $1 AND published_at IS NULL ORDER BY id "
            "LIMIT $2 FOR UPDATE SKIP LOCKED",
            service,
            limit,
        )
        for row in rows:
            # Nats-Msg-Id makes a re-relay after a crash here harmless.
            await js.publish(
                row["subject"], row["payload"].encode(), headers=row["headers"]
            )
        if rows:
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
    return len(rows)


async def relay_forever(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    *,
    service: str,
    stop: asyncio.Event,
    interval: float = 0.2,
    max_backoff: float = 4.0,
    warn_every: float = 60.0,
) -> None:
    """Relay the outbox until `stop` is set.

    While PostgreSQL or NATS is down, tries again after a doubling delay (up to
    `max_backoff`, jittered) and warns on the first failure, then at most once
    every `warn_every` seconds; says so once when the relay works again. The
    cap is short so events flow again within seconds of the dependency's
    return, not after a long outage's last, longest wait.
    """
    failures = 0
    warned_at = 0.0
    while not stop.is_set():
        try:
            sent = await relay_once(pool, js, service=service)
        except Exception as exc:
            failures += 1
            now = time.monotonic()
            if failures == 1 or now - warned_at >= warn_every:
                warned_at = now
                log.warning(
                    "outbox.relay_failed",
                    error=f"{type(exc).__name__}: {exc}"[:300],
                    failures=failures,
                )
            delay = min(max_backoff, interval * 2**failures)
            delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
        else:
            if failures:
                log.info("outbox.relay_recovered", failures=failures)
                failures = 0
            if sent:
                continue
            delay = interval
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
