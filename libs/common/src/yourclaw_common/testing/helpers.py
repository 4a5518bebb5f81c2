"""Helpers for tests that wait on real side effects or undo their writes."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from yourclaw_common.db import Connection
from yourclaw_common.events import STREAMS, ensure_topology

__all__ = ["eventually", "reset_streams", "returned_within", "rolled_back"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition not met",
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} within {timeout}s (last value: {last!r})")


async def returned_within(*services: asyncio.Task[None], seconds: float = 30) -> None:
    """Wait for services run in-process, once told to stop, to return as a
    SIGTERM'd process must; re-raise what one raised. One still running after
    `seconds` fails with the stack of every task left, which shows what its
    shutdown waits for."""
    if not services:
        return
    done, pending = await asyncio.wait(services, timeout=seconds)
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    if pending:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            if not task.done() and task is not asyncio.current_task():
                task.print_stack(file=stacks)
        raise AssertionError(
            f"{len(pending)} service(s) still running {seconds:g} s after "
            f"stop; the tasks left:\n{stacks.getvalue()}"
        )


async def reset_streams(
    js: JetStreamContext, *, default_ack_wait: float = 30.0
) -> None:
    """Delete our streams (and so their consumers), then declare them again."""
    for cfg in STREAMS:
        assert cfg.name is not None
        try:
            await js.delete_stream(cfg.name)
        except NotFoundError:
            pass
    # Right after a delete the server may still be removing the stream's store
    # ("error creating store for stream"): try again briefly.
    for attempt in range(20):
        try:
            await ensure_topology(js, default_ack_wait=default_ack_wait)
            return
        except APIError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.1)


@asynccontextmanager
async def rolled_back(conn: Connection) -> AsyncIterator[Connection]:
    """`conn` inside a transaction that is rolled back on the way out."""
    tr = conn.transaction()
    await tr.start()
    try:
        yield conn
    finally:
        await tr.rollback()
