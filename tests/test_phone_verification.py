"""Proof that a phone number is the user's, end to end over loopback HTTP:

dashboard claim (gateway-api) → code → a Twilio-signed WhatsApp message from
the number carrying it → linked → the assistant (LLM stand-in) answers; and
everything that must not link a number, or reach an assistant, on the way.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest_asyncio
from yourclaw_common.crypto import SecretBox
from yourclaw_common.events import OutboundWhatsApp
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.cli import register_dev_user
from yourclaw_devkit.defaults import (
    DEV_GATEWAY_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_devkit.pytest_plugin import post_whatsapp, sent_to

PUBLIC_BASE_URL = "https://hooks.yourclaw.test"
DEV_SECRET = "d" * 40


class Stack:
    def __init__(self, api_url: str, devsim: httpx.AsyncClient, pool, devsim_url, key):
        self.api = httpx.AsyncClient(base_url=api_url, timeout=10)
        self.devsim = devsim
        self.pool = pool
        self.devsim_url = devsim_url
        self.box = SecretBox(key)

    async def sign_in(self, *, assistant_phone: str | None = None) -> dict[str, str]:
        """A signed-in user; with a READY assistant (and a subscription) when
        `assistant_phone` is given, whose number is left for them to prove."""
        email = f"u-{uuid.uuid4().hex[:8]}@example.com"
        resp = await self.api.post("/api/v1/dev/login", json={"email": email})
        assert resp.status_code == 200, resp.text
        login = resp.json()
        headers = {"Authorization": f"Bearer {login['access_token']}"}
        await self.api.get("/api/v1/users/me", headers=headers)  # creates the user
        if assistant_phone:
            async with self.pool.acquire() as conn:
                await register_dev_user(
                    conn,
                    phone=assistant_phone,
                    endpoint=self.devsim_url,
                    token=DEV_GATEWAY_TOKEN,
                    box=self.box,
                    user_id=uuid.UUID(login["user_id"]),
                    link_phone=False,
                )
        return headers

    async def claim(self, headers: dict[str, str], phone: str) -> httpx.Response:
        return await self.api.post(
            "/api/v1/users/me/phone", json={"phone": phone}, headers=headers
        )

    async def me(self, headers: dict[str, str]) -> dict:
        return (await self.api.get("/api/v1/users/me", headers=headers)).json()

    async def whatsapp(self, phone: str, body: str, *, sid: str | None = None):
        resp = await post_whatsapp(self.api, phone, body, sid=sid)
        assert resp.status_code == 200, resp.text
        return resp

    async def replies_to(self, phone: str) -> list[str]:
        return [m["body"] for m in await sent_to(self.devsim, phone)]

    async def settled(self, phone: str, count: int) -> list[str]:
        async def enough() -> bool:
            return len(await self.replies_to(phone)) >= count

        await eventually(enough, timeout=15)
        await asyncio.sleep(1.0)  # long enough for an extra reply to show up
        return await self.replies_to(phone)

    async def owner(self, phone: str):
        return await self.pool.fetchval(
            "SELECT user_id FROM user_phones WHERE phone_e164 = $1", phone
        )


@pytest_asyncio.fixture(loop_scope="session")
async def stack(edge, devsim_url, devsim, clean_db, encryption_key, nats_client):
    gateway = {
        "yourclaw_env": "dev",
        "dev_login_enabled": "true",
        "dev_login_secret": DEV_SECRET,
        "twilio_whatsapp_number": DEV_WHATSAPP_NUMBER,
    }
    async with edge(gateway=gateway) as api_url:
        running = Stack(api_url, devsim, clean_db, devsim_url, encryption_key)
        running.js = nats_client.jetstream()
        yield running


def code_of(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["code"]


class TestProofOfPhone:
    async def test_the_code_sent_from_the_number_links_it_and_the_assistant_answers(
        self, stack
    ):
        phone = "+15557781001"
        user = await stack.sign_in(assistant_phone=phone)

        resp = await stack.claim(user, "+1 (555) 778-1001")

        body = resp.json()
        assert resp.status_code == 200
        assert body["phone"] == phone
        assert body["verified"] is False
        assert re.fullmatch(r"[0-9]{6}", body["code"])
        digits = DEV_WHATSAPP_NUMBER.removeprefix("whatsapp:+")
        assert body["link"] == f"https://wa.me/{digits}?text={body['code']}"
        assert (await stack.me(user))["phone_verified"] is False

        await stack.whatsapp(phone, f"My code is {body['code']}")

        [confirmation] = await stack.settled(phone, 1)
        assert confirmation.startswith("Your number is linked")
        me = await stack.me(user)
        assert (me["phone"], me["phone_verified"]) == (phone, True)
        await stack.whatsapp(phone, "hello assistant")
        assert (await stack.settled(phone, 2))[1] == "Echo: hello assistant"
        # Six digits from a proven number are just text for the assistant.
        await stack.whatsapp(phone, f"order {body['code']} arrived")
        assert (await stack.settled(phone, 3))[
            2
        ] == f"Echo: order {body['code']} arrived"

    async def test_an_unproven_number_reaches_no_assistant_and_is_told_once(
        self, stack
    ):
        phone = "+15557781002"
        user = await stack.sign_in(assistant_phone=phone)
        code = code_of(await stack.claim(user, phone))
        wrong = f"{(int(code) + 1) % 10**6:06d}"

        for text in ("hello?", f"is it {wrong}", "anyone?"):
            await stack.whatsapp(phone, text)

        replies = await stack.settled(phone, 1)
        assert len(replies) == 1
        assert "send the 6-digit code shown on your dashboard" in replies[0]
        assert not any(r.startswith("Echo:") for r in replies)
        assert await stack.owner(phone) is None
        assert (await stack.me(user))["phone_verified"] is False

    async def test_a_replaced_used_or_expired_code_does_not_verify(self, stack):
        phone = "+15557781003"
        user = await stack.sign_in(assistant_phone=phone)
        first = code_of(await stack.claim(user, phone))
        second = code_of(await stack.claim(user, phone))
        if first != second:
            await stack.whatsapp(phone, first)  # replaced by the second request
            await stack.settled(phone, 1)
            assert await stack.owner(phone) is None

        await stack.whatsapp(phone, second)
        await eventually(lambda: _owned(stack, phone), timeout=10)
        # Used: the user moves to another number; the old code does nothing there.
        other = "+15557781004"
        third = code_of(await stack.claim(user, other))
        await stack.whatsapp(other, second)
        await stack.settled(other, 1)
        assert await stack.owner(other) is None
        # Expired: past its 15 minutes, the right code does nothing either.
        await stack.pool.execute(
            "UPDATE phone_claims SET expires_at = now() - interval '1 second'"
        )
        await stack.whatsapp(other, third)
        await asyncio.sleep(1.0)
        assert await stack.owner(other) is None
        assert await stack.owner(phone) is not None

    async def test_attempts_are_bounded(self, stack):
        phone = "+15557781005"
        user = await stack.sign_in()
        code = code_of(await stack.claim(user, phone))
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for _ in range(5):
            await stack.whatsapp(phone, wrong)

        await stack.whatsapp(phone, code)

        await asyncio.sleep(1.0)
        assert await stack.owner(phone) is None

    async def test_another_account_cannot_take_a_proven_number_nor_tell_it_is_taken(
        self, stack
    ):
        phone = "+15557781006"
        owner = await stack.sign_in(assistant_phone=phone)
        await stack.whatsapp(phone, code_of(await stack.claim(owner, phone)))
        await eventually(lambda: _owned(stack, phone), timeout=10)
        owner_id = await stack.owner(phone)
        eve = await stack.sign_in()

        taken = await stack.claim(eve, phone)
        fresh = await stack.claim(eve, "+15557781007")

        assert taken.status_code == fresh.status_code == 200
        assert taken.json().keys() == fresh.json().keys()
        assert taken.json()["verified"] is fresh.json()["verified"] is False
        # Even the owner's phone sending Eve's code does not move the number.
        await stack.whatsapp(phone, taken.json()["code"])
        await asyncio.sleep(1.0)
        assert await stack.owner(phone) == owner_id
        assert (await stack.me(eve))["phone_verified"] is False
        assert (await stack.me(owner))["phone_verified"] is True

    async def test_the_owner_claiming_their_own_number_is_told_it_is_verified(
        self, stack
    ):
        phone = "+15557781008"
        user = await stack.sign_in()
        await stack.whatsapp(phone, code_of(await stack.claim(user, phone)))
        await eventually(lambda: _owned(stack, phone), timeout=10)

        body = (await stack.claim(user, phone)).json()

        assert body == {
            "phone": phone,
            "verified": True,
            "code": None,
            "link": None,
            "whatsapp_available": True,
        }

    async def test_twilios_retry_of_the_proving_message_is_one_confirmation(
        self, stack
    ):
        phone = "+15557781009"
        user = await stack.sign_in(assistant_phone=phone)
        code = code_of(await stack.claim(user, phone))
        sid = "SM" + uuid.uuid4().hex

        for _ in range(2):
            await stack.whatsapp(phone, code, sid=sid)

        replies = await stack.settled(phone, 1)
        assert len(replies) == 1
        assert replies[0].startswith("Your number is linked")

    async def test_messages_we_send_first_wait_for_the_proof(self, stack):
        phone = "+15557781010"
        user = await stack.sign_in(assistant_phone=phone)
        user_id = uuid.UUID((await stack.me(user))["id"])
        code = code_of(await stack.claim(user, phone))

        await publish(stack.js, OutboundWhatsApp(user_id=user_id, body="Reminder: A"))
        await asyncio.sleep(2.0)
        assert await stack.replies_to(phone) == []

        await stack.whatsapp(phone, code)
        [confirmation] = await stack.settled(phone, 1)
        assert confirmation.startswith("Your number is linked")
        # Inside the 24-hour window the proof opened: free-form text.
        await publish(stack.js, OutboundWhatsApp(user_id=user_id, body="Reminder: B"))
        assert (await stack.settled(phone, 2))[1:] == ["Reminder: B"]

    async def test_garbage_gets_a_sentence(self, stack):
        user = await stack.sign_in()

        resp = await stack.claim(user, "call me maybe")

        assert resp.status_code == 422
        assert resp.json()["code"] == "INVALID_PHONE"
        assert resp.json()["detail"].endswith(".")


async def _owned(stack: Stack, phone: str) -> bool:
    return await stack.owner(phone) is not None
