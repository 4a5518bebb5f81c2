"""The monthly allowance and the per-assistant rate limits.

The allowance caps what a user spends on platform keys in a UTC calendar
month (LLM_MONTHLY_ALLOWANCE_USD); calls paid with the user's own key are
metered but not capped. Rate limits are per assistant and per replica: calls
a minute (a sliding window) and calls in flight at once.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from uuid import UUID

from yourclaw_common.db import Connection

from yourclaw_llm_proxy.metering import month_of

__all__ = ["RateLimiter", "platform_spend"]


async def platform_spend(
    conn: Connection, user_id: UUID, *, at: datetime | None = None
) -> int:
    """Micro-dollars the user spent on platform keys this month."""
    month = month_of(at or datetime.now(UTC))
    spent = await conn.fetchval(
        "SELECT platform_cost_microusd FROM llm_usage_monthly "
        "WHERE user_id = $1 AND month = $2",
        user_id,
        month,
    )
    return int(spent or 0)


class RateLimiter:
    """Calls a minute and calls in flight, per assistant."""

    def __init__(self, *, per_minute: int, concurrent: int):
        self.per_minute = per_minute
        self.concurrent = concurrent
        self._recent: dict[UUID, deque[float]] = {}
        self._in_flight: dict[UUID, int] = {}

    def retry_after(self, key: UUID, *, now: float | None = None) -> float:
        """Seconds until another call is allowed; 0 when it is (and counted)."""
        now = time.monotonic() if now is None else now
        window = self._recent.setdefault(key, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.per_minute:
            return max(0.001, window[0] + 60 - now)
        window.append(now)
        return 0.0

    def acquire(self, key: UUID) -> bool:
        """Take an in-flight slot; False when all are taken."""
        count = self._in_flight.get(key, 0)
        if count >= self.concurrent:
            return False
        self._in_flight[key] = count + 1
        return True

    def release(self, key: UUID) -> None:
        count = self._in_flight.get(key, 0) - 1
        if count > 0:
            self._in_flight[key] = count
        else:
            self._in_flight.pop(key, None)
            window = self._recent.get(key)
            if window is not None and not window:
                del self._recent[key]
