"""The WhatsApp simulator page and Twilio's delivery status, through the whole
stack over real loopback HTTP:

simulator page → signed webhook → gateway-api → JetStream → messaging → LLM
stand-in → Twilio stand-in → signed status callbacks → gateway-api → messaging.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import jwt
import pytest_asyncio
from yourclaw_common.crypto import SecretBox
from yourclaw_common.embedded import free_port
from yourclaw_common.events import OutboundWhatsApp
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.cli import register_dev_user
from yourclaw_devkit.defaults import (
    DEV_GATEWAY_TOKEN,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
)
from yourclaw_devkit.devsim import DevsimSettings, running_devsim
from yourclaw_devkit.pytest_plugin import messaging_values
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.signing import twilio_signature
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.auth import AUDIENCE, DEV_ISSUER
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_messaging.app import run as run_messaging
from yourclaw_messaging.settings import MessagingSettings

PHONE = "+15557771234"
DEV_LOGIN_SECRET = "simulator-dev-login-secret-0123456789"
TEMPLATE = "HXsim000000000000000000000000notify"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass
class Stack:
    devsim: httpx.AsyncClient
    user_id: object
    api_url: str

    async def api_messages(self) -> list[dict]:
        """`GET /api/v1/messages` as the registered user, newest first."""
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": DEV_ISSUER,
                "aud": AUDIENCE,
                "sub": str(self.user_id),
                "role": "authenticated",
                "iat": now,
                "exp": now + 600,
            },
            DEV_LOGIN_SECRET,
            algorithm="HS256",
        )
        async with httpx.AsyncClient(base_url=self.api_url, timeout=10) as api:
            resp = await api.get(
                "/api/v1/messages", headers={"Authorization": f"Bearer {token}"}
            )
        resp.raise_for_status()
        return list(resp.json()["messages"])

    async def thread(self) -> list[dict]:
        resp = await self.devsim.get(
            "/_devsim/whatsapp/thread", params={"phone": PHONE}
        )
        resp.raise_for_status()
        return list(resp.json()["messages"])


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    service_env, clean_db, nats_client, encryption_key
) -> AsyncIterator[Stack]:
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = {k.lower(): v for k, v in service_env.items()}
    devsim_settings = DevsimSettings(
        _env_file=None,
        twilio_account_sid=DEV_TWILIO_ACCOUNT_SID,
        twilio_auth_token=DEV_TWILIO_AUTH_TOKEN,
        devsim_twilio_webhook_url=f"{api_url}/api/v1/webhooks/twilio/whatsapp",
        twilio_template_notification=TEMPLATE,
    )
    async with running_devsim(devsim_settings) as devsim_url:
        gateway = GatewaySettings(
            _env_file=None,
            **env,
            public_base_url=api_url,
            twilio_auth_token=DEV_TWILIO_AUTH_TOKEN,
            yourclaw_env="dev",
            dev_login_enabled=True,
            dev_login_secret=DEV_LOGIN_SECRET,
        )
        messaging = MessagingSettings(
            _env_file=None,
            **messaging_values(
                service_env,
                devsim_url,
                twilio_status_callback_url=f"{api_url}/api/v1/webhooks/twilio/status",
                twilio_template_notification=TEMPLATE,
            ),
        )
        async with clean_db.acquire() as conn:
            user = await register_dev_user(
                conn,
                phone=PHONE,
                endpoint=devsim_url,
                token=DEV_GATEWAY_TOKEN,
                box=SecretBox(encryption_key),
            )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_messaging(messaging, stop))
        try:
            async with (
                running_app(create_app(gateway), port=api_port),
                httpx.AsyncClient(base_url=devsim_url, timeout=10) as client,
            ):
                yield Stack(client, user.user_id, api_url)
        finally:
            stop.set()
            await worker


async def until(predicate, timeout=15):
    await eventually(predicate, timeout=timeout)


class TestWhatsAppSimulator:
    async def test_chat_from_the_page_shows_the_reply_delivered(self, stack, clean_db):
        page = await stack.devsim.get("/_devsim/whatsapp")
        assert page.status_code == 200
        assert "WhatsApp simulator" in page.text

        sent = await stack.devsim.post(
            "/_devsim/whatsapp/send", json={"from": PHONE, "body": "hi from the page"}
        )
        assert sent.status_code == 200

        async def delivered():
            thread = await stack.thread()
            return len(thread) == 2 and thread[1]["status"] == "delivered"

        await until(delivered)
        first, reply = await stack.thread()
        assert (first["direction"], first["body"]) == ("in", "hi from the page")
        assert (reply["direction"], reply["body"]) == ("out", "Echo: hi from the page")
        # Twilio's signed status callbacks came back through gateway-api.
        await until(
            lambda: clean_db.fetchval(
                "SELECT delivery_status = 'delivered' FROM messages WHERE twilio_sid = $1",
                reply["sid"],
            )
        )

    async def test_read_receipts_show_in_the_api_and_never_go_back(
        self, stack, clean_db
    ):
        await stack.devsim.post(
            "/_devsim/whatsapp/send", json={"from": PHONE, "body": "tick tock"}
        )

        async def stored(status):
            found = await stack.api_messages()
            return found if found and found[0]["delivery_status"] == status else None

        (reply, inbound) = await eventually(lambda: stored("delivered"), timeout=15)
        assert reply["body"] == "Echo: tick tock"
        assert reply["status"] == "SENT"
        assert inbound["delivery_status"] is None

        # The simulated user opens the chat: WhatsApp's read receipt.
        read = await stack.devsim.post(
            "/_devsim/whatsapp/read", params={"phone": PHONE}
        )
        assert read.json() == {"read": 1}
        await eventually(lambda: stored("read"), timeout=15)

        # A late "delivered" (callbacks can arrive out of order) changes nothing.
        (sent,) = [
            m
            for m in (await stack.devsim.get("/_devsim/messages")).json()["messages"]
            if m["body"] == "Echo: tick tock"
        ]
        url = f"{stack.api_url}/api/v1/webhooks/twilio/status"
        query = sent["status_callback"].partition("?")[2]
        params = {
            "AccountSid": DEV_TWILIO_ACCOUNT_SID,
            "MessageSid": sent["sid"],
            "MessageStatus": "delivered",
        }
        signed = f"{url}?{query}" if query else url
        late = await stack.devsim.post(
            signed,
            data=params,
            headers={
                "X-Twilio-Signature": twilio_signature(
                    signed, params, DEV_TWILIO_AUTH_TOKEN
                )
            },
        )
        assert late.status_code == 200
        await asyncio.sleep(1.0)
        assert (await stack.api_messages())[0]["delivery_status"] == "read"

    async def test_image_from_the_page_reaches_the_assistant(self, stack):
        sent = await stack.devsim.post(
            "/_devsim/whatsapp/send",
            json={
                "from": PHONE,
                "body": "what's this?",
                "image": base64.b64encode(PNG).decode(),
                "image_type": "image/png",
            },
        )
        assert sent.status_code == 200

        async def replied():
            return len(await stack.thread()) == 2

        await until(replied)
        assert (await stack.thread())[1]["body"] == "Echo: what's this? [image]"

    async def test_outside_the_window_the_page_shows_the_template(
        self, stack, clean_db, js
    ):
        # The user never wrote: the 24-hour window is closed.
        await publish(js, OutboundWhatsApp(user_id=stack.user_id, body="Reminder: gym"))

        async def arrived():
            return len(await stack.thread()) == 1

        await until(arrived)
        (msg,) = await stack.thread()
        assert msg["template"] == TEMPLATE
        assert msg["direction"] == "out"
        # Rendered as Twilio shows it, not as its sid and variables.
        assert msg["body"] == "Your assistant has a message for you: Reminder: gym"

    async def test_bad_phone_number_is_refused_clearly(self, stack):
        resp = await stack.devsim.post(
            "/_devsim/whatsapp/send", json={"from": "12345", "body": "x"}
        )
        assert resp.status_code == 400
        assert "E.164" in resp.json()["detail"]

    async def test_window_closed_at_twilio_falls_back_to_the_template(
        self, stack, clean_db
    ):
        """Twilio accepts a free-form message, then reports 63016 in its signed
        status callback: messaging sends the approved template instead."""
        await stack.devsim.post(
            "/_devsim/twilio/faults",
            json={"to": f"whatsapp:{PHONE}", "code": 63016, "asynchronous": True},
        )
        sent = await stack.devsim.post(
            "/_devsim/whatsapp/send", json={"from": PHONE, "body": "late answer"}
        )
        assert sent.status_code == 200

        async def fell_back():
            return len(await stack.thread()) == 3

        await until(fell_back)
        _, refused, template = await stack.thread()
        assert (refused["body"], refused["status"]) == ("Echo: late answer", "failed")
        assert template["template"] == TEMPLATE
        assert "Echo: late answer" in template["body"]
