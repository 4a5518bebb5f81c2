"""One function per consumed subject; thin."""

from __future__ import annotations

from yourclaw_common.events import InboundWhatsApp
from yourclaw_common.nats import Handler, HandlerContext

from yourclaw_messaging.service import Conversation


def on_inbound_whatsapp(conversation: Conversation) -> Handler:
    async def handle(event: InboundWhatsApp, ctx: HandlerContext) -> None:
        await conversation.handle_inbound(event)

    return handle
