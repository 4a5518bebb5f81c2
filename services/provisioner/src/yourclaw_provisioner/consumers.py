"""The provisioner's durable consumers; its replicas share them."""

from __future__ import annotations

from yourclaw_common.events import ConsumerSpec, Subject


class CONSUMERS:
    PROVISIONER_PROVISION_REQUESTED = ConsumerSpec(
        "provisioner-provision-requested", Subject.ASSISTANT_PROVISION_REQUESTED
    )
    PROVISIONER_DEPROVISION_REQUESTED = ConsumerSpec(
        "provisioner-deprovision-requested", Subject.ASSISTANT_DEPROVISION_REQUESTED
    )
    PROVISIONER_SUBSCRIPTION_ACTIVATED = ConsumerSpec(
        "provisioner-subscription-activated", Subject.SUBSCRIPTION_ACTIVATED
    )
    PROVISIONER_SUBSCRIPTION_CANCELED = ConsumerSpec(
        "provisioner-subscription-canceled", Subject.SUBSCRIPTION_CANCELED
    )
