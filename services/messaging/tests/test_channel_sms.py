"""SMS through Twilio, against the Twilio stand-in: replies from our SMS number
as plain text in ≤ 1,600-character parts, free-form messages we send first,
MMS images, STOP/START/HELP (over the rate limits too), and Twilio's 21610."""

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

from .conftest import PHONE, clear_of_a_minute_boundary, llm_requests


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
            ("~gone~ and ~5 min", "gone and ~5 min"),
            ("*see* https://e.x/_a_*b*", "see https://e.x/_a_*b*"),
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


async def answered(js, clean_db, body: str) -> dict:
    """PHONE texts `body`; its reply (or notice) once stored."""
    message = sms(body)
    await publish(js, message)
    await eventually(lambda: outbound_row(clean_db, message.message_sid), timeout=10)
    return await outbound_row(clean_db, message.message_sid)


async def proactive(js, clean_db, user_id: uuid.UUID, body: str) -> dict:
    """A message we send first to the user, by SMS (preferred), once stored."""
    await clean_db.execute(
        "UPDATE users SET preferred_channel = 'sms' WHERE id = $1", user_id
    )
    event = OutboundWhatsApp(user_id=user_id, body=body)
    await publish(js, event)
    key = f"out:{event.event_id}"
    await eventually(lambda: outbound_row(clean_db, key), timeout=10)
    return await outbound_row(clean_db, key)


async def counted_this_minute(clean_db, user_id: uuid.UUID) -> int:
    """The user's messages counted against the per-minute limit in its window."""
    return await clean_db.fetchval(
        "SELECT count FROM rate_windows WHERE user_id = $1 AND scope = 'minute' "
        "ORDER BY window_start DESC LIMIT 1",
        user_id,
    )


async def at_the_minute_limit(sms_user, js, clean_db) -> uuid.UUID:
    """PHONE's user, allowed 1 message a minute, and that message sent."""
    await clear_of_a_minute_boundary()
    user_id = await sms_user(rate_limit_msg_per_min=1)
    assert (await answered(js, clean_db, "hi"))["kind"] == "reply"
    return user_id


class TestKeywordsOverTheLimits:
    """Carriers' keywords work for a sender over the rate limits, and do not
    count against them; any other message is limited as before."""

    async def test_stop_then_start_over_the_minute_limit(
        self, sms_user, js, devsim, clean_db
    ):
        user_id = await at_the_minute_limit(sms_user, js, clean_db)
        over = await answered(js, clean_db, "again")
        assert over["kind"] == "notice"  # an ordinary message: the limit notice

        stop = await answered(js, clean_db, "STOP")

        assert (stop["kind"], stop["status"]) == ("reply", "SKIPPED")
        await opted_out(clean_db)
        assert await counted_this_minute(clean_db, user_id) == 2
        # A message we send first does not go to the opted-out number.
        sent_first = await proactive(js, clean_db, user_id, "Reminder: stretch")
        assert sent_first["error_code"] == "SMS_OPTED_OUT"

        start = await answered(js, clean_db, "start")

        assert (start["kind"], start["status"]) == ("reply", "SKIPPED")
        assert not await clean_db.fetchval("SELECT count(*) FROM sms_opt_outs")
        assert await counted_this_minute(clean_db, user_id) == 2
        # Still over the limit: one notice a window, so this one is SKIPPED.
        after = await answered(js, clean_db, "one more")
        assert (after["kind"], after["status"]) == ("notice", "SKIPPED")
        hi, notice = await sms_settle(devsim, 2)
        assert hi["body"] == "Echo: hi"
        assert "limit of 1 message per minute" in notice["body"]
        assert len(await llm_requests(devsim)) == 1

    async def test_help_at_the_limit_is_answered_and_not_counted(
        self, sms_user, js, devsim, clean_db
    ):
        user_id = await at_the_minute_limit(sms_user, js, clean_db)

        assert (await answered(js, clean_db, "HELP"))["kind"] == "reply"
        # HELP did not count: this is the first message over the limit.
        assert (await answered(js, clean_db, "again"))["kind"] == "notice"

        hi, help_, notice = await sms_settle(devsim, 3)
        assert hi["body"] == "Echo: hi"
        assert help_["body"].startswith("YourClaw: your AI assistant by text.")
        assert "limit of 1 message per minute" in notice["body"]
        assert await counted_this_minute(clean_db, user_id) == 2

    async def test_yes_is_exempt_only_from_an_opted_out_number(
        self, sms_user, js, devsim, clean_db
    ):
        user_id = await at_the_minute_limit(sms_user, js, clean_db)

        # From a number that did not opt out, YES is a message: limited.
        assert (await answered(js, clean_db, "yes"))["kind"] == "notice"
        await answered(js, clean_db, "stop")
        await opted_out(clean_db)
        # From an opted-out one, it opts back in, over the limit as it is.
        assert (await answered(js, clean_db, "Yes"))["kind"] == "reply"

        assert not await clean_db.fetchval("SELECT count(*) FROM sms_opt_outs")
        assert await counted_this_minute(clean_db, user_id) == 2
        assert len(await sms_settle(devsim, 2)) == 2


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
            "INSERT INTO sms_opt_outs (phone_e164) VALUES ($1)", PHONE
        )

        row = await proactive(js, clean_db, user_id, "Reminder: stretch")

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
