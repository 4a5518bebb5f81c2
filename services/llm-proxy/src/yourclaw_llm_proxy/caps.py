"""The per-assistant rate limits: per replica, calls a minute (a sliding
window) and calls in flight at once. The monthly allowance and the user's own
cap are in `metering` (`Spend`), next to the totals they read.
"""

from __future__ import annotations

import time
from collections import deque
from uuid import UUID

__all__ = ["RateLimiter"]


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
