from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from yourclaw_common.crypto import SecretBox
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.cli import register_dev_user
from yourclaw_devkit.defaults import (
    DEV_GATEWAY_TOKEN,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    dev_twilio_env,
)
from yourclaw_devkit.pytest_plugin import inbound_whatsapp as inbound
from yourclaw_devkit.pytest_plugin import sent_to
from yourclaw_messaging.app import run
from yourclaw_messaging.settings import MessagingSettings

__all__ = ["inbound"]

AUTH = (DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN)
PHONE = "+15551240001"
OTHER = "+15551230002"
STRANGER = "+15559870000"
TEMPLATE_NOTIFY = "HX00000000000000000000000000000001"
TEMPLATE_READY = "HX00000000000000000000000000000002"


@pytest.fixture
def messaging_env(service_env, devsim_url) -> dict[str, str]:
    return {
        **service_env,
        "SERVICE_NAME": "messaging",
        **dev_twilio_env(devsim_url),
        "APP_URL": "https://app.yourclaw.test",
        "ASSISTANT_TIMEOUT_SECONDS": "20",
    }


def settings_from(env: dict[str, str], **overrides) -> MessagingSettings:
    values = {k.lower(): v for k, v in env.items()}
    values.update(overrides)
    return MessagingSettings(_env_file=None, **values)


@pytest_asyncio.fixture(loop_scope="session")
async def start_messaging(
    messaging_env, clean_db, nats_client
) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """Start messaging in-process (settings overridable); stopped after the test."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**overrides) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings_from(messaging_env, **overrides), stop))
        stops.append((stop, task))
        # Ready once its durable consumer has a subscriber pulling.
        await asyncio.sleep(0.3)
        if task.done():
            task.result()

    yield start
    for stop, _task in stops:
        stop.set()
    await asyncio.gather(*(t for _, t in stops), return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="session")
async def register(
    clean_db, devsim_url, encryption_key
) -> Callable[..., Awaitable[uuid.UUID]]:
    """Register a phone with a READY assistant answered by the LLM stand-in."""

    async def make(
        phone: str = "+15551230001", *, endpoint: str | None = None, **kw
    ) -> uuid.UUID:
        async with clean_db.acquire() as conn:
            user = await register_dev_user(
                conn,
                phone=phone,
                endpoint=endpoint or devsim_url,
                token=DEV_GATEWAY_TOKEN,
                box=SecretBox(encryption_key),
                **kw,
            )
        return user.user_id

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def texted(register, start_messaging, js) -> Callable[..., Awaitable[uuid.UUID]]:
    """PHONE's user, registered, texts `body` to a messaging just started.

    `texted(body, sid=None, **settings_overrides)` returns the user's id.
    """

    async def send(body: str, sid: str | None = None, **overrides) -> uuid.UUID:
        user_id = await register(PHONE)
        await start_messaging(**overrides)
        await publish(js, inbound(PHONE, body, sid))
        return user_id

    return send


@pytest_asyncio.fixture(loop_scope="session")
async def twilio_faults(devsim) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """Make the Twilio stand-in fail the next sends to a phone with an error code."""

    async def inject(phone: str, code: int, *, status: int = 400, **kw) -> None:
        resp = await devsim.post(
            "/_devsim/twilio/faults",
            json={"to": f"whatsapp:{phone}", "code": code, "status": status, **kw},
        )
        resp.raise_for_status()

    (await devsim.delete("/_devsim/twilio/faults")).raise_for_status()
    yield inject
    (await devsim.delete("/_devsim/twilio/faults")).raise_for_status()


async def devsim_sent(devsim: httpx.AsyncClient, phone: str) -> list[dict]:
    """Like `sent_to`, with what Twilio does not echo (ContentSid, variables)."""
    resp = await devsim.get("/_devsim/messages", params={"to": f"whatsapp:{phone}"})
    resp.raise_for_status()
    return list(reversed(resp.json()["messages"]))


async def llm_requests(devsim) -> list[dict]:
    return (await devsim.get("/_devsim/llm/requests")).json()["requests"]


async def settle(devsim, phone, count, *, wait=1.0, timeout=15, read=devsim_sent):
    """Wait for `count` messages to `phone`, then a little more to catch extras."""

    async def enough():
        return len(await read(devsim, phone)) >= count

    await eventually(enough, timeout=timeout)
    await asyncio.sleep(wait)
    return await read(devsim, phone)


async def replies_settle(devsim, phone, count, *, wait=1.0):
    """`settle`, read from Twilio's Messages list as Twilio's API answers it."""
    return await settle(devsim, phone, count, wait=wait, read=sent_to)


async def clear_of_a_minute_boundary() -> None:
    """Wait, if need be, so that a test's messages fall in one minute window."""
    second = datetime.now(UTC).second
    if second > 40:
        await asyncio.sleep(61 - second)


async def count_messages(db, where: str = "TRUE", *args: object) -> int:
    """How many `messages` rows match `where` (SQL; `args` are its $1, $2…)."""
    return await db.fetchval(f"SELECT count(*) FROM messages WHERE {where}", *args)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
