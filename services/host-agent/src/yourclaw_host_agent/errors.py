"""Errors of the host-agent; each becomes `HostReply(ok=False, code=...)`."""

from __future__ import annotations

from yourclaw_common.errors import PermanentError, TransientError


class InvalidRequest(PermanentError):
    """The command does not parse or names no YourClaw container."""

    code = "INVALID_REQUEST"


class InvalidSpec(PermanentError):
    """The container spec is inconsistent (name, file paths, env names)."""

    code = "INVALID_SPEC"


class ContainerNotFound(PermanentError):
    """The command needs a container that this host does not have."""

    code = "NOT_FOUND"


class NoCapacity(PermanentError):
    """This host runs as many gateways as it may."""

    code = "NO_CAPACITY"


class PortInUse(PermanentError):
    """Another container or process holds the requested host port."""

    code = "PORT_IN_USE"


class RuntimeFailure(TransientError):
    """The container runtime failed to do what was asked; retrying may help."""

    code = "RUNTIME_ERROR"


class RuntimeUnavailable(TransientError):
    """The container runtime does not answer (Docker socket down, no openclaw)."""

    code = "RUNTIME_UNAVAILABLE"
