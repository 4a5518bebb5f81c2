"""Assistant lifecycle events and host-agent messages."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from yourclaw_common.events.base import Event
from yourclaw_common.events.subjects import Subject

__all__ = [
    "AssistantDeprovisionRequested",
    "AssistantFailed",
    "AssistantProvisionRequested",
    "AssistantReady",
    "ContainerState",
    "HostHeartbeat",
    "WakeAssistant",
    "WakeReply",
]


class AssistantProvisionRequested(Event):
    """The user asked for (or re-created) their assistant."""

    subject: ClassVar[Subject] = Subject.ASSISTANT_PROVISION_REQUESTED

    user_id: UUID
    reason: Literal["created", "recreated", "model_changed", "api_keys_changed"] = (
        "created"
    )
    # The model the user chose ("provider/model"); None keeps the current one.
    model: str | None = None


class AssistantDeprovisionRequested(Event):
    """The user deleted their assistant."""

    subject: ClassVar[Subject] = Subject.ASSISTANT_DEPROVISION_REQUESTED

    user_id: UUID


class AssistantReady(Event):
    """The assistant's gateway passed its health check."""

    subject: ClassVar[Subject] = Subject.ASSISTANT_READY

    user_id: UUID
    assistant_id: UUID


class AssistantRestarted(Event):
    """The assistant's gateway was killed (out of memory) and its host started
    it again: a message the user sent just then may have gone unanswered.

    One per kill: the event id derives from the container and the kill's time,
    so every provisioner replica that sees it publishes the same event.
    """

    subject: ClassVar[Subject] = Subject.ASSISTANT_RESTARTED

    user_id: UUID
    reason: Literal["out_of_memory"] = "out_of_memory"
    # When the host noticed the kill (Unix seconds).
    killed_at: int


class AssistantFailed(Event):
    """Provisioning gave up; `reason` is shown to the user."""

    subject: ClassVar[Subject] = Subject.ASSISTANT_FAILED

    user_id: UUID
    assistant_id: UUID
    reason: str


class ContainerState(BaseModel):
    """One container a host-agent actually runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    state: str
    port: int | None = None
    # When the Engine last killed it for memory (Unix seconds), if it did since
    # the agent started. Needs provisioners that know the field (deploy them
    # first: they refuse unknown fields).
    oom_killed_at: int | None = None
    # Idle and put to sleep by its host-agent: "frozen" (paused, no CPU,
    # instant resume) or "stopped" (memory freed, workspace kept); None: awake.
    # The provisioner shows it as SUSPENDED. Needs provisioners that know the
    # field (deploy them first).
    sleeping: Literal["frozen", "stopped"] | None = None
    # When its next scheduled automation is due (Unix seconds), if any: the
    # host-agent wakes it ahead of that.
    next_wake_at: int | None = None


class HostHeartbeat(Event):
    """A host-agent's periodic announcement (core NATS, not stored)."""

    subject: ClassVar[Subject] = Subject.HOST_HEARTBEAT

    host_id: str
    address: str
    runtime: Literal["process", "docker"]
    capacity: int
    used: int
    containers: tuple[ContainerState, ...] = ()
    # How many of `containers` are awake and how many sleep (`sleeping`).
    # Needs provisioners that know the fields (deploy them first).
    awake: int = 0
    asleep: int = 0
    # The host's X25519 public key (base64url), to which the provisioner seals
    # the secrets of the specs it sends there. Only this host's NATS user may
    # publish its heartbeat subject, so the key comes from the host. None: an
    # agent older than sealing, which gets no new placements. Needs
    # provisioners that know the field (deploy them first).
    public_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{43}=$")

    def publish_subject(self) -> str:
        return f"{self.subject.value}.{self.host_id}"


class WakeAssistant(BaseModel):
    """Request on `assistant.wake.request` (core NATS, served by the
    provisioner): wake the user's sleeping assistant and answer once its
    gateway is healthy. Idempotent: waking an awake assistant is a no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    user_id: UUID


class WakeReply(BaseModel):
    """The provisioner's answer to `WakeAssistant`.

    `code` when not ok: NO_ASSISTANT (none placed), HOST_UNREACHABLE,
    HOST_TIMEOUT, RUNTIME_UNAVAILABLE, WAKE_FAILED (the host could not wake
    it), INVALID_REQUEST, INTERNAL_ERROR.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    code: str | None = None
    error: str | None = None
    # From the request to a healthy gateway, as the provisioner measured it.
    seconds: float | None = None
