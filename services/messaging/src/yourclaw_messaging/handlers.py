"""One function per consumed subject; thin."""

from __future__ import annotations

from yourclaw_common.events import (
    AssistantReady,
    AssistantRestarted,
    InboundWhatsApp,
    InboundWhatsAppStatus,
    OutboundWhatsApp,
    UsageAllowanceWarning,
    UsageCapReached,
)
from yourclaw_common.nats import Handler, HandlerContext

from yourclaw_messaging.channels.whatsapp import WhatsAppChannel
from yourclaw_messaging.proactive import Proactive
from yourclaw_messaging.turns import Turns


def on_inbound_whatsapp(turns: Turns) -> Handler:
    async def handle(event: InboundWhatsApp, ctx: HandlerContext) -> None:
        await turns.handle_inbound(event, deliveries=ctx.num_delivered)

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
