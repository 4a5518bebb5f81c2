"""One function per consumed subject; thin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from yourclaw_common import outbox
from yourclaw_common.db import Connection
from yourclaw_common.errors import PermanentError
from yourclaw_common.events import (
    AssistantDeprovisionRequested,
    AssistantProvisionRequested,
    Event,
    SubscriptionActivated,
    SubscriptionCanceled,
)
from yourclaw_common.logging import get_logger
from yourclaw_common.nats import Handler, HandlerContext

from yourclaw_provisioner.service import Provisioner

log = get_logger(__name__)


def _once(
    pool: asyncpg.Pool,
    provisioner: Provisioner,
    apply: Callable[[Connection, Any], Awaitable[None]],
) -> Handler:
    """Run `apply` once per event id, in one transaction with the inbox claim."""

    async def handle(event: Event, ctx: HandlerContext) -> None:
        async with pool.acquire() as conn, conn.transaction():
            if not await outbox.claim(
                conn, consumer=ctx.consumer, event_id=event.event_id
            ):
                log.info(
                    "provisioner.inbox.duplicate",
                    consumer=ctx.consumer,
                    event_id=str(event.event_id),
                )
                return
            try:
                await apply(conn, event)
            except asyncpg.ForeignKeyViolationError as exc:
                raise PermanentError(
                    "event names a user that does not exist", code="UNKNOWN_USER"
                ) from exc
        provisioner.wake.set()

    return handle


def on_provision_requested(pool: asyncpg.Pool, provisioner: Provisioner) -> Handler:
    async def apply(conn: Connection, event: AssistantProvisionRequested) -> None:
        await provisioner.request_provision(
            conn, event.user_id, reason=event.reason, model=event.model
        )

    return _once(pool, provisioner, apply)


def on_deprovision_requested(pool: asyncpg.Pool, provisioner: Provisioner) -> Handler:
    async def apply(conn: Connection, event: AssistantDeprovisionRequested) -> None:
        await provisioner.request_deprovision(conn, event.user_id, reason="deleted")

    return _once(pool, provisioner, apply)


def on_subscription_activated(pool: asyncpg.Pool, provisioner: Provisioner) -> Handler:
    async def apply(conn: Connection, event: SubscriptionActivated) -> None:
        await provisioner.request_provision_if_absent(
            conn, event.user_id, reason="subscription_activated"
        )

    return _once(pool, provisioner, apply)


def on_subscription_canceled(pool: asyncpg.Pool, provisioner: Provisioner) -> Handler:
    async def apply(conn: Connection, event: SubscriptionCanceled) -> None:
        await provisioner.request_deprovision(
            conn, event.user_id, reason="subscription_canceled"
        )

    return _once(pool, provisioner, apply)
