"""The ASGI app: the lean Twilio and Telegram webhooks in front, FastAPI
(behind the edge layers of `edge.py`) for everything else."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    suppress,
)
from importlib.metadata import version
from time import perf_counter

import httpx
from fastapi import FastAPI
from nats.aio.client import Client as NATS
from starlette.types import ASGIApp, Receive, Scope, Send
from yourclaw_common.crypto import SecretBox
from yourclaw_common.db import close_pool
from yourclaw_common.events import ensure_topology
from yourclaw_common.logging import bind_correlation_id, configure_logging, get_logger
from yourclaw_common.nats import connect_as
from yourclaw_common.nats_auth import owned_streams
from yourclaw_common.outbox import relay_forever
from yourclaw_common.runtime import connect_postgres, tune_gc

from yourclaw_gateway_api.api import (
    api_keys,
    assistants,
    billing,
    channels,
    dev,
    health,
    internal,
    media,
    ops,
    telegram,
    usage,
    users,
)
from yourclaw_gateway_api.asgi import StatusRecorder, fixed_response
from yourclaw_gateway_api.auth import DevIssuer, Jwks, KnownUsers, TokenVerifier
from yourclaw_gateway_api.dependencies import State
from yourclaw_gateway_api.docs_page import install_docs
from yourclaw_gateway_api.edge import build_edge, serve_webhook
from yourclaw_gateway_api.errors import install_error_handlers
from yourclaw_gateway_api.metrics import API_REQUEST_SECONDS, API_REQUESTS
from yourclaw_gateway_api.openapi import LIVENESS_PATH, install_openapi
from yourclaw_gateway_api.publishing import Publisher
from yourclaw_gateway_api.ratelimit import ApiLimits, ClientIp, RateLimiter
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.lean import LeanWebhook
from yourclaw_gateway_api.webhooks.stripe import stripe_webhook_router
from yourclaw_gateway_api.webhooks.telegram import TelegramWebhook
from yourclaw_gateway_api.webhooks.twilio import twilio_webhooks

__all__ = ["GatewayApp", "app_factory", "create_app"]

log = get_logger(__name__)

_ALIVE = fixed_response(200, b'{"status":"ok"}', b"application/json")
_NOT_ALLOWED = fixed_response(
    405,
    b'{"detail":"method not allowed","code":"METHOD_NOT_ALLOWED"}',
    b"application/json",
    [(b"allow", b"GET, HEAD")],
)
_JWKS_PATH = "/auth/v1/.well-known/jwks.json"


def _verifier(
    settings: GatewaySettings, http: httpx.AsyncClient, dev_issuer: DevIssuer | None
) -> TokenVerifier:
    jwks = (
        Jwks(http, settings.supabase_url + _JWKS_PATH)
        if settings.supabase_url
        else None
    )
    return TokenVerifier(
        supabase_url=settings.supabase_url,
        jwks=jwks,
        hs256_secret=settings.supabase_jwt_secret.get_secret_value(),
        dev=dev_issuer,
    )


async def _close_nats(nc: NATS) -> None:
    try:
        await nc.drain()
    except Exception:  # e.g. still reconnecting: drain refuses
        with suppress(Exception):
            await nc.close()


async def _stop(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await task


def _lifespan(
    settings: GatewaySettings, limits: ApiLimits, client_ip: ClientIp
) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:  # closes in reverse order
            pool = await connect_postgres(settings)
            stack.push_async_callback(close_pool, pool)
            nc = await connect_as(settings, name=settings.service_name)
            stack.push_async_callback(_close_nats, nc)
            js = nc.jetstream()
            # The gateway only publishes: it declares the streams, no consumers.
            await ensure_topology(
                js,
                consumers=[],
                replicas=settings.nats_stream_replicas,
                owned=owned_streams(settings.nats_user),
            )
            # Events written with a change (BYOK → reprovision) leave after commit.
            stop = asyncio.Event()
            relay = asyncio.create_task(
                relay_forever(pool, js, service=settings.service_name, stop=stop)
            )
            stack.push_async_callback(_stop, stop, relay)
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=5))
            key = settings.encryption_key.get_secret_value()
            if not key:
                log.warning("gateway.byok_disabled", reason="ENCRYPTION_KEY unset")
            dev_issuer = (
                DevIssuer(settings.dev_login_secret.get_secret_value())
                if settings.dev_login_enabled
                else None
            )
            verifier = _verifier(settings, http, dev_issuer)
            log.info(
                "gateway.started",
                public_base_url=settings.public_base_url,
                supabase_issuer=verifier.supabase_issuer,
                dev_login=settings.dev_login_enabled,
            )
            yield {
                "pool": pool,
                "nc": nc,
                "js": js,
                "settings": settings,
                "http": http,
                "verifier": verifier,
                "known_users": KnownUsers(),
                "box": SecretBox(key) if key else None,
                "dev": dev_issuer,
                "limits": limits,
                "client_ip": client_ip,
                "publish": Publisher(
                    js, timeout=settings.webhook_publish_timeout_seconds
                ),
            }

    return lifespan


class GatewayApp:
    """Sends the lean webhooks' paths to their handlers and the rest to FastAPI.

    Lifespan and websocket scopes go to FastAPI, whose lifespan state the ASGI
    server copies into every request scope, the webhooks' included. HTTP requests
    other than those answered here go through `edge` (request id, CORS, rate
    limit, body limit) to FastAPI.
    """

    def __init__(
        self,
        api: FastAPI,
        webhooks: list[LeanWebhook],
        *,
        edge: ASGIApp | None = None,
        limiter: RateLimiter | None = None,
        client_ip: ClientIp | None = None,
    ):
        self.api = api
        self._webhooks = {hook.path: hook for hook in webhooks}
        self._edge = edge or api
        self._limiter = limiter
        self._client_ip = client_ip or ClientIp()
        self._webhook_seconds = {
            hook.path: API_REQUEST_SECONDS.labels(hook.path) for hook in webhooks
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path = scope["path"]
        if path == LIVENESS_PATH:
            # Liveness: the process answers. Dependencies are /readyz's business.
            start, body = _ALIVE if scope["method"] in ("GET", "HEAD") else _NOT_ALLOWED
            await send(start)
            await send(body)
            return
        hook = self._webhooks.get(path)
        if hook is not None:
            # The same per-IP limit as the other webhooks (edge.RateLimit): only
            # refused requests spend, so Twilio's fan-in is never limited. The
            # cost on the hot path is a dict lookup.
            if self._limiter is None:
                await self._counted(hook, scope, receive, send)
                return

            async def answer() -> int:
                return await self._counted(hook, scope, receive, send)

            await serve_webhook(
                self._limiter, self._client_ip(scope), hook.rate_label, send, answer
            )
            return
        await self._edge(scope, receive, send)

    async def _counted(
        self, hook: LeanWebhook, scope: Scope, receive: Receive, send: Send
    ) -> int:
        """A webhook, counted and timed like the routes `edge` serves; its status."""
        recorder = StatusRecorder(send)
        started = perf_counter()
        try:
            with bind_correlation_id(uuid.uuid4().hex):
                await hook(scope, receive, recorder)
        finally:
            self._webhook_seconds[hook.path].observe(perf_counter() - started)
            API_REQUESTS.labels(hook.path, scope["method"], str(recorder.status)).inc()
        return recorder.status


def _api_limits(settings: GatewaySettings) -> ApiLimits:
    return ApiLimits.per_minute(
        ip=(settings.api_rate_limit_ip_per_minute, settings.api_rate_limit_ip_burst),
        user=(
            settings.api_rate_limit_user_per_minute,
            settings.api_rate_limit_user_burst,
        ),
        sensitive_ip=(
            settings.api_sensitive_rate_limit_ip_per_minute,
            settings.api_sensitive_rate_limit_ip_burst,
        ),
        sensitive_user=(
            settings.api_sensitive_rate_limit_user_per_minute,
            settings.api_sensitive_rate_limit_user_burst,
        ),
    )


def create_app(settings: GatewaySettings) -> ASGIApp:
    client_ip = ClientIp(settings.trusted_proxy_ips)
    limits = _api_limits(settings)
    api = FastAPI(
        title="YourClaw API",
        version=version("yourclaw-gateway-api"),
        description="The public HTTP edge of YourClaw: the dashboard's REST API "
        "(Supabase bearer tokens) and the Twilio and Stripe webhooks. Every error "
        'is `{"detail": "...", "code": "MACHINE_CODE"}`.',
        lifespan=_lifespan(settings, limits, client_ip),
        docs_url=None,  # install_docs: Swagger UI from our own files
        redoc_url=None,
    )
    install_error_handlers(api)
    install_docs(api)
    api.include_router(health.router)
    api.include_router(ops.router)
    api.include_router(users.router)
    api.include_router(channels.router)
    api.include_router(assistants.router)
    api.include_router(billing.router)
    api.include_router(api_keys.router)
    api.include_router(usage.router)
    api.include_router(internal.router)
    api.include_router(media.router)
    api.include_router(telegram.telegram_router(settings))
    if settings.dev_login_enabled:
        api.include_router(dev.router)
    api.include_router(stripe_webhook_router(settings))
    install_openapi(
        api,
        jwks=bool(settings.supabase_url),
        llm_allowance_usd=settings.llm_monthly_allowance_usd,
    )
    limiter = (
        RateLimiter(
            settings.webhook_rate_limit_per_second, settings.webhook_rate_limit_burst
        )
        if settings.webhook_rate_limit_per_second > 0
        else None
    )
    return GatewayApp(
        api,
        [*twilio_webhooks(settings), TelegramWebhook(settings)],
        edge=build_edge(
            api, settings, limiter=limiter, api_limits=limits, client_ip=client_ip
        ),
        limiter=limiter,
        client_ip=client_ip,
    )


def app_factory() -> ASGIApp:
    """For `uvicorn --factory yourclaw_gateway_api.app:app_factory` (workers > 1)."""
    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level)
    app = create_app(settings)
    tune_gc()
    return app
