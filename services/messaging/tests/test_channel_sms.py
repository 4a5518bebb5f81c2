"""SMS through Twilio, against the Twilio stand-in: replies from our SMS number
as plain text in ≤ 1,600-character parts, free-form messages we send first,
MMS images, STOP/START/HELP, and Twilio's 21610."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from yourclaw_common.events import (
    InboundMedia,
    InboundSms,
    InboundWhatsAppStatus,
    OutboundWhatsApp,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.defaults import DEV_SMS_NUMBER, DEV_TWILIO_ACCOUNT_SID
from yourclaw_devkit.llm_sim import build_reply
from yourclaw_messaging.channels.sms import plain_text

from .conftest import PHONE, llm_requests


def sms(body: str, *, sid: str | None = None, media=()) -> InboundSms:
    """What gateway-api publishes for an SMS from PHONE."""
    return InboundSms(
        message_sid=sid or f"SM{uuid.uuid4().hex}",
        account_sid=DEV_TWILIO_ACCOUNT_SID,
        from_number=PHONE,
        to_number=DEV_SMS_NUMBER,
        body=body,
        num_media=len(media),
        media=tuple(media),
    )


async def sms_sent(devsim) -> list[dict]:
    """What the Twilio stand-in was asked to send to PHONE by SMS, oldest first."""
    resp = await devsim.get("/_devsim/messages", params={"to": PHONE})
    resp.raise_for_status()
    return list(reversed(resp.json()["messages"]))


async def sms_settle(devsim, count: int, *, wait: float = 1.0) -> list[dict]:
    async def enough():
        return len(await sms_sent(devsim)) >= count

    await eventually(enough, timeout=15)
    await asyncio.sleep(wait)
    return await sms_sent(devsim)


@pytest.fixture
def sms_user(register, start_messaging, js):
    """PHONE's user, registered, and a messaging with SMS on."""

    async def start(**overrides) -> uuid.UUID:
        user_id = await register(PHONE)
        await start_messaging(twilio_sms_number=DEV_SMS_NUMBER, **overrides)
        return user_id

    return start


async def opted_out(clean_db) -> None:
    """Until PHONE is recorded as opted out."""
    await eventually(
        lambda: clean_db.fetchval(
            "SELECT count(*) FROM sms_opt_outs WHERE phone_e164 = $1", PHONE
        ),
        timeout=10,
    )


async def outbound_row(clean_db, key: str) -> dict:
    row = await clean_db.fetchrow(
        "SELECT channel, phone_e164, status, kind, error_code, body FROM messages "
        "WHERE direction = 'OUTBOUND' AND in_reply_to = $1 AND part = 0",
        key,
    )
    return dict(row) if row else {}


class TestPlainText:
    @pytest.mark.parametrize(
        ("text", "plain"),
        [
            ("**Bold** and *it* and _x_", "Bold and it and x"),
            (
                "snake_case_name and 2*3*4 and a * b",
                "snake_case_name and 2*3*4 and a * b",
            ),
            ("# Title\n* one\n+ two\n- three", "Title\n- one\n- two\n- three"),
            ("see [docs](https://e.x/a)", "see docs (https://e.x/a)"),
            ("[https://e.x](https://e.x)", "https://e.x"),
            ("```python\nprint(1)\n```\nuse `x`", "print(1)\nuse x"),
            ("\u201cHi\u201d \u2014 it\u2019s\u2026", '"Hi" - it\'s...'),
            ("~~gone~~ back", "gone back"),
        ],
    )
    def test_markdown_that_reads_badly_is_dropped(self, text, plain):
        assert plain_text(text) == plain


class TestReplies:
    async def test_an_sms_is_answered_by_sms_in_plain_text(
        self, sms_user, js, devsim, clean_db
    ):
        await sms_user()
        message = sms("**hello** from my phone")

        await publish(js, message)

        (sent,) = await sms_settle(devsim, 1)
        assert (sent["from"], sent["to"]) == (DEV_SMS_NUMBER, PHONE)
        assert sent["body"] == "Echo: hello from my phone"
        assert await outbound_row(clean_db, message.message_sid) | {"body": ""} == {
            "channel": "sms",
            "phone_e164": PHONE,
            "status": "SENT",
            "kind": "reply",
            "error_code": None,
            "body": "",
        }
        # Nothing went to the same number over WhatsApp.
        whatsapp = await devsim.get(
            "/_devsim/messages", params={"to": f"whatsapp:{PHONE}"}
        )
        assert whatsapp.json()["messages"] == []

    async def test_a_long_reply_is_split_at_sentences_into_1600_characters(
        self, sms_user, js, devsim
    ):
        await sms_user()

        await publish(js, sms("essay please #long=3500"))

        sent = await sms_settle(devsim, 3)
        assert len(sent) == 3
        assert all(len(m["body"]) <= 1600 for m in sent)
        assert all(m["body"].endswith(".") for m in sent[:-1])
        full = build_reply("essay please #long=3500")
        assert " ".join(m["body"] for m in sent).split() == full.split()

    async def test_an_mms_image_reaches_the_assistant(self, sms_user, js, devsim):
        await sms_user()
        upload = await devsim.post(
            "/_devsim/media",
            content=b"\x89PNG\r\n\x1a\n" + b"0" * 64,
            headers={"content-type": "image/png"},
        )
        url = upload.json()["url"]

        await publish(
            js,
            sms(
                "what is this?", media=[InboundMedia(url=url, content_type="image/png")]
            ),
        )

        (sent,) = await sms_settle(devsim, 1)
        assert sent["body"].startswith("Echo: what is this?")
        (request,) = await llm_requests(devsim)
        assert "data:image/png;base64," in str(request["body"]["messages"])

    async def test_status_callbacks_follow_an_sms(self, sms_user, js, devsim, clean_db):
        # Nothing listens there; the stand-in's callbacks fail quietly.
        callback = "http://127.0.0.1:9/api/v1/webhooks/twilio/status"
        await sms_user(twilio_status_callback_url=callback)

        await publish(js, sms("track me"))

        (sent,) = await sms_settle(devsim, 1, wait=0)
        message_id = await eventually(
            lambda: clean_db.fetchval(
                "SELECT id FROM messages WHERE twilio_sid = $1", sent["sid"]
            ),
            timeout=10,
        )
        assert sent["status_callback"] == f"{callback}?message_id={message_id}"
        await publish(
            js,
            InboundWhatsAppStatus(message_sid=sent["sid"], message_status="delivered"),
        )
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT delivery_status = 'delivered' FROM messages WHERE id = $1",
                message_id,
            ),
            timeout=10,
        )


class TestKeywords:
    async def test_stop_records_the_opt_out_and_sends_nothing(
        self, sms_user, js, devsim, clean_db
    ):
        await sms_user()
        stop = sms("Stop")

        await publish(js, stop)

        await opted_out(clean_db)
        await eventually(lambda: outbound_row(clean_db, stop.message_sid), timeout=10)
        assert (await outbound_row(clean_db, stop.message_sid))["status"] == "SKIPPED"
        await asyncio.sleep(0.5)
        assert await sms_sent(devsim) == []
        assert await llm_requests(devsim) == []

    async def test_an_opted_out_number_reaches_no_assistant_until_start(
        self, sms_user, js, devsim, clean_db
    ):
        await sms_user()
        await clean_db.execute(
            "INSERT INTO sms_opt_outs (phone_e164) VALUES ($1)", PHONE
        )
        ignored, start, again = sms("are you there?"), sms("START"), sms("now?")

        await publish(js, ignored)
        await eventually(
            lambda: outbound_row(clean_db, ignored.message_sid), timeout=10
        )
        await publish(js, start)
        await eventually(lambda: outbound_row(clean_db, start.message_sid), timeout=10)
        await publish(js, again)

        (sent,) = await sms_settle(devsim, 1)
        assert sent["body"] == "Echo: now?"
        assert (await outbound_row(clean_db, ignored.message_sid))[
            "status"
        ] == "SKIPPED"
        assert (await outbound_row(clean_db, start.message_sid))["status"] == "SKIPPED"
        assert not await clean_db.fetchval("SELECT count(*) FROM sms_opt_outs")
        assert len(await llm_requests(devsim)) == 1

    async def test_yes_opts_in_only_an_opted_out_number(
        self, sms_user, js, devsim, clean_db
    ):
        await sms_user()

        await publish(js, sms("yes"))

        (sent,) = await sms_settle(devsim, 1)
        assert sent["body"] == "Echo: yes"

    async def test_help_answers_a_short_help_text(self, sms_user, js, devsim):
        await sms_user()

        await publish(js, sms("help"))

        (sent,) = await sms_settle(devsim, 1)
        assert sent["body"].startswith("YourClaw: your AI assistant by text.")
        assert "https://app.yourclaw.test" in sent["body"]
        assert "Reply STOP to opt out" in sent["body"]
        assert await llm_requests(devsim) == []


class TestProactive:
    async def test_a_message_we_send_first_is_free_form_sms(
        self, sms_user, js, devsim, clean_db
    ):
        user_id = await sms_user()
        await clean_db.execute(
            "UPDATE users SET preferred_channel = 'sms' WHERE id = $1", user_id
        )
        event = OutboundWhatsApp(user_id=user_id, body="Reminder: *stretch*")

        await publish(js, event)

        (sent,) = await sms_settle(devsim, 1)
        assert (sent["from"], sent["body"], sent["content_sid"]) == (
            DEV_SMS_NUMBER,
            "Reminder: stretch",
            None,
        )

    async def test_nothing_is_sent_to_an_opted_out_number(
        self, sms_user, js, devsim, clean_db
    ):
        user_id = await sms_user()
        await clean_db.execute(
            "UPDATE users SET preferred_channel = 'sms' WHERE id = $1", user_id
        )
        await clean_db.execute(
            "INSERT INTO sms_opt_outs (phone_e164) VALUES ($1)", PHONE
        )
        event = OutboundWhatsApp(user_id=user_id, body="Reminder: stretch")

        await publish(js, event)

        key = f"out:{event.event_id}"
        await eventually(lambda: outbound_row(clean_db, key), timeout=10)
        row = await outbound_row(clean_db, key)
        assert (row["channel"], row["status"], row["error_code"]) == (
            "sms",
            "SKIPPED",
            "SMS_OPTED_OUT",
        )
        await asyncio.sleep(0.5)
        assert await sms_sent(devsim) == []


class TestTwilioOptOut:
    async def test_21610_fails_the_message_and_records_the_opt_out(
        self, sms_user, js, devsim, clean_db
    ):
        await sms_user()
        resp = await devsim.post(
            "/_devsim/twilio/faults", json={"to": PHONE, "code": 21610, "times": 5}
        )
        resp.raise_for_status()
        message = sms("hello?")

        await publish(js, message)

        await opted_out(clean_db)
        row = await outbound_row(clean_db, message.message_sid)
        assert (row["status"], row["error_code"]) == ("FAILED", "21610")
        (await devsim.delete("/_devsim/twilio/faults")).raise_for_status()
