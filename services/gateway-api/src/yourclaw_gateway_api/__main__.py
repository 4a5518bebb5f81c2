"""`yourclaw-gateway-api` / `python -m yourclaw_gateway_api`."""

from __future__ import annotations

import uvicorn
from yourclaw_common.logging import configure_logging
from yourclaw_common.runtime import tune_gc

from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings


def run() -> None:
    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level)
    # Several workers need an import string: each process builds its own app.
    app = (
        create_app(settings)
        if settings.api_workers == 1
        else "yourclaw_gateway_api.app:app_factory"
    )
    if settings.api_workers == 1:
        tune_gc()  # workers > 1 tune themselves in app_factory
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        factory=settings.api_workers > 1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        # Keep our JSON root handler: uvicorn's own lines go through it too.
        log_config=None,
        # Twilio only reaches us through the TLS proxy named by PUBLIC_BASE_URL.
        proxy_headers=False,
    )


if __name__ == "__main__":
    run()
