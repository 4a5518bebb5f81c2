"""What the webhooks served before FastAPI (`twilio.py`, `telegram.py`) share.

A handler answers, or raises `Rejected`: the refusal leaves as `{"detail",
"code"}` with its status, is counted by outcome and logged once. A crash is a
500, counted and logged with its traceback. `GatewayApp` in `app.py` dispatches
to these by path, counts and times them as the routes behind `edge` are, and
puts them under the same per-IP limit (`rate_label` names them in its metric).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from nats.js.api import PubAck
from starlette.types import Receive, Scope, Send
from yourclaw_common.errors import ServiceUnavailable
from yourclaw_common.events import Event
from yourclaw_common.logging import get_logger

from yourclaw_gateway_api.asgi import (
    BodyTooLarge,
    Disconnected,
    Headers,
    read_body,
    send_json,
)
from yourclaw_gateway_api.metrics import (
    WEBHOOK_PUBLISH_SECONDS,
    WEBHOOK_SIGNATURE_FAILURES,
    WebhookOutcome,
    webhook_requests,
)
from yourclaw_gateway_api.publishing import Publisher

__all__ = ["LeanWebhook", "Rejected"]

log = get_logger(__name__)

_POST_ONLY = [(b"allow", b"POST")]


class Rejected(Exception):
    """A request refused with `status` and `{"detail", "code"}`; the log line
    of the refusal carries `log_fields`."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        outcome: WebhookOutcome,
        *,
        headers: Headers = (),
        **log_fields: Any,
    ):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.outcome = outcome
        self.headers = headers
        self.log_fields = log_fields


class LeanWebhook:
    """The ASGI handler of one webhook path; `_handle` answers or raises
    `Rejected`. What the lifespan opened is in `scope["state"]`."""

    def __init__(self, *, path: str, provider: str, rate_label: str, max_body: int):
        self.path = path
        self.rate_label = rate_label
        self._log = f"gateway.{provider}"
        self._max_body = max_body
        self._requests = webhook_requests(provider)
        self._accepted = self._requests[WebhookOutcome.ACCEPTED]
        self._signature_failures = WEBHOOK_SIGNATURE_FAILURES.labels(provider)
        self._publish_seconds = WEBHOOK_PUBLISH_SECONDS.labels(provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._handle(scope, receive, send)
        except Rejected as exc:
            self._requests[exc.outcome].inc()
            if exc.outcome is WebhookOutcome.INVALID_SIGNATURE:
                self._signature_failures.inc()
            client = scope.get("client")
            log.warning(
                f"{self._log}.rejected",
                status=exc.status,
                code=exc.code,
                detail=exc.detail,
                client=client[0] if client else None,
                **exc.log_fields,
            )
            await send_json(
                send, exc.status, {"detail": exc.detail, "code": exc.code}, exc.headers
            )
        except Disconnected:
            log.debug(f"{self._log}.client_disconnected")
        except Exception:
            self._requests[WebhookOutcome.ERROR].inc()
            log.exception(f"{self._log}.failed")
            await send_json(
                send, 500, {"detail": "internal error", "code": "INTERNAL_ERROR"}
            )

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError

    @staticmethod
    def _check_post(scope: Scope) -> None:
        if scope["method"] != "POST":
            raise Rejected(
                405,
                "METHOD_NOT_ALLOWED",
                "method not allowed",
                WebhookOutcome.METHOD_NOT_ALLOWED,
                headers=_POST_ONLY,
            )

    async def _body(self, receive: Receive, *, declared: int | None) -> bytes:
        """The whole body, or 413 over the webhooks' limit."""
        try:
            return await read_body(receive, limit=self._max_body, declared=declared)
        except BodyTooLarge as exc:
            raise Rejected(
                413,
                "PAYLOAD_TOO_LARGE",
                f"the body is larger than {self._max_body} bytes",
                WebhookOutcome.TOO_LARGE,
                headers=[(b"connection", b"close")] if exc.close else (),
            ) from None

    async def _publish(
        self, scope: Scope, event: Event, *, what: str, **log_fields: Any
    ) -> PubAck:
        """Publish and count the request accepted, or 503 PUBLISH_FAILED: the
        provider retries, and JetStream drops the copy if this one landed."""
        publish: Publisher = scope["state"]["publish"]
        started = perf_counter()
        try:
            ack = await publish(event, what=what, **log_fields)
        except ServiceUnavailable as exc:
            raise Rejected(
                503,
                exc.code,
                exc.detail,
                WebhookOutcome.PUBLISH_FAILED,
                headers=[
                    (k.lower().encode(), v.encode()) for k, v in exc.headers.items()
                ],
                **log_fields,
            ) from exc
        finally:
            self._publish_seconds.observe(perf_counter() - started)
        self._accepted.inc()
        return ack
