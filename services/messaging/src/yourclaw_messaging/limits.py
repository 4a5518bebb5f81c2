"""Per-user message limits: the windows an inbound message counts in (with
their notices), and the separate windows of messages we send first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from yourclaw_common.db import Connection
from yourclaw_common.logging import get_logger

from yourclaw_messaging import metrics, replies, repository
from yourclaw_messaging.repository.inbound import LimitCheck

log = get_logger(__name__)


@dataclass(frozen=True)
class Limits:
    per_minute: int
    per_day: int
    tokens_per_day: int

    @property
    def any(self) -> bool:
        return bool(self.per_minute or self.per_day or self.tokens_per_day)

    def inbound_check(self) -> LimitCheck:
        """The windows a message arriving now counts in, with their notices."""
        now = datetime.now(UTC)
        minute = now.replace(second=0, microsecond=0)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return LimitCheck(
            per_minute=self.per_minute,
            per_day=self.per_day,
            tokens_per_day=self.tokens_per_day,
            minute=minute,
            day=day,
            minute_notice=replies.RATE_LIMITED.format(
                limit=replies.counted(self.per_minute, "message"),
                period="minute",
                when=f"at {minute + timedelta(minutes=1):%H:%M} UTC",
            ),
            day_notice=replies.RATE_LIMITED.format(
                limit=replies.counted(self.per_day, "message"),
                period="day",
                when=_tomorrow(day),
            ),
            tokens_notice=replies.TOKENS_EXHAUSTED.format(
                limit=replies.counted(self.tokens_per_day, "token"),
                when=_tomorrow(day),
            ),
        )

    async def proactive_limited(self, conn: Connection, user_id: UUID) -> bool:
        """Proactive messages have their own windows, with the users' limits."""
        now = datetime.now(UTC)
        checks = (
            ("notify_minute", now.replace(second=0, microsecond=0), "minute"),
            (
                "notify_day",
                now.replace(hour=0, minute=0, second=0, microsecond=0),
                "day",
            ),
        )
        for scope, start, limit_label in checks:
            limit = self.per_minute if limit_label == "minute" else self.per_day
            if not limit:
                continue
            if (
                await repository.usage.count_in_window(conn, user_id, scope, start)
                > limit
            ):
                metrics.RATE_LIMITED.labels(limit_label).inc()
                log.warning(
                    "messaging.outbound.rate_limited",
                    user_id=str(user_id),
                    limit=limit_label,
                )
                return True
        return False


def _tomorrow(day: datetime) -> str:
    return f"after midnight UTC ({(day + timedelta(days=1)):%Y-%m-%d} 00:00 UTC)"
