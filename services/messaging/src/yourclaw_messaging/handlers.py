"""One function per consumed subject; thin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from yourclaw_common.events import (
    AssistantReady,
    AssistantRestarted,
    InboundWhatsAppStatus,
    OutboundWhatsApp,
    UsageAllowanceWarning,
    UsageCapReached,
)
from yourclaw_common.nats import Handler, HandlerContext

from yourclaw_messaging.channels.base import Incoming
from yourclaw_messaging.channels.whatsapp import WhatsAppChannel
from yourclaw_messaging.proactive import Proactive
from yourclaw_messaging.turns import Turns


def on_inbound(turns: Turns, incoming: Callable[[Any], Incoming]) -> Handler:
    """A message on a channel; `incoming` converts that channel's event."""

    async def handle(event: Any, ctx: HandlerContext) -> None:
        await turns.handle_incoming(incoming(event), deliveries=ctx.num_delivered)

    return handle


def on_inbound_whatsapp_status(whatsapp: WhatsAppChannel) -> Handler:
    async def handle(event: InboundWhatsAppStatus, ctx: HandlerContext) -> None:
        await whatsapp.handle_status(event)

    return handle


def on_outbound_whatsapp(proactive: Proactive) -> Handler:
    async def handle(event: OutboundWhatsApp, ctx: HandlerContext) -> None:
        await proactive.handle_outbound(event)

    return handle


def on_assistant_restarted(proactive: Proactive) -> Handler:
    async def handle(event: AssistantRestarted, ctx: HandlerContext) -> None:
        await proactive.handle_restarted(event)

    return handle


def on_assistant_ready(proactive: Proactive) -> Handler:
    async def handle(event: AssistantReady, ctx: HandlerContext) -> None:
        await proactive.handle_ready(event)

    return handle


def on_usage_notice(proactive: Proactive) -> Handler:
    async def handle(
        event: UsageCapReached | UsageAllowanceWarning, ctx: HandlerContext
    ) -> None:
        await proactive.handle_usage(event)

    return handle
