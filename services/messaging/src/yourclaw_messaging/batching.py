"""Natural batching: calls that arrive while a batch is in flight go together.

A lone call runs at once, so light load pays no wait; under load, the calls
that queue up behind the one in flight share one statement and one commit.

A batch that fails for something its items carry (a value PostgreSQL refuses)
is run again item by item, so one bad item fails only its own call and never
delays the others'.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_size: int = 64,
        max_in_flight: int = 2,
        isolate: Callable[[Exception], bool] = lambda exc: False,
    ):
        """`run` gets the items of a batch and returns one result per item, in
        order. If it raises an error for which `isolate` is true, each item is
        run alone; otherwise every call of that batch raises the same."""
        self._run = run
        self._isolate = isolate
        self._max_size = max_size
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        # The event loop keeps only weak references to tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_size]
                del self._pending[: self._max_size]
                try:
                    results = await self._run([item for item, _ in batch])
                except BaseException as exc:
                    if (
                        len(batch) > 1
                        and isinstance(exc, Exception)
                        and self._isolate(exc)
                    ):
                        for one in batch:
                            await self._run_one(one)
                        continue
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._in_flight -= 1

    async def _run_one(self, pending: tuple[T, asyncio.Future[R]]) -> None:
        item, future = pending
        try:
            (result,) = await self._run([item])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
