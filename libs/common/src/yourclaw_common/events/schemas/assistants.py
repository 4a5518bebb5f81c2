"""Assistant lifecycle events and host-agent messages."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from yourclaw_common.events.base import Event
from yourclaw_common.events.subjects import Subject

__all__ = [
    "AssistantDeprovisionRequested",
    "AssistantFailed",
    "AssistantProvisionRequested",
    "AssistantReady",
    "ContainerState",
    "HostHeartbeat",
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


class HostHeartbeat(Event):
    """A host-agent's periodic announcement (core NATS, not stored)."""

    subject: ClassVar[Subject] = Subject.HOST_HEARTBEAT

    host_id: str
    address: str
    runtime: Literal["process", "docker"]
    capacity: int
    used: int
    containers: tuple[ContainerState, ...] = ()

    def publish_subject(self) -> str:
        return f"{self.subject.value}.{self.host_id}"
