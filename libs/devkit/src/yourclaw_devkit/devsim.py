"""Local stand-ins for Twilio, Stripe and the LLM provider, in one FastAPI app.

Services reach it only through their base URLs (`TWILIO_API_BASE`,
`STRIPE_API_BASE`, the provider base URL), so it speaks the real wire formats:
Twilio's Messages resource, Stripe's API and signed webhooks, and OpenAI's chat
completions. Routes that exist only here start with
`/_devsim/`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Sequence

import uvicorn
from fastapi import FastAPI
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from yourclaw_common.logging import configure_logging, get_logger

from yourclaw_devkit._whatsapp_page import whatsapp_page_router
from yourclaw_devkit.defaults import (
    DEV_API_URL,
    DEV_STRIPE_SECRET_KEY,
    DEV_STRIPE_WEBHOOK_SECRET,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_devkit.llm_sim import RequestLog, llm_router
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.stripe_sim import StripeSim, StripeWebhooks, stripe_router
from yourclaw_devkit.twilio_sim import (
    Faults,
    MediaStore,
    MessageStore,
    SmsOptOuts,
    StatusCallbacks,
    twilio_router,
)

__all__ = [
    "ASSISTANT_READY_TEMPLATE",
    "NOTIFICATION_TEMPLATE",
    "DevsimSettings",
    "NotDevError",
    "cli",
    "create_app",
    "require_dev",
    "running_devsim",
]

log = get_logger(__name__)


class DevsimSettings(BaseSettings):
    """Where devsim listens and which credentials it accepts."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # The stand-ins accept any card and sign webhooks with well-known secrets:
    # they serve only when YOURCLAW_ENV=dev is said outright (unset = production).
    yourclaw_env: str = "production"
    devsim_host: str = "127.0.0.1"
    devsim_port: int = Field(default=8900, ge=0, le=65535)
    twilio_account_sid: str = DEV_TWILIO_ACCOUNT_SID
    twilio_auth_token: SecretStr = SecretStr(DEV_TWILIO_AUTH_TOKEN)
    # The WhatsApp simulator page writes as Twilio would: to this sender, signed,
    # at gateway-api's inbound webhook.
    twilio_whatsapp_number: str = DEV_WHATSAPP_NUMBER
    devsim_twilio_webhook_url: str = DEV_API_URL + "/api/v1/webhooks/twilio/whatsapp"
    # The account's SMS number: an SMS from another is refused, as Twilio does
    # (empty: any sender, no `/_devsim/twilio/sms`), and where that route posts
    # a phone's SMS to it, signed. `make up` sets it.
    twilio_sms_number: str = ""
    devsim_twilio_sms_webhook_url: str = DEV_API_URL + "/api/v1/webhooks/twilio/sms"
    # Added to every chat completion, on top of any `#sleep=` in the message.
    devsim_llm_delay_seconds: float = Field(default=0.0, ge=0)
    # When set, chat completions need `Authorization: Bearer <this>`.
    devsim_llm_api_key: SecretStr | None = None
    # POST signed `sent`/`delivered` callbacks to a message's StatusCallback URL.
    devsim_status_callbacks: bool = True
    # The approved WhatsApp templates, under messaging's variable names: a
    # message with one of these ContentSids shows as the template's text.
    twilio_template_assistant_ready: str = ""
    twilio_template_notification: str = ""
    # Any other templates the account has: {"HX…": "text with {{1}}"} (JSON).
    devsim_twilio_templates: dict[str, str] = Field(default_factory=dict)
    # Per store; the oldest records go first.
    devsim_max_records: int = Field(default=10_000, ge=1)
    # The key billing sends (STRIPE_SECRET_KEY), and the endpoint and secret the
    # Stripe stand-in signs webhooks for (gateway-api's STRIPE_WEBHOOK_SECRET).
    stripe_secret_key: SecretStr = SecretStr(DEV_STRIPE_SECRET_KEY)
    stripe_webhook_secret: SecretStr = SecretStr(DEV_STRIPE_WEBHOOK_SECRET)
    devsim_stripe_webhook_url: str = DEV_API_URL + "/api/v1/webhooks/stripe"
    log_level: str = "INFO"


class NotDevError(RuntimeError):
    """The stand-ins were asked to serve outside a dev environment."""


def require_dev(settings: DevsimSettings) -> None:
    """Raise `NotDevError` unless YOURCLAW_ENV=dev."""
    if settings.yourclaw_env != "dev":
        raise NotDevError(
            "devsim serves fake Twilio, Stripe and LLM APIs and refuses to start "
            f"unless YOURCLAW_ENV=dev (YOURCLAW_ENV={settings.yourclaw_env})"
        )


# What the approved templates say (their text lives in the Twilio account, not
# in our code): the notification carries the assistant's message as {{1}}.
ASSISTANT_READY_TEMPLATE = (
    "Your YourClaw assistant is ready! Say hi here to get started."
)
NOTIFICATION_TEMPLATE = "Your assistant has a message for you: {{1}}"


def _templates(settings: DevsimSettings) -> dict[str, str]:
    known = {
        settings.twilio_template_assistant_ready: ASSISTANT_READY_TEMPLATE,
        settings.twilio_template_notification: NOTIFICATION_TEMPLATE,
    }
    known.pop("", None)
    return known | settings.devsim_twilio_templates


def create_app(settings: DevsimSettings) -> FastAPI:
    """The devsim app; all state lives in it, so two apps share nothing."""
    auth_token = settings.twilio_auth_token.get_secret_value()
    messages = MessageStore(max_records=settings.devsim_max_records)
    requests_log = RequestLog(max_records=settings.devsim_max_records)
    callbacks = StatusCallbacks(
        auth_token=auth_token, store=messages, enabled=settings.devsim_status_callbacks
    )
    api_key = (
        settings.devsim_llm_api_key.get_secret_value()
        if settings.devsim_llm_api_key
        else None
    )

    stripe_webhooks = StripeWebhooks(
        url=settings.devsim_stripe_webhook_url,
        secret=settings.stripe_webhook_secret.get_secret_value(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await callbacks.start()
        await stripe_webhooks.start()
        try:
            yield
        finally:
            await stripe_webhooks.close()
            await callbacks.close()

    app = FastAPI(
        title="YourClaw devsim",
        lifespan=lifespan,
        docs_url="/_devsim/docs",
        openapi_url="/_devsim/openapi.json",
        redoc_url=None,
    )
    media = MediaStore(max_records=settings.devsim_max_records)
    app.include_router(
        twilio_router(
            account_sid=settings.twilio_account_sid,
            auth_token=auth_token,
            store=messages,
            callbacks=callbacks,
            faults=Faults(),
            media=media,
            templates=_templates(settings),
            sms_number=settings.twilio_sms_number,
            sms_webhook_url=settings.devsim_twilio_sms_webhook_url,
            opt_outs=SmsOptOuts(),
        )
    )
    app.include_router(
        whatsapp_page_router(
            account_sid=settings.twilio_account_sid,
            auth_token=auth_token,
            whatsapp_number=settings.twilio_whatsapp_number,
            webhook_url=settings.devsim_twilio_webhook_url,
            store=messages,
            media=media,
            callbacks=callbacks,
        )
    )
    app.include_router(
        llm_router(
            api_key=api_key or None,
            delay_seconds=settings.devsim_llm_delay_seconds,
            requests_log=requests_log,
        )
    )

    app.include_router(
        stripe_router(
            secret_key=settings.stripe_secret_key.get_secret_value(),
            sim=StripeSim(stripe_webhooks, max_events=settings.devsim_max_records),
        )
    )

    @app.get("/_devsim/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@contextlib.asynccontextmanager
async def running_devsim(
    settings: DevsimSettings | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve devsim on the running loop (a free port unless given); yields its base URL."""
    async with running_app(
        create_app(settings or DevsimSettings()), host=host, port=port
    ) as url:
        yield url


def cli(argv: Sequence[str] | None = None) -> None:
    """`yourclaw-devsim`: serve the stand-ins until interrupted."""
    parser = argparse.ArgumentParser(
        prog="yourclaw-devsim", description="Local Twilio and LLM stand-ins."
    )
    parser.add_argument("--host", help="default: DEVSIM_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, help="default: DEVSIM_PORT or 8900")
    args = parser.parse_args(argv)
    settings = DevsimSettings()
    configure_logging("devsim", settings.log_level)
    try:
        require_dev(settings)
    except NotDevError as exc:
        log.error("devsim.refused", reason=str(exc))
        raise SystemExit(f"yourclaw-devsim: {exc}") from None
    host = args.host or settings.devsim_host
    port = settings.devsim_port if args.port is None else args.port
    log.info(
        "devsim.starting", host=host, port=port, account_sid=settings.twilio_account_sid
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":  # `python -m yourclaw_devkit.devsim`, as `make up` runs it
    cli()
