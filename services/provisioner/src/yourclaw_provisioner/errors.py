"""Errors of the provisioner; each attempt that raises one is retried with backoff."""

from __future__ import annotations

from yourclaw_common.errors import TransientError


class ProvisioningError(TransientError):
    """One provisioning attempt failed; `reason` is what the user is shown."""

    code = "PROVISIONING_FAILED"
    reason = "We could not start your assistant. Please try again in a few minutes."


class NoHostAvailable(ProvisioningError):
    """Live, active hosts answer, and none has room."""

    code = "NO_HOST_AVAILABLE"
    reason = (
        "All our servers are full right now. Please try again in a few minutes; "
        "we have been alerted."
    )


class NoLiveHost(ProvisioningError):
    """No host is heart-beating: they are unreachable, not full."""

    code = "NO_LIVE_HOST"
    reason = (
        "We cannot reach our servers right now. Please try again in a few "
        "minutes; we have been alerted."
    )


class HostCommandFailed(ProvisioningError):
    """A host-agent refused a command, or did not answer in time."""

    code = "HOST_COMMAND_FAILED"


class EngineUnavailable(HostCommandFailed):
    """The host-agent answered, but its container engine did not."""

    code = "RUNTIME_UNAVAILABLE"
    reason = (
        "The server your assistant runs on cannot start it right now. We try "
        "again on our own as soon as it can; nothing of yours is lost."
    )


# Failures no person needs to fix: the host or its engine did not answer. An
# assistant left in ERROR by one is provisioned again once a host heart-beats.
HEALABLE_CODES = frozenset(
    {"RUNTIME_UNAVAILABLE", "NO_LIVE_HOST", "HOST_UNREACHABLE", "HOST_TIMEOUT"}
)


class GatewayUnhealthy(ProvisioningError):
    """The gateway started but its /healthz never answered."""

    code = "GATEWAY_UNHEALTHY"
    reason = "Your assistant did not start correctly. Please try again."
