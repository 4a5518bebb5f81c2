"""What llm-proxy tells the rest of the platform about a user's model spend."""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar
from uuid import UUID

from yourclaw_common.events.base import Event
from yourclaw_common.events.subjects import Subject

__all__ = ["UsageAllowanceWarning", "UsageCapReached"]


class UsageCapReached(Event):
    """The user spent this month's allowance; llm-proxy refuses their model calls
    until `resets_at`. Emitted once per user and month."""

    subject: ClassVar[Subject] = Subject.USAGE_CAP_REACHED

    user_id: UUID
    assistant_id: UUID | None = None
    # The first day of the (UTC) month the cap applies to.
    month: date
    spent_usd: float
    allowance_usd: float
    resets_at: datetime


class UsageAllowanceWarning(Event):
    """The user spent 80 % of this month's allowance (or of their own cap).
    Emitted once per user and month."""

    subject: ClassVar[Subject] = Subject.USAGE_ALLOWANCE_WARNING

    user_id: UUID
    month: date
    spent_usd: float
    allowance_usd: float
    resets_at: datetime
