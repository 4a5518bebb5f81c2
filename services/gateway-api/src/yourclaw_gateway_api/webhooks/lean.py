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
from yourclaw_common.errors import (
    HTTPError,
    PayloadTooLarge,
    ServiceUnavailable,
    error_body,
)
from yourclaw_common.events import Event
from yourclaw_common.logging import get_logger

from yourclaw_gateway_api.asgi import BodyTooLarge, Disconnected, read_body, send_json
from yourclaw_gateway_api.errors import MethodNotAllowed
from yourclaw_gateway_api.metrics import (
    WEBHOOK_PUBLISH_SECONDS,
    WEBHOOK_SIGNATURE_FAILURES,
    WebhookOutcome,
    webhook_requests,
)
from yourclaw_gateway_api.publishing import Publisher

__all__ = ["LeanWebhook", "Rejected"]

log = get_logger(__name__)


class Rejected(Exception):
    """A refused request: `error` is the answer (its status, `{"detail",
    "code"}` and headers; its context goes into the log line), `outcome` what
    the refusal counts as."""

    def __init__(self, outcome: WebhookOutcome, error: HTTPError):
        super().__init__(error.detail)
        self.outcome = outcome
        self.error = error


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
            error = exc.error
            client = scope.get("client")
            log.warning(
                f"{self._log}.rejected",
                status=error.status_code,
                code=error.code,
                detail=error.detail,
                client=client[0] if client else None,
                **error.context,
            )
            headers = [
                (k.lower().encode(), v.encode()) for k, v in error.headers.items()
            ]
            await send_json(
                send, error.status_code, error_body(error.detail, error.code), headers
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
                WebhookOutcome.METHOD_NOT_ALLOWED,
                MethodNotAllowed("method not allowed", headers={"Allow": "POST"}),
            )

    async def _body(self, receive: Receive, *, declared: int | None) -> bytes:
        """The whole body, or 413 over the webhooks' limit."""
        try:
            return await read_body(receive, limit=self._max_body, declared=declared)
        except BodyTooLarge as exc:
            raise Rejected(
                WebhookOutcome.TOO_LARGE,
                PayloadTooLarge(
                    f"the body is larger than {self._max_body} bytes",
                    headers={"Connection": "close"} if exc.close else None,
                ),
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
            # `publish` logged it, with `log_fields`.
            raise Rejected(WebhookOutcome.PUBLISH_FAILED, exc) from exc
        finally:
            self._publish_seconds.observe(perf_counter() - started)
        self._accepted.inc()
        return ack
