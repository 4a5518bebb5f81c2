"""pytest plugin (`-p yourclaw_devkit.pytest_plugin`): the local stand-ins for tests.

`devsim_url` serves one devsim (Twilio Messages resource + OpenAI-compatible
chat completions) per session on a free loopback port; `devsim` is a client on
it whose records were cleared for the test. `telegram_sim` is a Telegram Bot
API stand-in of the test's own. The functions and `ManualClock` are
what the services' tests check and build alike.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import orjson
import pytest_asyncio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from yourclaw_common.events import InboundMedia, InboundWhatsApp

from yourclaw_devkit.cli import WHATSAPP_WEBHOOK_PATH, dev_whatsapp_message
from yourclaw_devkit.defaults import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_devkit.devsim import DevsimSettings, running_devsim
from yourclaw_devkit.telegram_sim import TelegramSim, running_telegram_sim

MESSAGES_PATH = f"/2010-04-01/Accounts/{DEV_TWILIO_ACCOUNT_SID}/Messages.json"


class ManualClock:
    """A clock for code that takes one (`clock=`): it moves only when a test
    sets or advances `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def api_error(response: httpx.Response) -> dict[str, str]:
    """The body of an error answer, checked to be JSON `{"detail", "code"}`."""
    assert response.headers["content-type"] == "application/json"
    body: dict[str, str] = orjson.loads(response.content)
    assert set(body) == {"detail", "code"}
    return body


async def stream_size(js: JetStreamContext, stream: str) -> int:
    """How many messages a JetStream stream holds (0 if it does not exist)."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return 0
    return int(info.state.messages or 0)


async def sent_to(devsim: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
    """What the Twilio stand-in was asked to send to `phone`, oldest first
    (Twilio's Messages list, read as Twilio's API answers it)."""
    resp = await devsim.get(
        MESSAGES_PATH,
        params={"To": f"whatsapp:{phone}"},
        auth=(DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN),
    )
    resp.raise_for_status()
    return list(reversed(resp.json()["messages"]))


def messaging_values(
    service_env: Mapping[str, str], devsim_url: str, **overrides: Any
) -> dict[str, Any]:
    """Messaging's settings as a test runs it, by field name (for
    `MessagingSettings(_env_file=None, **values)`): the dev Twilio account and
    sender, sending through the stand-in at `devsim_url`; then `overrides`."""
    values: dict[str, Any] = {k.lower(): v for k, v in service_env.items()}
    values.update(
        twilio_account_sid=DEV_TWILIO_ACCOUNT_SID,
        twilio_auth_token=DEV_TWILIO_AUTH_TOKEN,
        twilio_whatsapp_number=DEV_WHATSAPP_NUMBER,
        twilio_api_base=devsim_url,
    )
    values.update(overrides)
    return values


# The edge as Twilio sees it, behind a TLS proxy: webhook signatures cover it.
PUBLIC_BASE_URL = "https://hooks.yourclaw.test"


async def post_whatsapp(
    api: httpx.AsyncClient,
    phone: str,
    body: str,
    *,
    sid: str | None = None,
    bad_signature: bool = False,
) -> httpx.Response:
    """A WhatsApp message from `phone` as Twilio posts it to `api` (gateway-api)."""
    form, signature = dev_whatsapp_message(
        PUBLIC_BASE_URL, phone, body, message_sid=sid
    )
    if bad_signature:
        signature = signature[:-4] + "AAA="
    return await api.post(
        WHATSAPP_WEBHOOK_PATH, data=form, headers={"X-Twilio-Signature": signature}
    )


def inbound_whatsapp(
    phone: str,
    body: str,
    sid: str | None = None,
    *,
    media: Sequence[tuple[str, str]] = (),
) -> InboundWhatsApp:
    """What gateway-api publishes for a WhatsApp message from `phone`, with
    `media` as (MediaUrl, MediaContentType) pairs."""
    return InboundWhatsApp(
        message_sid=sid or f"{'MM' if media else 'SM'}{uuid.uuid4().hex}",
        account_sid=DEV_TWILIO_ACCOUNT_SID,
        from_number=f"whatsapp:{phone}",
        to_number=DEV_WHATSAPP_NUMBER,
        body=body,
        num_media=len(media),
        media=tuple(InboundMedia(url=u, content_type=t) for u, t in media),
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def devsim_url() -> AsyncIterator[str]:
    settings = DevsimSettings(
        twilio_account_sid=DEV_TWILIO_ACCOUNT_SID,
        twilio_auth_token=DEV_TWILIO_AUTH_TOKEN,
        devsim_llm_api_key=None,
        devsim_llm_delay_seconds=0,
        _env_file=None,
    )
    async with running_devsim(settings) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def devsim(devsim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=devsim_url, timeout=10) as client:
        (await client.delete("/_devsim/messages")).raise_for_status()
        (await client.delete("/_devsim/llm/requests")).raise_for_status()
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def telegram_sim() -> AsyncIterator[TelegramSim]:
    """A Telegram Bot API stand-in (the dev bot's token) for this test alone."""
    async with running_telegram_sim() as sim:
        yield sim
