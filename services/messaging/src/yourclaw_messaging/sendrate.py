"""A token bucket per WhatsApp sender, shared by every messaging replica.

Twilio queues about 80 messages a second per sender. The bucket is a row in
PostgreSQL (refilled at `rate` per second, up to one second's worth); each
replica leases tokens from it a tenth of a second's worth at a time, so the
replicas together start at most `rate` sends a second, give or take the blocks
they hold.
"""

from __future__ import annotations

import asyncio

import asyncpg

from yourclaw_messaging import repository


class SharedTokenBucket:
    def __init__(self, pool: asyncpg.Pool, sender: str, rate: float):
        self._pool = pool
        self._sender = sender
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._block = max(1, int(rate / 10))
        self._held = 0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for this replica's turn to start one send."""
        async with self._lock:
            while self._held < 1:
                async with self._pool.acquire() as conn:
                    self._held += await repository.outbound.lease_send_tokens(
                        conn,
                        self._sender,
                        want=self._block,
                        rate=self._rate,
                        capacity=self._capacity,
                    )
                if self._held < 1:
                    # Empty for now: a block refills in a tenth of a second.
                    await asyncio.sleep(self._block / self._rate)
            self._held -= 1
