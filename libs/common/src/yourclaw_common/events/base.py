"""The base of every event: frozen, strict, versioned, with its subject."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from yourclaw_common.events.subjects import Subject

__all__ = ["Event", "provider_event_id", "utcnow"]

# uuid5 namespace for ids derived from provider ids (MessageSid, evt_…).
_PROVIDER_NAMESPACE = uuid.UUID("8f7b3d2a-52c1-4c55-9f61-0d3c1f0e6a11")


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def provider_event_id(provider_id: str) -> uuid.UUID:
    """A stable event id for a provider's id, so provider retries dedupe."""
    return uuid.uuid5(_PROVIDER_NAMESPACE, provider_id)


class Event(BaseModel):
    """A fact one service tells the others. Only additive changes; a breaking
    change is a new class on a new subject."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: ClassVar[Subject]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=utcnow)
    version: int = 1

    def dedupe_key(self) -> str:
        """The `Nats-Msg-Id` JetStream deduplicates on."""
        return str(self.event_id)

    def publish_subject(self) -> str:
        """The subject this event is published on."""
        return self.subject.value
