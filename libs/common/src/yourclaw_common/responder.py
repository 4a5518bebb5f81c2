"""Serve core-NATS request/reply subjects (`billing.checkout.create`,
`assistant.wake.request`, …).

Replicas share a subject in one queue group; each request runs in its own task
under the requester's correlation id, and a request that asks for an answer
gets exactly one: the handler's, or the `crashed` reply when the handler
raised. `close()` stops taking requests and lets those in flight finish
within a grace period, then cancels the rest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel

from yourclaw_common.logging import bind_correlation_id, get_logger
from yourclaw_common.nats import CORRELATION_HEADER

__all__ = ["RequestHandler", "Responder"]

log = get_logger(__name__)

RequestHandler = Callable[[bytes], Awaitable[BaseModel]]


class Responder:
    """Answers requests on the subjects it serves; `crashed` answers a
    handler that raised (its traceback is logged, never sent)."""

    def __init__(self, nc: NATS, *, queue: str, crashed: BaseModel) -> None:
        self._nc = nc
        self._queue = queue
        self._crashed = crashed
        self._subs: list[Subscription] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def serve(self, subject: str, handler: RequestHandler) -> None:
        """Answer `subject` with `handler` (the request's raw body in)."""

        async def on_message(msg: Msg) -> None:
            # nats-py runs one callback at a time per subscription: a slow
            # answer must not hold up the next request.
            task = asyncio.create_task(self._answer(msg, handler))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        self._subs.append(
            await self._nc.subscribe(subject, queue=self._queue, cb=on_message)
        )
        log.info("requests.serving", subject=subject, queue=self._queue)

    async def close(self, grace_seconds: float = 10.0) -> None:
        """Stop taking requests; finish those in flight within `grace_seconds`,
        then cancel the rest (their requesters time out and ask again), so a
        request that waits long (a wake, a create) never holds up a shutdown."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # NATS is closing anyway
                log.debug("requests.unsubscribe_failed", error=str(exc))
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(set(self._in_flight), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("requests.cancelled_at_close", count=len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _answer(self, msg: Msg, handler: RequestHandler) -> None:
        cid = (msg.headers or {}).get(CORRELATION_HEADER) or uuid.uuid4().hex
        with bind_correlation_id(cid):
            try:
                reply = await handler(msg.data)
            except Exception:
                log.exception("requests.failed", subject=msg.subject)
                reply = self._crashed
            if not msg.reply:
                return
            try:
                await msg.respond(reply.model_dump_json().encode())
            except Exception as exc:  # the requester is gone or NATS reconnects
                log.warning(
                    "requests.reply_failed", subject=msg.subject, error=str(exc)
                )
