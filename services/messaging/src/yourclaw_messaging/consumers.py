"""messaging's durable consumers; its replicas share them."""

from __future__ import annotations

from yourclaw_common.events import ConsumerSpec, Subject


class CONSUMERS:
    MESSAGING_INBOUND_WHATSAPP = ConsumerSpec(
        "messaging-inbound-whatsapp", Subject.INBOUND_WHATSAPP
    )
    MESSAGING_INBOUND_SMS = ConsumerSpec("messaging-inbound-sms", Subject.INBOUND_SMS)
    MESSAGING_INBOUND_TELEGRAM = ConsumerSpec(
        "messaging-inbound-telegram", Subject.INBOUND_TELEGRAM
    )
    MESSAGING_INBOUND_STATUS = ConsumerSpec(
        "messaging-inbound-whatsapp-status", Subject.INBOUND_WHATSAPP_STATUS
    )
    MESSAGING_ASSISTANT_READY = ConsumerSpec(
        "messaging-assistant-ready", Subject.ASSISTANT_READY
    )
    MESSAGING_ASSISTANT_RESTARTED = ConsumerSpec(
        "messaging-assistant-restarted", Subject.ASSISTANT_RESTARTED
    )
    MESSAGING_OUTBOUND_WHATSAPP = ConsumerSpec(
        "messaging-outbound-whatsapp", Subject.OUTBOUND_WHATSAPP
    )
    MESSAGING_USAGE_NOTICES = ConsumerSpec(
        "messaging-usage-notices",
        Subject.USAGE_CAP_REACHED,
        extra_subjects=(Subject.USAGE_ALLOWANCE_WARNING,),
    )
