import asyncio

import pytest
from yourclaw_messaging.batching import Batcher


class _Recorder:
    def __init__(self, fail_on: object = None):
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.release = asyncio.Event()

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail_on in items:
            raise ValueError("bad batch")
        return [item * 10 for item in items]


async def test_calls_queued_behind_the_one_in_flight_share_a_batch():
    recorder = _Recorder()
    batcher = Batcher(recorder.run, max_in_flight=1)
    first = asyncio.ensure_future(batcher(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    recorder.release.set()

    assert await first == 10
    assert [await r for r in rest] == [20, 30, 40]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_a_failed_batch_fails_its_callers_only():
    recorder = _Recorder(fail_on=2)
    batcher = Batcher(recorder.run, max_in_flight=1)
    first = asyncio.ensure_future(batcher(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    failing = [asyncio.ensure_future(batcher(i)) for i in (2, 3)]
    recorder.release.set()

    assert await first == 10
    for call in failing:
        with pytest.raises(ValueError, match="bad batch"):
            await call
    assert await batcher(5) == 50


async def test_batches_are_cut_at_max_size():
    recorder = _Recorder()
    recorder.release.set()
    batcher = Batcher(recorder.run, max_size=2, max_in_flight=1)

    results = await asyncio.gather(*(batcher(i) for i in range(5)))

    assert results == [0, 10, 20, 30, 40]
    assert all(len(batch) <= 2 for batch in recorder.batches)
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(5))


async def test_an_isolated_failure_is_run_again_item_by_item():
    calls: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        calls.append(items)
        if 2 in items:
            raise ValueError(f"refused {items}")
        return [item * 10 for item in items]

    batcher = Batcher(
        run, max_in_flight=1, isolate=lambda exc: isinstance(exc, ValueError)
    )

    results = await asyncio.gather(
        *(batcher(i) for i in (1, 2, 3)), return_exceptions=True
    )

    assert results[0] == 10
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "refused [2]"
    assert results[2] == 30
    assert calls == [[1, 2, 3], [1], [2], [3]]


async def test_a_failure_not_isolated_fails_the_whole_batch_at_once():
    calls: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        calls.append(items)
        raise ConnectionError("database down")

    batcher = Batcher(run, max_in_flight=1, isolate=lambda exc: False)

    results = await asyncio.gather(
        *(batcher(i) for i in (1, 2)), return_exceptions=True
    )

    assert all(isinstance(r, ConnectionError) for r in results)
    assert calls == [[1, 2]]
