"""Every NATS subject YourClaw uses, spelled once."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["HostVerb", "Subject", "host_command"]


class Subject(StrEnum):
    """Event subjects: `<domain>.<event>` in snake_case, one token after the domain."""

    INBOUND_WHATSAPP = "inbound.whatsapp"
    INBOUND_WHATSAPP_STATUS = "inbound.whatsapp_status"
    INBOUND_SMS = "inbound.sms"
    INBOUND_TELEGRAM = "inbound.telegram"

    BILLING_CHECKOUT_COMPLETED = "billing.checkout_completed"
    BILLING_CUSTOMER_SUBSCRIPTION_CREATED = "billing.customer_subscription_created"
    BILLING_CUSTOMER_SUBSCRIPTION_UPDATED = "billing.customer_subscription_updated"
    BILLING_CUSTOMER_SUBSCRIPTION_DELETED = "billing.customer_subscription_deleted"
    BILLING_INVOICE_PAID = "billing.invoice_paid"
    BILLING_INVOICE_PAYMENT_SUCCEEDED = "billing.invoice_payment_succeeded"
    BILLING_INVOICE_PAYMENT_FAILED = "billing.invoice_payment_failed"

    SUBSCRIPTION_ACTIVATED = "subscription.activated"
    SUBSCRIPTION_PAST_DUE = "subscription.past_due"
    SUBSCRIPTION_CANCELED = "subscription.canceled"

    ASSISTANT_PROVISION_REQUESTED = "assistant.provision_requested"
    ASSISTANT_DEPROVISION_REQUESTED = "assistant.deprovision_requested"
    ASSISTANT_READY = "assistant.ready"
    ASSISTANT_FAILED = "assistant.failed"
    ASSISTANT_RESTARTED = "assistant.restarted"

    OUTBOUND_WHATSAPP = "outbound.whatsapp"

    USAGE_CAP_REACHED = "usage.cap_reached"
    USAGE_ALLOWANCE_WARNING = "usage.allowance_warning"

    # Core NATS (not stored in a stream): `heartbeat.<host id>`, so a host's
    # NATS user may publish its own heartbeat and no other's.
    HOST_HEARTBEAT = "heartbeat"
    # Core NATS request/reply served by billing. Two tokens after `billing`, so the
    # BILLING stream (`billing.*`) never captures them.
    BILLING_CHECKOUT_CREATE = "billing.checkout.create"
    BILLING_PORTAL_CREATE = "billing.portal.create"
    # Core NATS request/reply served by the provisioner (wake a sleeping
    # assistant); two tokens after `assistant`, so the ASSISTANTS stream
    # (`assistant.*`) never captures it.
    ASSISTANT_WAKE = "assistant.wake.request"


class HostVerb(StrEnum):
    """Lifecycle commands a host-agent serves on `host.<host_id>.<verb>`."""

    CREATE = "create"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    REMOVE = "remove"
    INSPECT = "inspect"
    LIST = "list"
    LOGS = "logs"
    HEALTH = "health"
    # Unpause or start a sleeping container and wait for /healthz
    # (`NamedContainer.wait_seconds`); idempotent.
    WAKE = "wake"
    SUSPEND = "suspend"


def host_command(host_id: str, verb: HostVerb | str) -> str:
    """The request subject of one host's command."""
    return f"host.{host_id}.{HostVerb(verb).value}"
