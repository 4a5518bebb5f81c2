"""A token bucket per WhatsApp sender: Twilio queues ~80 messages/s per sender."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Waits so that no more than `rate` sends per second start (bursts up to `rate`)."""

    def __init__(self, rate: float):
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(
                    self._capacity, self._tokens + (now - self._updated) * self._rate
                )
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)
