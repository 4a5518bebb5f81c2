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

from yourclaw_messaging.service import Conversation


def on_inbound_whatsapp(conversation: Conversation) -> Handler:
    async def handle(event: InboundWhatsApp, ctx: HandlerContext) -> None:
        await conversation.handle_inbound(event, deliveries=ctx.num_delivered)

    return handle


def on_inbound_whatsapp_status(conversation: Conversation) -> Handler:
    async def handle(event: InboundWhatsAppStatus, ctx: HandlerContext) -> None:
        await conversation.handle_status(event)

    return handle


def on_outbound_whatsapp(conversation: Conversation) -> Handler:
    async def handle(event: OutboundWhatsApp, ctx: HandlerContext) -> None:
        await conversation.handle_outbound(event)

    return handle


def on_assistant_restarted(conversation: Conversation) -> Handler:
    async def handle(event: AssistantRestarted, ctx: HandlerContext) -> None:
        await conversation.handle_restarted(event)

    return handle


def on_assistant_ready(conversation: Conversation) -> Handler:
    async def handle(event: AssistantReady, ctx: HandlerContext) -> None:
        await conversation.handle_ready(event)

    return handle


def on_usage_notice(conversation: Conversation) -> Handler:
    async def handle(
        event: UsageCapReached | UsageAllowanceWarning, ctx: HandlerContext
    ) -> None:
        await conversation.handle_usage(event)

    return handle
