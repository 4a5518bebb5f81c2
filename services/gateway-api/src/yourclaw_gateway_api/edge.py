"""What stands in front of FastAPI (never in front of the lean webhooks):

request id → CORS → rate limit by client IP → body limit → FastAPI

(The per-user limits need the verified token: `dependencies.py` applies them.)

Plain ASGI classes rather than Starlette `BaseHTTPMiddleware`, and outside
FastAPI's own stack, so that even the 500 FastAPI renders for a crash carries the
request id and is logged once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from time import perf_counter
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from yourclaw_common.logging import bind_correlation_id, get_logger

from yourclaw_gateway_api.asgi import (
    BodyTooLarge,
    Disconnected,
    StatusRecorder,
    declared_length,
    read_body,
    send_json,
)
from yourclaw_gateway_api.metrics import (
    API_RATE_LIMITED,
    API_REQUEST_SECONDS,
    API_REQUESTS,
    RATE_LIMITED,
)
from yourclaw_gateway_api.ratelimit import (
    ApiLimits,
    ClientIp,
    RateLimiter,
    send_rate_limited,
)
from yourclaw_gateway_api.settings import GatewaySettings

__all__ = [
    "API_PREFIX",
    "REQUEST_ID_HEADER",
    "WEBHOOKS_PREFIX",
    "BodyLimit",
    "RateLimit",
    "RequestContext",
    "build_edge",
    "refused",
    "serve_webhook",
]

log = get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
WEBHOOKS_PREFIX = "/api/v1/webhooks/"
API_PREFIX = "/api/v1/"
# Called by the tenants' gateways with a per-assistant secret; many share a
# container host's address, as users' messages share Twilio's, so they are
# limited like the webhooks.
_INTERNAL_PREFIX = "/api/v1/internal/"
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
# A caller's own id is kept only if it is short and plain (it goes into logs).
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_QUIET_PATHS = frozenset({"/readyz", "/metrics"})
_LOOPBACK_NAMES = ("localhost", "127.0.0.1")
_CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"]


class _HttpLayer:
    """An edge layer: HTTP requests go through `http`, lifespan and websocket
    scopes straight to the app."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID:
            if _VALID_REQUEST_ID.fullmatch(value):
                return str(value.decode())
            break
    return uuid.uuid4().hex


class RequestContext(_HttpLayer):
    """Gives every request an id (the caller's `X-Request-Id` or a new one), binds
    it to every log line, returns it in `X-Request-Id`, and logs and counts the
    request once it is answered."""

    def __init__(self, app: ASGIApp, client_ip: ClientIp):
        self.app = app
        self._client_ip = client_ip

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope)
        header = (_REQUEST_ID, request_id.encode())
        status = 0  # stays 0 if the client left before any answer
        started = perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        with bind_correlation_id(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                # FastAPI already answered 500 {"detail","code"}; Starlette re-raises
                # so the server can log. We log it here, once, as JSON.
                log.exception(
                    "gateway.request.failed", method=scope["method"], path=scope["path"]
                )
            finally:
                elapsed = perf_counter() - started
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                API_REQUESTS.labels(template, scope["method"], str(status)).inc()
                API_REQUEST_SECONDS.labels(template).observe(elapsed)
                level = log.debug if scope["path"] in _QUIET_PATHS else log.info
                # The path only: a query string may carry what must not be logged.
                level(
                    "gateway.request",
                    method=scope["method"],
                    path=scope["path"][:200],
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    client=self._client_ip(scope),
                    # Set by the auth dependency once the token is verified.
                    user_id=scope.get("state", {}).get("user_id"),
                )


class RateLimit(_HttpLayer):
    """429 + Retry-After for a client IP over its budget.

    Webhooks and the assistants' internal routes: only refused requests (4xx:
    bad signature or secret, bad body) spend from the IP's budget, and an IP with
    none left waits; a caller that signs correctly is never limited, so Twilio's
    fan-in and retries, and a busy container host's notifications, always get
    through. The Twilio and Telegram routes never reach FastAPI; `GatewayApp`
    does the same before their lean handlers. The rest of /api/v1: every
    request spends from the IP's budget.
    """

    def __init__(
        self,
        app: ASGIApp,
        client_ip: ClientIp,
        *,
        webhooks: RateLimiter | None,
        api: ApiLimits,
    ):
        self.app = app
        self._client_ip = client_ip
        self._webhooks = webhooks
        self._api_ip = api.ip

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith((WEBHOOKS_PREFIX, _INTERNAL_PREFIX)):
            if self._webhooks is not None:
                await self._webhook(self._webhooks, scope, receive, send)
                return
        elif path.startswith(API_PREFIX) and self._api_ip is not None:
            wait = self._api_ip.retry_after(self._client_ip(scope))
            if wait:
                API_RATE_LIMITED.labels("ip").inc()
                await send_rate_limited(send, wait)
                return
        await self.app(scope, receive, send)

    async def _webhook(
        self, limiter: RateLimiter, scope: Scope, receive: Receive, send: Send
    ) -> None:
        async def answer() -> int:
            recorder = StatusRecorder(send)
            await self.app(scope, receive, recorder)
            return recorder.status

        # Not the path: anyone can send any path (label cardinality).
        await serve_webhook(limiter, self._client_ip(scope), "other", send, answer)


async def serve_webhook(
    limiter: RateLimiter,
    ip: str,
    label: str,
    send: Send,
    answer: Callable[[], Awaitable[int]],
) -> None:
    """A webhook under the per-IP limit: an IP with no budget left waits (429),
    and only an answer the caller is to blame for (`refused`) spends from it."""
    wait = limiter.waiting(ip)
    if wait:
        RATE_LIMITED.labels(label).inc()
        await send_rate_limited(send, wait)
        return
    if refused(await answer()):
        limiter.retry_after(ip)


def refused(status: int) -> bool:
    """A webhook answer that spends from the caller's budget: its fault, not ours."""
    return 400 <= status < 500 and status != 429


class BodyLimit(_HttpLayer):
    """413 for a body over the limit (webhooks have their own limit); the body is
    read here, whole, and handed on as one message."""

    def __init__(self, app: ASGIApp, *, api_limit: int, webhook_limit: int):
        self.app = app
        self._api_limit = api_limit
        self._webhook_limit = webhook_limit

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = (
            self._webhook_limit
            if scope["path"].startswith(WEBHOOKS_PREFIX)
            else self._api_limit
        )
        try:
            body = await read_body(
                receive, limit=limit, declared=declared_length(scope)
            )
        except Disconnected:
            return
        except BodyTooLarge as exc:
            await _send_too_large(send, limit, close=exc.close)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. http.disconnect, for streaming answers
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _send_too_large(send: Send, limit: int, *, close: bool) -> None:
    await send_json(
        send,
        413,
        {
            "detail": f"the body is larger than {limit} bytes",
            "code": "PAYLOAD_TOO_LARGE",
        },
        [(b"connection", b"close")] if close else (),
    )


def _origins(app_url: str) -> list[str]:
    # A local dashboard is reached as localhost or 127.0.0.1, whichever was typed.
    parts = urlsplit(app_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.hostname in _LOOPBACK_NAMES:
        port = f":{parts.port}" if parts.port else ""
        return [f"{parts.scheme}://{name}{port}" for name in _LOOPBACK_NAMES]
    return [origin]


def build_edge(
    api: ASGIApp,
    settings: GatewaySettings,
    *,
    limiter: RateLimiter | None,
    api_limits: ApiLimits,
    client_ip: ClientIp,
) -> ASGIApp:
    """FastAPI wrapped in the edge layers, outermost first as in the docstring."""
    app: ASGIApp = BodyLimit(
        api,
        api_limit=settings.api_max_body_bytes,
        webhook_limit=settings.webhook_max_body_bytes,
    )
    app = RateLimit(app, client_ip, webhooks=limiter, api=api_limits)
    if settings.app_url:
        app = CORSMiddleware(
            app,
            allow_origins=_origins(settings.app_url),
            allow_methods=_CORS_METHODS,
            allow_headers=_CORS_HEADERS,
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
            # Bearer tokens, no cookies: credentials mode is not needed.
            allow_credentials=False,
            max_age=600,
        )
    return RequestContext(app, client_ip)
