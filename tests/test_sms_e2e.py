"""An SMS answered by SMS, with the real OpenClaw gateway:

a Twilio-signed SMS → gateway-api's SMS webhook → `inbound.sms` → messaging →
the user's gateway → the model (LLM stand-in, through llm-proxy) → the reply
sent from our SMS number to the phone, as plain SMS. Then STOP: recorded, and
nothing more is sent by SMS. Slow: one gateway boot (~1.3 GB).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from yourclaw_common.events import AssistantProvisionRequested
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, subscribed_user
from yourclaw_devkit.cli import SMS_WEBHOOK_PATH, sign_webhook
from yourclaw_devkit.defaults import (
    DEV_SMS_NUMBER,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
)
from yourclaw_devkit.pytest_plugin import MESSAGES_PATH
from yourclaw_devkit.twilio_sim import inbound_sms_form

from .conftest import stack_with_api, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+15557776543"


class SmsStack:
    def __init__(self, stack, api: httpx.AsyncClient, public: str):
        self.stack = stack
        self.api = api
        self.public = public

    async def text(self, body: str) -> str:
        """An SMS from PHONE, as Twilio posts it to our SMS webhook; its sid."""
        form = inbound_sms_form(
            phone=PHONE,
            body=body,
            to=DEV_SMS_NUMBER,
            account_sid=DEV_TWILIO_ACCOUNT_SID,
        )
        _, signature = sign_webhook(
            self.public, form, DEV_TWILIO_AUTH_TOKEN, path=SMS_WEBHOOK_PATH
        )
        response = await self.api.post(
            SMS_WEBHOOK_PATH, data=form, headers={"X-Twilio-Signature": signature}
        )
        assert response.status_code == 200, response.text
        return form["MessageSid"]

    async def sms_sent(self) -> list[dict]:
        """What was sent to PHONE by SMS (not WhatsApp), oldest first."""
        resp = await self.stack.devsim.get(
            MESSAGES_PATH,
            params={"To": PHONE},
            auth=(DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN),
        )
        resp.raise_for_status()
        return list(reversed(resp.json()["messages"]))


@pytest_asyncio.fixture(loop_scope="session")
async def sms(service_env, gateway_stack) -> AsyncIterator[SmsStack]:
    async with (
        stack_with_api(
            service_env,
            gateway_stack,
            gateway={
                "twilio_auth_token": DEV_TWILIO_AUTH_TOKEN,
                "twilio_sms_number": DEV_SMS_NUMBER,
            },
            messaging={"twilio_sms_number": DEV_SMS_NUMBER},
        ) as (stack, url),
        httpx.AsyncClient(base_url=url, timeout=10) as api,
    ):
        yield SmsStack(stack, api, url)


class TestSmsEndToEnd:
    async def test_an_sms_is_answered_by_sms(self, sms, clean_db):
        user_id = await subscribed_user(clean_db, phone=PHONE)
        await publish(
            sms.stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        await wait_ready(clean_db, user_id)

        await sms.text("hello from a text message")

        async def answered():
            sent = await sms.sms_sent()
            return sent or None

        (reply,) = await eventually(answered, timeout=120, interval=0.3)
        assert reply["from"] == DEV_SMS_NUMBER
        assert reply["body"].startswith("Echo: hello from a text message")
        # Messaging stores the sid once Twilio has answered the send, a moment
        # after the stand-in has the message.
        row = await eventually(
            lambda: clean_db.fetchrow(
                "SELECT channel, phone_e164, status, kind FROM messages "
                "WHERE direction = 'OUTBOUND' AND twilio_sid = $1",
                reply["sid"],
            ),
            timeout=30,
        )
        assert dict(row) == {
            "channel": "sms",
            "phone_e164": PHONE,
            "status": "SENT",
            "kind": "reply",
        }

        # STOP: recorded; Twilio itself confirms, so we send nothing, and
        # nothing from the number reaches the assistant any more.
        await sms.text("STOP")
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT count(*) FROM sms_opt_outs WHERE phone_e164 = $1", PHONE
            ),
            timeout=30,
        )
        ignored = await sms.text("are you there?")
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT status = 'SKIPPED' FROM messages WHERE in_reply_to = $1",
                ignored,
            ),
            timeout=30,
        )
        assert len(await sms.sms_sent()) == 1
