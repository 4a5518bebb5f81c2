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
    main,
    register_dev_user,
)
from yourclaw_devkit.defaults import (
    DEV_GATEWAY_TOKEN,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_devkit.pytest_plugin import PUBLIC_BASE_URL, post_whatsapp, sent_to

USER_PHONE = "+15557770001"
STRANGER = "+15557770999"


class Stack:
    def __init__(self, api_url: str, devsim: httpx.AsyncClient):
        self.api = httpx.AsyncClient(base_url=api_url, timeout=10)
        self.devsim = devsim

    async def whatsapp(
        self, phone: str, body: str, *, sid: str | None = None, bad_signature=False
    ):
        return await post_whatsapp(
            self.api, phone, body, sid=sid, bad_signature=bad_signature
        )

    async def replies_to(self, phone: str) -> list[str]:
        return [m["body"] for m in await sent_to(self.devsim, phone)]


@contextlib.asynccontextmanager
async def running_stack(
    edge, devsim_url, devsim, clean_db, encryption_key, **messaging_overrides
) -> AsyncIterator[Stack]:
    async with clean_db.acquire() as conn:
        await register_dev_user(
            conn,
            phone=USER_PHONE,
            endpoint=devsim_url,
            token=DEV_GATEWAY_TOKEN,
            box=SecretBox(encryption_key),
        )
    async with edge(messaging=messaging_overrides) as api_url:
        yield Stack(api_url, devsim)


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    edge, devsim_url, devsim, clean_db, nats_client, encryption_key
) -> AsyncIterator[Stack]:
    async with running_stack(
        edge, devsim_url, devsim, clean_db, encryption_key
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
        self, edge, devsim_url, devsim, clean_db, nats_client, encryption_key
    ) -> AsyncIterator[Stack]:
        # A day's limit: a minute's could roll over between the messages.
        async with running_stack(
            edge,
            devsim_url,
            devsim,
            clean_db,
            encryption_key,
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
