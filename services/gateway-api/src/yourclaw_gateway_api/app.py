"""The ASGI app: the lean Twilio webhook in front, FastAPI for everything else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from yourclaw_common.events import ensure_topology
from yourclaw_common.logging import bind_correlation_id, configure_logging, get_logger
from yourclaw_common.nats import connect
from yourclaw_common.runtime import connect_postgres, tune_gc

from yourclaw_gateway_api.api import health, ops
from yourclaw_gateway_api.dependencies import State
from yourclaw_gateway_api.errors import install_error_handlers
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.twilio import (
    TWILIO_WHATSAPP_PATH,
    TwilioWhatsAppWebhook,
)

__all__ = ["GatewayApp", "app_factory", "create_app"]

log = get_logger(__name__)

_LIVENESS_PATH = "/healthz"
_ALIVE = b'{"status":"ok"}'
_ALIVE_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_ALIVE)).encode()),
    ],
}
_ALIVE_BODY = {"type": "http.response.body", "body": _ALIVE}


def _lifespan(
    settings: GatewaySettings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        pool = await connect_postgres(settings)
        try:
            nc = await connect(settings.nats_url, name=settings.service_name)
            try:
                js = nc.jetstream()
                # The gateway only publishes: it declares the streams, no consumers.
                await ensure_topology(js, consumers=[])
                log.info("gateway.started", public_base_url=settings.public_base_url)
                yield {"pool": pool, "nc": nc, "js": js}
            finally:
                try:
                    await nc.drain()
                except Exception:  # e.g. still reconnecting: drain refuses
                    with suppress(Exception):
                        await nc.close()
        finally:
            await pool.close()

    return lifespan


class GatewayApp:
    """Sends the Twilio webhook path to its lean handler and the rest to FastAPI.

    Lifespan and websocket scopes go to FastAPI, whose lifespan state the ASGI
    server copies into every request scope, the webhook's included.
    """

    def __init__(self, api: FastAPI, twilio_whatsapp: TwilioWhatsAppWebhook):
        self.api = api
        self._twilio_whatsapp = twilio_whatsapp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        if scope["path"] == _LIVENESS_PATH:
            # Liveness: the process answers. Dependencies are /readyz's business.
            await send(_ALIVE_START)
            await send(_ALIVE_BODY)
            return
        with bind_correlation_id(uuid.uuid4().hex):
            if scope["path"] == TWILIO_WHATSAPP_PATH:
                await self._twilio_whatsapp(scope, receive, send)
                return
            try:
                await self.api(scope, receive, send)
            except Exception:
                # FastAPI already answered 500 {"detail","code"}; Starlette re-raises
                # so the server can log. We log it here, once, as JSON.
                log.exception(
                    "gateway.request.failed", method=scope["method"], path=scope["path"]
                )


def create_app(settings: GatewaySettings) -> ASGIApp:
    api = FastAPI(
        title="YourClaw API",
        lifespan=_lifespan(settings),
        redoc_url=None,
    )
    install_error_handlers(api)
    api.include_router(health.router)
    api.include_router(ops.router)
    return GatewayApp(api, TwilioWhatsAppWebhook(settings))


def app_factory() -> ASGIApp:
    """For `uvicorn --factory yourclaw_gateway_api.app:app_factory` (workers > 1)."""
    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level)
    app = create_app(settings)
    tune_gc()
    return app
