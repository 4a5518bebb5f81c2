"""The per-sender send rate holds across messaging replicas (real PostgreSQL)."""

import asyncio
import time

from yourclaw_messaging import repository
from yourclaw_messaging.sendrate import SharedTokenBucket

SENDER = "whatsapp:+14155238886"


async def test_leases_take_what_the_bucket_holds_and_no_more(clean_db):
    async with clean_db.acquire() as conn:

        async def lease(sender: str = SENDER) -> int:
            return await repository.outbound.lease_send_tokens(
                conn, sender, want=8, rate=0.001, capacity=10
            )

        assert [await lease(), await lease(), await lease()] == [8, 2, 0]
        # Another sender has its own bucket.
        assert await lease("whatsapp:+15550000000") == 8


async def test_two_replicas_together_keep_to_one_senders_rate(clean_db):
    rate = 10.0
    replicas = [SharedTokenBucket(clean_db, SENDER, rate) for _ in range(2)]
    sends = 30

    started = time.monotonic()
    await asyncio.gather(
        *(replicas[i % 2].acquire() for i in range(sends)),
    )
    took = time.monotonic() - started

    # A second's burst (10) is there at once; the other 20 come at 10 a
    # second between them. A bucket per replica would let each send 15 in half
    # a second.
    assert took >= (sends - rate - 2) / rate * 0.9
