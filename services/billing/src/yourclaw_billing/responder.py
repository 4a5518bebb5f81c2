"""Serve core-NATS request/reply subjects (`billing.checkout.create`, …) with a
queue group, so replicas share requests; each request runs in its own task."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from yourclaw_common.events import BillingReply
from yourclaw_common.logging import bind_correlation_id, get_logger
from yourclaw_common.nats import CORRELATION_HEADER

from yourclaw_billing.handlers import RequestHandler

__all__ = ["Responder"]

log = get_logger(__name__)

_INTERNAL = BillingReply(ok=False, code="INTERNAL_ERROR", detail="internal error")


class Responder:
    def __init__(self, nc: NATS, *, queue: str):
        self._nc = nc
        self._queue = queue
        self._subs: list[Subscription] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def serve(self, subject: str, handler: RequestHandler) -> None:
        async def on_message(msg: Msg) -> None:
            task = asyncio.create_task(self._answer(msg, handler))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        self._subs.append(
            await self._nc.subscribe(subject, queue=self._queue, cb=on_message)
        )
        log.info("billing.requests.serving", subject=subject)

    async def _answer(self, msg: Msg, handler: RequestHandler) -> None:
        cid = (msg.headers or {}).get(CORRELATION_HEADER) or uuid.uuid4().hex
        with bind_correlation_id(cid):
            try:
                reply = await handler(msg.data)
            except Exception:
                log.exception("billing.requests.failed", subject=msg.subject)
                reply = _INTERNAL
            if not msg.reply:
                return
            try:
                await msg.respond(reply.model_dump_json().encode())
            except Exception as exc:  # the requester is gone or NATS reconnects
                log.warning("billing.requests.reply_failed", error=str(exc))

    async def close(self) -> None:
        """Stop taking requests; finish those in flight."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("billing.requests.unsubscribe_failed", error=str(exc))
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
