import asyncio
import contextlib
import logging

from yourclaw_common import outbox


class _DownPool:
    """A pool whose database is down: every acquire is refused."""

    def __init__(self) -> None:
        self.attempts = 0
        self.up = False

    @contextlib.asynccontextmanager
    async def _refused(self):
        self.attempts += 1
        raise ConnectionRefusedError(111, "Connect call failed")
        yield

    def acquire(self):
        return self._refused()


class TestRelayForever:
    async def test_an_outage_is_retried_with_backoff_and_warned_about_once(
        self, caplog
    ):
        pool = _DownPool()
        stop = asyncio.Event()
        caplog.set_level(logging.WARNING, logger="yourclaw_common.outbox")

        task = asyncio.create_task(
            outbox.relay_forever(pool, None, service="svc", stop=stop, interval=0.2)
        )
        await asyncio.sleep(3)
        stop.set()
        await asyncio.wait_for(task, 5)

        # 0.2 s polling would have tried (and warned) 15 times in 3 s.
        assert 2 <= pool.attempts <= 5
        warnings = [
            r for r in caplog.records if r.getMessage() == "outbox.relay_failed"
        ]
        assert len(warnings) == 1

    async def test_stop_ends_a_long_backoff_at_once(self):
        pool = _DownPool()
        stop = asyncio.Event()
        task = asyncio.create_task(
            outbox.relay_forever(pool, None, service="svc", stop=stop, interval=5)
        )
        await asyncio.sleep(0.1)
        stop.set()

        await asyncio.wait_for(task, 1)
