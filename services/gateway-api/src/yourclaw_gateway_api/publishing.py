"""Every publish of the gateway: the event is queued (JetStream's PubAck
awaited) before the caller gets its answer, or the caller gets 503
PUBLISH_FAILED and retries; JetStream drops the duplicate if the publish landed
after all."""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext
from nats.js.api import PubAck
from yourclaw_common.errors import ServiceUnavailable
from yourclaw_common.events import Event
from yourclaw_common.logging import get_logger
from yourclaw_common.nats import publish

__all__ = ["Publisher"]

log = get_logger(__name__)


class Publisher:
    """JetStream with the gateway's publish timeout, failing as a 503."""

    __slots__ = ("_js", "_timeout")

    def __init__(self, js: JetStreamContext, *, timeout: float):
        self._js = js
        self._timeout = timeout

    async def __call__(self, event: Event, *, what: str, **log_fields: Any) -> PubAck:
        """Publish `event` (a `what`: "request", "message" … in the answer)."""
        try:
            return await publish(self._js, event, timeout=self._timeout)
        except Exception as exc:
            log.warning(
                "gateway.publish_failed",
                subject=event.publish_subject(),
                event_id=str(event.event_id),
                error=f"{type(exc).__name__}: {exc}"[:300],
                **log_fields,
            )
            raise ServiceUnavailable(
                f"could not queue the {what}, retry later",
                code="PUBLISH_FAILED",
                headers={"Retry-After": "2"},
            ) from exc
