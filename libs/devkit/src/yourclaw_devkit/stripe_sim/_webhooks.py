"""Stripe-signed webhooks to one endpoint, in order, retried a few times."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from yourclaw_common.logging import get_logger

from yourclaw_devkit.signing import stripe_signature

__all__ = ["Delivery", "StripeWebhooks"]

log = get_logger(__name__)

_DELIVERY_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0)


@dataclass
class Delivery:
    event_id: str
    type: str
    statuses: list[int | str] = field(default_factory=list)
    delivered: bool = False


class StripeWebhooks:
    """Delivers events to one endpoint, in order, signed, retried a few times."""

    def __init__(self, *, url: str, secret: str):
        self.url = url
        self._secret = secret
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None
        self.deliveries: dict[str, Delivery] = {}

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=10.0)
        self._worker = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def send(self, event: dict[str, Any]) -> None:
        self.deliveries[event["id"]] = Delivery(event["id"], event["type"])
        self._queue.put_nowait(event)

    async def idle(self) -> None:
        """Wait until every queued event was delivered or given up on."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._deliver(event)
            except Exception as exc:  # one bad delivery must not stop the rest
                log.warning("devsim.stripe.webhook_error", error=str(exc))
            finally:
                self._queue.task_done()

    async def _deliver(self, event: dict[str, Any]) -> None:
        assert self._client is not None
        record = self.deliveries[event["id"]]
        if not self.url:
            record.statuses.append("no endpoint")
            return
        payload = orjson.dumps(event)
        for delay in _DELIVERY_DELAYS:
            await asyncio.sleep(delay)
            headers = {
                "content-type": "application/json; charset=utf-8",
                "stripe-signature": stripe_signature(payload, self._secret),
                "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            try:
                response = await self._client.post(
                    self.url, content=payload, headers=headers
                )
            except httpx.HTTPError as exc:
                record.statuses.append(type(exc).__name__)
                continue
            record.statuses.append(response.status_code)
            if 200 <= response.status_code < 300:
                record.delivered = True
                break
        log.info(
            "devsim.stripe.webhook",
            stripe_event_id=event["id"],
            type=event["type"],
            delivered=record.delivered,
            attempts=len(record.statuses),
        )
