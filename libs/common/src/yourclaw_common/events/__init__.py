"""Subjects, streams and event models, declared once; each service declares its
own durable consumers with `ConsumerSpec`."""

from yourclaw_common.events.base import Event, provider_event_id, utcnow
from yourclaw_common.events.registry import EVENT_TYPES, model_for
from yourclaw_common.events.schemas.assistants import (
    AssistantDeprovisionRequested,
    AssistantFailed,
    AssistantProvisionRequested,
    AssistantReady,
    AssistantRestarted,
    ContainerState,
    HostHeartbeat,
)
from yourclaw_common.events.schemas.billing import (
    STRIPE_EVENT_SUBJECTS,
    BillingReply,
    CreateCheckout,
    CreatePortal,
    StripeEventReceived,
    SubscriptionActivated,
    SubscriptionCanceled,
    SubscriptionPastDue,
)
from yourclaw_common.events.schemas.host import (
    GATEWAY_CONFIG_PORT,
    ContainerInfo,
    ContainerSpec,
    CreateContainer,
    HostReply,
    ListContainers,
    NamedContainer,
    SealedSecrets,
    TailLogs,
    container_name,
)
from yourclaw_common.events.schemas.messaging import (
    InboundMedia,
    InboundSms,
    InboundTelegram,
    InboundWhatsApp,
    InboundWhatsAppStatus,
    OutboundWhatsApp,
)
from yourclaw_common.events.schemas.usage import UsageAllowanceWarning, UsageCapReached
from yourclaw_common.events.subjects import HostVerb, Subject, host_command
from yourclaw_common.events.topology import (
    STREAMS,
    ConsumerSpec,
    Stream,
    ensure_topology,
    stream_for,
)

__all__ = [
    "EVENT_TYPES",
    "GATEWAY_CONFIG_PORT",
    "STREAMS",
    "STRIPE_EVENT_SUBJECTS",
    "AssistantDeprovisionRequested",
    "AssistantFailed",
    "AssistantProvisionRequested",
    "AssistantReady",
    "AssistantRestarted",
    "BillingReply",
    "ConsumerSpec",
    "ContainerInfo",
    "ContainerSpec",
    "ContainerState",
    "CreateCheckout",
    "CreateContainer",
    "CreatePortal",
    "Event",
    "HostHeartbeat",
    "HostReply",
    "HostVerb",
    "InboundMedia",
    "InboundSms",
    "InboundTelegram",
    "InboundWhatsApp",
    "InboundWhatsAppStatus",
    "ListContainers",
    "NamedContainer",
    "OutboundWhatsApp",
    "SealedSecrets",
    "Stream",
    "StripeEventReceived",
    "Subject",
    "SubscriptionActivated",
    "SubscriptionCanceled",
    "SubscriptionPastDue",
    "TailLogs",
    "UsageAllowanceWarning",
    "UsageCapReached",
    "container_name",
    "ensure_topology",
    "host_command",
    "model_for",
    "provider_event_id",
    "stream_for",
    "utcnow",
]
