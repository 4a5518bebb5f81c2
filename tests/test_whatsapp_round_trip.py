"""The first WhatsApp round trip through the architecture, over real loopback HTTP:

Twilio-signed webhook → gateway-api → JetStream → messaging → the user's
assistant (LLM stand-in) → Twilio Messages resource (stand-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from yourclaw_common.crypto import SecretBox
from yourclaw_common.testing import eventually
from yourclaw_devkit.cli import (
    inbound_whatsapp_form,
    main,
    register_dev_user,
    sign_webhook,
)
from yourclaw_devkit.defaults import (
    DEV_GATEWAY_TOKEN,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_devkit.pytest_plugin import messaging_values, sent_to
from yourclaw_devkit.serving import running_app
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_messaging.app import run as run_messaging
from yourclaw_messaging.settings import MessagingSettings

PUBLIC_BASE_URL = "https://hooks.yourclaw.test"  # as behind a TLS proxy
PATH = "/api/v1/webhooks/twilio/whatsapp"
USER_PHONE = "+15557770001"
STRANGER = "+15557770999"


class Stack:
    def __init__(self, api_url: str, devsim: httpx.AsyncClient):
        self.api = httpx.AsyncClient(base_url=api_url, timeout=10)
        self.devsim = devsim

    async def whatsapp(
        self, phone: str, body: str, *, sid: str | None = None, bad_signature=False
    ):
        form = inbound_whatsapp_form(
            phone=phone,
            body=body,
            to=DEV_WHATSAPP_NUMBER,
            account_sid=DEV_TWILIO_ACCOUNT_SID,
            message_sid=sid,
        )
        _, signature = sign_webhook(PUBLIC_BASE_URL, form, DEV_TWILIO_AUTH_TOKEN)
        if bad_signature:
            signature = signature[:-4] + "AAA="
        return await self.api.post(
            PATH, data=form, headers={"X-Twilio-Signature": signature}
        )

    async def replies_to(self, phone: str) -> list[str]:
        return [m["body"] for m in await sent_to(self.devsim, phone)]


@contextlib.asynccontextmanager
async def running_stack(
    service_env,
    devsim_url,
    devsim,
    clean_db,
    encryption_key,
    nats_identity,
    **messaging_overrides,
) -> AsyncIterator[Stack]:
    env = {k.lower(): v for k, v in service_env.items()}
    gateway = GatewaySettings(
        _env_file=None,
        **env,
        **nats_identity("gateway-api"),
        public_base_url=PUBLIC_BASE_URL,
        twilio_auth_token=DEV_TWILIO_AUTH_TOKEN,
    )
    messaging = MessagingSettings(
        _env_file=None,
        **messaging_values(
            service_env,
            devsim_url,
            **nats_identity("messaging"),
            **messaging_overrides,
        ),
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_messaging(messaging, stop))
    async with clean_db.acquire() as conn:
        await register_dev_user(
            conn,
            phone=USER_PHONE,
            endpoint=devsim_url,
            token=DEV_GATEWAY_TOKEN,
            box=SecretBox(encryption_key),
        )
    try:
        async with running_app(create_app(gateway)) as api_url:
            yield Stack(api_url, devsim)
    finally:
        stop.set()
        await worker


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    service_env,
    devsim_url,
    devsim,
    clean_db,
    nats_client,
    encryption_key,
    nats_identity,
) -> AsyncIterator[Stack]:
    async with running_stack(
        service_env, devsim_url, devsim, clean_db, encryption_key, nats_identity
    ) as running:
        yield running


async def settled(stack: Stack, phone: str, count: int) -> list[str]:
    await eventually(lambda: _at_least(stack, phone, count), timeout=15)
    await asyncio.sleep(1.0)  # long enough for a duplicate to show up
    return await stack.replies_to(phone)


async def _at_least(stack, phone, count):
    return len(await stack.replies_to(phone)) >= count


class TestWhatsAppRoundTrip:
    async def test_registered_phone_gets_exactly_one_reply(self, stack):
        resp = await stack.whatsapp(USER_PHONE, "what's the weather?")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/xml")
        assert resp.text == "<Response></Response>"
        assert await settled(stack, USER_PHONE, 1) == ["Echo: what's the weather?"]

    async def test_same_message_sid_three_times_yields_one_reply(self, stack):
        sid = f"SM{uuid.uuid4().hex}"
        for _ in range(3):
            assert (
                await stack.whatsapp(USER_PHONE, "retry me", sid=sid)
            ).status_code == 200
        assert await settled(stack, USER_PHONE, 1) == ["Echo: retry me"]

    async def test_bad_signature_is_403_and_gets_no_reply(self, stack, js):
        resp = await stack.whatsapp(USER_PHONE, "forged", bad_signature=True)
        assert resp.status_code == 403
        assert resp.json() == {
            "detail": "invalid Twilio signature",
            "code": "INVALID_SIGNATURE",
        }
        await asyncio.sleep(1.5)
        assert await stack.replies_to(USER_PHONE) == []
        assert (await js.stream_info("INBOUND")).state.messages == 0

    async def test_unknown_phone_gets_the_signup_reply(self, stack):
        assert (await stack.whatsapp(STRANGER, "hello?")).status_code == 200
        (reply,) = await settled(stack, STRANGER, 1)
        assert "isn't linked to an account yet" in reply
        assert "Sign up at" in reply


class TestDevCliSend:
    """`yourclaw-dev send` against the real gateway-api and messaging."""

    @pytest_asyncio.fixture(loop_scope="session")
    async def limited(
        self,
        service_env,
        devsim_url,
        devsim,
        clean_db,
        nats_client,
        encryption_key,
        nats_identity,
    ) -> AsyncIterator[Stack]:
        # A day's limit: a minute's could roll over between the messages.
        async with running_stack(
            service_env,
            devsim_url,
            devsim,
            clean_db,
            encryption_key,
            nats_identity,
            rate_limit_msg_per_day=1,
        ) as running:
            yield running

    async def test_rate_limited_message_is_reported_at_once(
        self, limited, devsim_url, database_url, monkeypatch, capsys
    ):
        for name, value in {
            "API_URL": str(limited.api.base_url),
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "TWILIO_API_BASE": devsim_url,
            "TWILIO_ACCOUNT_SID": DEV_TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEV_TWILIO_AUTH_TOKEN,
            "TWILIO_WHATSAPP_NUMBER": DEV_WHATSAPP_NUMBER,
            "DATABASE_URL": database_url,
        }.items():
            monkeypatch.setenv(name, value)

        def send(text: str) -> int:
            return main(["send", "--from", USER_PHONE, "--timeout", "30", text])

        assert await asyncio.to_thread(send, "first") == 0
        assert "<- Echo: first" in capsys.readouterr().out
        assert await asyncio.to_thread(send, "second") == 0
        notice = capsys.readouterr().out
        assert "You've reached your limit of 1 message per day" in notice

        started = time.monotonic()
        assert await asyncio.to_thread(send, "third") == 1
        elapsed = time.monotonic() - started

        out = capsys.readouterr().out
        assert "rate-limited" in out
        assert "You've reached your limit" in out  # the earlier notice, quoted
        assert f"no reply to {USER_PHONE}" not in out
        assert elapsed < 10, f"waited {elapsed:.1f}s before saying so"
