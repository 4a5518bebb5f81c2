"""The Twilio stand-in as an SMS number: sends from it, Twilio's keyword
handling (STOP blocks sends with 21610 until START), and a phone texting it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from twilio.request_validator import RequestValidator
from yourclaw_devkit.cli import SMS_WEBHOOK_PATH, main
from yourclaw_devkit.defaults import DEV_SMS_NUMBER
from yourclaw_devkit.defaults import DEV_TWILIO_ACCOUNT_SID as SID
from yourclaw_devkit.defaults import DEV_TWILIO_AUTH_TOKEN as TOKEN
from yourclaw_devkit.devsim import DevsimSettings, running_devsim
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.twilio_sim import inbound_sms_form, sms_keyword

MESSAGES_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
AUTH = (SID, TOKEN)
PHONE = "+15551234567"


async def send_sms(
    client: httpx.AsyncClient, body: str = "hi", *, from_: str = DEV_SMS_NUMBER
) -> httpx.Response:
    data = {"To": PHONE, "From": from_, "Body": body}
    return await client.post(MESSAGES_PATH, data=data, auth=AUTH)


class TestInboundSmsForm:
    def test_has_plain_numbers_and_validates_with_twilio(self):
        form = inbound_sms_form(
            phone=PHONE, body="hello", to=DEV_SMS_NUMBER, account_sid=SID
        )

        assert (form["From"], form["To"]) == (PHONE, DEV_SMS_NUMBER)
        assert form["MessageSid"].startswith("SM")
        assert form["NumSegments"] == "1"
        assert "ProfileName" not in form
        url = "https://hooks.yourclaw.test/api/v1/webhooks/twilio/sms"
        validator = RequestValidator(TOKEN)
        assert validator.validate(url, form, validator.compute_signature(url, form))

    def test_media_makes_an_mms(self):
        form = inbound_sms_form(
            phone=PHONE,
            body="",
            to=DEV_SMS_NUMBER,
            account_sid=SID,
            media_urls=["https://e.x/a.png"],
        )

        assert form["MessageSid"].startswith("MM")
        assert (form["NumMedia"], form["MediaContentType0"]) == ("1", "image/png")


class TestSmsKeyword:
    @pytest.mark.parametrize(
        ("body", "kind"),
        [
            ("STOP", "out"),
            (" stop ", "out"),
            ("Unsubscribe", "out"),
            ("stopall", "out"),
            ("START", "in"),
            ("unstop", "in"),
            ("HELP", "help"),
            ("stop please", None),
            ("hello", None),
        ],
    )
    def test_one_word_any_case(self, body, kind):
        assert sms_keyword(body) == kind


@pytest.fixture
async def receiver():
    received: list[tuple[str, dict[str, str], str]] = []
    app = FastAPI()

    @app.post("/sms")
    async def sms(request: Request) -> PlainTextResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        received.append((str(request.url), form, request.headers["x-twilio-signature"]))
        return PlainTextResponse("<Response></Response>", media_type="text/xml")

    async with running_app(app) as url:
        yield url, received


@pytest.fixture
async def sms_devsim(receiver):
    url, _ = receiver
    settings = DevsimSettings(
        _env_file=None,
        twilio_sms_number=DEV_SMS_NUMBER,
        devsim_twilio_sms_webhook_url=f"{url}/sms",
        devsim_status_callbacks=False,
    )
    async with (
        running_devsim(settings) as devsim_url,
        httpx.AsyncClient(base_url=devsim_url, timeout=10) as client,
    ):
        yield client


class TestSmsNumber:
    async def test_a_send_from_our_number_is_taken(self, sms_devsim):
        response = await send_sms(sms_devsim, "a" * 161)

        assert response.status_code == 201
        assert response.json()["from"] == DEV_SMS_NUMBER
        assert response.json()["num_segments"] == "2"

    async def test_a_send_from_another_number_is_21606(self, sms_devsim):
        response = await send_sms(sms_devsim, from_="+14155550100")

        assert response.status_code == 400
        assert response.json()["code"] == 21606

    async def test_a_phone_texting_reaches_the_webhook_signed(
        self, sms_devsim, receiver
    ):
        _, received = receiver

        response = await sms_devsim.post(
            "/_devsim/twilio/sms", json={"from": PHONE, "body": "hello"}
        )

        assert response.status_code == 200, response.text
        assert response.json()["keyword"] is None
        ((url, form, signature),) = received
        assert (form["From"], form["To"], form["Body"]) == (
            PHONE,
            DEV_SMS_NUMBER,
            "hello",
        )
        assert RequestValidator(TOKEN).validate(url, form, signature)

    async def test_stop_blocks_sends_until_start(self, sms_devsim, receiver):
        _, received = receiver

        await sms_devsim.post(
            "/_devsim/twilio/sms", json={"from": PHONE, "body": "STOP"}
        )
        blocked = await send_sms(sms_devsim)
        await sms_devsim.post(
            "/_devsim/twilio/sms", json={"from": PHONE, "body": "start"}
        )
        allowed = await send_sms(sms_devsim)

        assert blocked.status_code == 400
        assert blocked.json()["code"] == 21610
        assert allowed.status_code == 201
        # Each keyword still reached the webhook, and got Twilio's own reply.
        assert [form["Body"] for _, form, _ in received] == ["STOP", "start"]
        listed = (
            await sms_devsim.get(MESSAGES_PATH, params={"To": PHONE}, auth=AUTH)
        ).json()["messages"]
        replies = [m for m in reversed(listed) if m["direction"] == "outbound-reply"]
        assert [m["body"].split(".")[0] for m in replies] == [
            "You have successfully been unsubscribed",
            "You have successfully been re-subscribed to messages from this number",
        ]

    async def test_sms_needs_a_configured_number(self, devsim):
        response = await devsim.post(
            "/_devsim/twilio/sms", json={"from": PHONE, "body": "hi"}
        )

        assert response.status_code == 409


class TestSendSmsCommand:
    async def test_send_sms_posts_a_signed_sms_and_prints_the_reply(
        self, devsim, devsim_url, monkeypatch, capsys
    ):
        public = "https://hooks.yourclaw.test"
        seen: list[dict[str, str]] = []
        app = FastAPI()

        @app.post(SMS_WEBHOOK_PATH)
        async def webhook(request: Request) -> PlainTextResponse:
            form = {k: str(v) for k, v in (await request.form()).items()}
            signature = request.headers.get("x-twilio-signature", "")
            assert RequestValidator(TOKEN).validate(
                public + SMS_WEBHOOK_PATH, form, signature
            )
            seen.append(form)
            async with httpx.AsyncClient(base_url=devsim_url) as client:
                answer = await client.post(
                    MESSAGES_PATH,
                    data={"To": form["From"], "From": form["To"], "Body": "pong"},
                    auth=AUTH,
                )
                answer.raise_for_status()
            return PlainTextResponse("<Response></Response>", media_type="text/xml")

        for name, value in {
            "TWILIO_API_BASE": devsim_url,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_SMS_NUMBER": DEV_SMS_NUMBER,
            "PUBLIC_BASE_URL": public,
        }.items():
            monkeypatch.setenv(name, value)
        async with running_app(app) as gateway_url:
            monkeypatch.setenv("API_URL", gateway_url)
            code = await asyncio.to_thread(
                main, ["send", "--sms", "--from", PHONE, "--timeout", "10", "ping"]
            )

        assert code == 0
        ((form),) = seen
        assert (form["From"], form["To"], form["Body"]) == (
            PHONE,
            DEV_SMS_NUMBER,
            "ping",
        )
        assert "<- pong" in capsys.readouterr().out
