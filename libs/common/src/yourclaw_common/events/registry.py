"""Which model parses which subject."""

from __future__ import annotations

from yourclaw_common.events.base import Event
from yourclaw_common.events.schemas.assistants import (
    AssistantDeprovisionRequested,
    AssistantFailed,
    AssistantProvisionRequested,
    AssistantReady,
    AssistantRestarted,
    HostHeartbeat,
)
from yourclaw_common.events.schemas.billing import (
    STRIPE_EVENT_SUBJECTS,
    StripeEventReceived,
    SubscriptionActivated,
    SubscriptionCanceled,
    SubscriptionPastDue,
)
from yourclaw_common.events.schemas.messaging import (
    InboundSms,
    InboundTelegram,
    InboundWhatsApp,
    InboundWhatsAppStatus,
    OutboundWhatsApp,
)
from yourclaw_common.events.schemas.usage import UsageAllowanceWarning, UsageCapReached
from yourclaw_common.events.subjects import Subject

__all__ = ["EVENT_TYPES", "model_for"]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.subject.value: cls
    for cls in (
        InboundWhatsApp,
        InboundSms,
        InboundTelegram,
        InboundWhatsAppStatus,
        OutboundWhatsApp,
        SubscriptionActivated,
        SubscriptionPastDue,
        SubscriptionCanceled,
        AssistantProvisionRequested,
        AssistantDeprovisionRequested,
        AssistantReady,
        AssistantFailed,
        AssistantRestarted,
        HostHeartbeat,
        UsageAllowanceWarning,
        UsageCapReached,
    )
}
EVENT_TYPES.update(
    {s.value: StripeEventReceived for s in STRIPE_EVENT_SUBJECTS.values()}
)


def model_for(subject: str) -> type[Event]:
    """The event class for a subject; KeyError if none is declared."""
    return EVENT_TYPES[Subject(subject).value]
