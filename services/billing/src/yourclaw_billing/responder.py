"""Serve billing's core-NATS request/reply subjects (`billing.checkout.create`,
…): the shared `Responder`, answering INTERNAL_ERROR when a handler crashes."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from yourclaw_common.events import BillingReply
from yourclaw_common.responder import Responder as _Responder

__all__ = ["Responder"]

_INTERNAL = BillingReply(ok=False, code="INTERNAL_ERROR", detail="internal error")


class Responder(_Responder):
    def __init__(self, nc: NATS, *, queue: str):
        super().__init__(nc, queue=queue, crashed=_INTERNAL)
