"""What each consumed subject's events are handed to; thin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from yourclaw_common.nats import Handler, HandlerContext

from yourclaw_messaging.channels.base import Incoming
from yourclaw_messaging.turns import Turns

E = TypeVar("E")


def on_inbound(turns: Turns, incoming: Callable[[Any], Incoming]) -> Handler:
    """A message on a channel; `incoming` converts that channel's event."""

    async def handle(event: Any, ctx: HandlerContext) -> None:
        await turns.handle_incoming(incoming(event), deliveries=ctx.num_delivered)

    return handle


def on_event(method: Callable[[E], Awaitable[None]]) -> Handler:
    """A subject whose events go as they are to one method (a WhatsApp status to
    `WhatsAppChannel.handle_status`, a notice to one of `Proactive`'s)."""

    async def handle(event: E, ctx: HandlerContext) -> None:
        await method(event)

    return handle
