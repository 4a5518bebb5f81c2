"""Messages we send first: automations' results, the ready and restart
notices, the usage notices; each sent once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from yourclaw_common.db import create_pool
from yourclaw_common.events import (
    AssistantReady,
    AssistantRestarted,
    InboundWhatsAppStatus,
    OutboundWhatsApp,
    UsageAllowanceWarning,
    UsageCapReached,
)
from yourclaw_common.nats import publish
from yourclaw_devkit.defaults import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_messaging.channels.whatsapp import Templates, WhatsAppChannel
from yourclaw_messaging.errors import SendUnconfirmed
from yourclaw_messaging.limits import Limits
from yourclaw_messaging.proactive import Proactive
from yourclaw_messaging.twilio import TwilioClient

from .conftest import (
    PHONE,
    TEMPLATE_NOTIFY,
    TEMPLATE_READY,
    inbound,
    llm_requests,
    replies_settle,
    settle,
)


async def wrote(clean_db, user_id, hours_ago: float, channel: str = "whatsapp"):
    """The user wrote `hours_ago` on `channel`: their message and the
    conversation's last inbound time, as messaging records them."""
    await clean_db.execute(
        """
        WITH m AS (
            INSERT INTO messages (user_id, phone_e164, direction, body, twilio_sid,
                                  status, channel, created_at)
            SELECT $1, phone_e164, 'INBOUND', 'hi', 'SMwrote' || gen_random_uuid(),
                   'RECEIVED', $3, now() - make_interval(secs => $2)
            FROM user_phones WHERE user_id = $1
        )
        INSERT INTO conversations (user_id, last_inbound_at)
        VALUES ($1, now() - make_interval(secs => $2))
        ON CONFLICT (user_id) DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at
        """,
        user_id,
        hours_ago * 3600,
        channel,
    )


class TestWindowAndProactive:
    async def set_last_inbound(self, clean_db, user_id, hours_ago: float) -> None:
        await wrote(clean_db, user_id, hours_ago)

    async def test_proactive_message_inside_the_window_is_free_form(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await self.set_last_inbound(clean_db, user_id, 2)
        await start_messaging(twilio_template_notification=TEMPLATE_NOTIFY)
        event = OutboundWhatsApp(
            user_id=user_id, body="Reminder: call Sam", kind="assistant_notification"
        )
        await publish(js, event)
        await publish(js, event)  # a re-publish is dropped or deduped
        (msg,) = await settle(devsim, PHONE, 1, wait=1.5)
        assert msg["body"] == "Reminder: call Sam"
        assert msg["content_sid"] is None
        kind = await clean_db.fetchval(
            "SELECT kind FROM messages WHERE in_reply_to = $1", f"out:{event.event_id}"
        )
        assert kind == "proactive"

    async def test_proactive_message_outside_the_window_uses_the_template(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await self.set_last_inbound(clean_db, user_id, 25)
        await start_messaging(twilio_template_notification=TEMPLATE_NOTIFY)
        await publish(js, OutboundWhatsApp(user_id=user_id, body="Your report is done"))
        (msg,) = await settle(devsim, PHONE, 1)
        assert msg["content_sid"] == TEMPLATE_NOTIFY
        assert msg["content_variables"] == {"1": "Your report is done"}

    async def test_twilio_63016_falls_back_to_the_template(
        self, start_messaging, register, js, devsim, clean_db, twilio_faults
    ):
        """The window closed without us knowing: Twilio accepts, then fails it."""
        user_id = await register(PHONE)
        await self.set_last_inbound(clean_db, user_id, 1)
        await start_messaging(twilio_template_notification=TEMPLATE_NOTIFY)
        await twilio_faults(PHONE, 63016, asynchronous=True)
        await publish(js, OutboundWhatsApp(user_id=user_id, body="Price dropped"))
        (first,) = await settle(devsim, PHONE, 1, wait=0.2)
        # gateway-api would publish Twilio's callback; here we publish it directly.
        await publish(
            js,
            InboundWhatsAppStatus(
                message_sid=first["sid"], message_status="failed", error_code="63016"
            ),
        )
        sent = await settle(devsim, PHONE, 2, wait=1.0)
        assert len(sent) == 2
        assert sent[1]["content_sid"] == TEMPLATE_NOTIFY
        assert sent[1]["content_variables"] == {"1": "Price dropped"}
        rows = await clean_db.fetch(
            "SELECT kind, status, delivery_status, error_code FROM messages "
            "WHERE direction = 'OUTBOUND' ORDER BY created_at"
        )
        assert [(r["kind"], r["status"], r["error_code"]) for r in rows] == [
            ("proactive", "FAILED", "63016"),
            ("template", "SENT", None),
        ]

    async def test_assistant_ready_uses_the_ready_template(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        assistant_id = await clean_db.fetchval(
            "SELECT id FROM assistants WHERE user_id = $1", user_id
        )
        await start_messaging(twilio_template_assistant_ready=TEMPLATE_READY)
        await publish(js, AssistantReady(user_id=user_id, assistant_id=assistant_id))
        (msg,) = await settle(devsim, PHONE, 1, wait=0)
        assert msg["content_sid"] == TEMPLATE_READY
        # Ready again after a model change: the user already knows.
        await publish(js, AssistantReady(user_id=user_id, assistant_id=assistant_id))
        assert len(await settle(devsim, PHONE, 1, wait=1.5)) == 1

    async def test_ready_is_not_sent_to_a_user_already_chatting(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        assistant_id = await clean_db.fetchval(
            "SELECT id FROM assistants WHERE user_id = $1", user_id
        )
        ready = AssistantReady(user_id=user_id, assistant_id=assistant_id)
        await start_messaging(twilio_template_assistant_ready=TEMPLATE_READY)
        await publish(js, inbound(PHONE, "are you up?"))
        await settle(devsim, PHONE, 1, wait=0)
        await publish(js, ready)  # emitted before they wrote, handled after
        sent = await settle(devsim, PHONE, 1, wait=1.5)
        assert [m["body"] for m in sent] == ["Echo: are you up?"]
        # Ready again after a model change: still no news to them.
        await publish(js, AssistantReady(user_id=user_id, assistant_id=assistant_id))
        sent = await settle(devsim, PHONE, 1, wait=1.5)
        assert [m["body"] for m in sent] == ["Echo: are you up?"]


class TestRestartNotice:
    async def test_a_user_who_was_chatting_hears_once_of_an_oom_restart(
        self, texted, js, devsim
    ):
        user_id = await texted("plan my week")
        await settle(devsim, PHONE, 1, wait=0)
        killed = AssistantRestarted(
            event_id=uuid.uuid4(), user_id=user_id, killed_at=1_780_000_000
        )

        await publish(js, killed)
        await publish(js, killed.model_copy())  # another replica's copy
        sent = await settle(devsim, PHONE, 2, wait=1.5)

        assert len(sent) == 2
        assert "ran out of memory and has restarted" in sent[1]["body"]
        assert "send it again" in sent[1]["body"]

    async def test_a_user_who_was_not_chatting_is_not_disturbed(
        self, start_messaging, register, js, devsim
    ):
        user_id = await register(PHONE)
        await start_messaging()

        await publish(js, AssistantRestarted(user_id=user_id, killed_at=1_780_000_000))

        assert await settle(devsim, PHONE, 0, wait=1.5) == []


async def spent_this_month(db, user_id, *, platform_usd, tokens=0, capped=False):
    """llm-proxy's totals for the user, as after their model calls."""
    await db.execute(
        "INSERT INTO llm_usage_monthly (user_id, month, calls, input_tokens, "
        "cost_microusd, platform_cost_microusd, cap_notified_at) "
        "VALUES ($1, date_trunc('month', now() AT TIME ZONE 'utc')::date, 3, $2, "
        "$3, $3, CASE WHEN $4 THEN now() END)",
        user_id,
        tokens,
        round(platform_usd * 1_000_000),
        capped,
    )


def usage_event(kind, user_id, *, spent, allowance=8.0):
    now = dt.datetime.now(dt.UTC)
    month = now.date().replace(day=1)
    resets = dt.datetime.combine(
        (month + dt.timedelta(days=32)).replace(day=1), dt.time(), dt.UTC
    )
    return kind(
        user_id=user_id,
        month=month,
        spent_usd=spent,
        allowance_usd=allowance,
        resets_at=resets,
    )


class TestModelAllowance:
    async def test_over_the_allowance_one_notice_and_no_model_call(
        self, texted, js, devsim, clean_db
    ):
        user_id = await texted("hello", sid="SMcap1")
        await replies_settle(devsim, PHONE, 1, wait=0)
        (await devsim.delete("/_devsim/llm/requests")).raise_for_status()

        # llm-proxy refused a call and said so (once a month, on the bus).
        await spent_this_month(clean_db, user_id, platform_usd=8.01, capped=True)
        await publish(js, usage_event(UsageCapReached, user_id, spent=8.01))
        await publish(js, usage_event(UsageCapReached, user_id, spent=8.01))
        await publish(js, inbound(PHONE, "are you there?", sid="SMcap2"))
        await publish(js, inbound(PHONE, "hello??", sid="SMcap3"))

        sent = await replies_settle(devsim, PHONE, 2, wait=1.5)
        assert len(sent) == 2, [m["body"] for m in sent]
        notice = sent[1]["body"]
        assert "used this month's allowance of $8.00" in notice
        assert "paused until" in notice
        assert await llm_requests(devsim) == []
        statuses = await clean_db.fetch(
            "SELECT status FROM messages WHERE in_reply_to IN ('SMcap2', 'SMcap3')"
        )
        assert [r["status"] for r in statuses] == ["SKIPPED", "SKIPPED"]

        # Commands still answer, with the spend.
        await publish(js, inbound(PHONE, "/usage", sid="SMcap4"))
        sent = await replies_settle(devsim, PHONE, 3, wait=0)
        assert "$8.01 of your $8.00 allowance (100%)" in sent[2]["body"]

    async def test_eighty_percent_gets_one_heads_up(self, texted, js, devsim):
        user_id = await texted("hello", sid="SMwarn1")
        await replies_settle(devsim, PHONE, 1, wait=0)

        for _ in range(2):
            await publish(js, usage_event(UsageAllowanceWarning, user_id, spent=6.5))

        sent = await replies_settle(devsim, PHONE, 2, wait=1.5)
        assert len(sent) == 2
        assert sent[1]["body"].startswith(
            "Heads-up: your assistant has used 81% of this month's allowance "
            "($6.50 of $8.00)."
        )

    async def test_usage_and_status_show_the_month_in_dollars_and_tokens(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await spent_this_month(clean_db, user_id, platform_usd=2.0, tokens=123_456)

        await publish(js, inbound(PHONE, "/usage", sid="SMusage1"))
        await publish(js, inbound(PHONE, "/status", sid="SMusage2"))

        sent = await replies_settle(devsim, PHONE, 2, wait=0)
        usage, status = sent[0]["body"], sent[1]["body"]
        assert "*Spent*: $2.00 of your $8.00 allowance (25%)" in usage
        assert "*Tokens*: 123,456 in 3 model calls" in usage
        assert "*This month*: $2.00 of $8.00 (25%), 123,456 tokens" in status
        assert await llm_requests(devsim) == []


@pytest_asyncio.fixture(loop_scope="session")
async def replicas(database_url, devsim_url) -> AsyncIterator[list[Proactive]]:
    """Two messaging replicas' proactive handlers: each its own pool and
    Twilio client, on the same database, sending to the Twilio stand-in."""
    async with contextlib.AsyncExitStack() as stack:
        made = []
        for _ in range(2):
            pool = await create_pool(database_url, max_size=4)
            stack.push_async_callback(pool.close)
            http = await stack.enter_async_context(aiohttp.ClientSession())
            twilio = TwilioClient(
                http,
                api_base=devsim_url,
                account_sid=DEV_TWILIO_ACCOUNT_SID,
                auth_token=DEV_TWILIO_AUTH_TOKEN,
            )
            channel = WhatsAppChannel(
                pool=pool,
                twilio=twilio,
                sender=DEV_WHATSAPP_NUMBER,
                templates=Templates(TEMPLATE_READY, TEMPLATE_NOTIFY),
            )
            made.append(
                Proactive(
                    pool=pool,
                    channels={"whatsapp": channel},
                    limits=Limits(0, 0, 0),
                    app_url="",
                )
            )
        yield made


class TestOnceAcrossReplicas:
    @pytest.mark.parametrize("notice", ["outbound", "usage", "ready", "restarted"])
    async def test_two_replicas_handling_one_event_send_it_once(
        self, notice, replicas, register, clean_db, devsim
    ):
        # A few users at once, so the two replicas' steps interleave.
        phones = [f"+1555125000{i}" for i in range(3)]
        events = [await self.event(notice, register, clean_db, p) for p in phones]
        handler = {
            "outbound": Proactive.handle_outbound,
            "usage": Proactive.handle_usage,
            "ready": Proactive.handle_ready,
            "restarted": Proactive.handle_restarted,
        }[notice]

        outcomes = await asyncio.gather(
            *(handler(p, event) for event in events for p in replicas),
            return_exceptions=True,
        )

        for phone in phones:
            sent = await settle(devsim, phone, 1, wait=0.5)
            assert len(sent) == 1, [m["body"] for m in sent]
        # The other stood back: at once, or told to look again later (a nak).
        assert all(o is None or isinstance(o, SendUnconfirmed) for o in outcomes), (
            outcomes
        )

    @staticmethod
    async def event(notice, register, clean_db, phone):
        user_id = await register(phone)
        await wrote(clean_db, user_id, 1)
        if notice == "outbound":
            return OutboundWhatsApp(user_id=user_id, body="Your report is ready")
        if notice == "usage":
            return usage_event(UsageCapReached, user_id, spent=8.01)
        if notice == "ready":
            assistant_id = await clean_db.fetchval(
                "SELECT id FROM assistants WHERE user_id = $1", user_id
            )
            return AssistantReady(user_id=user_id, assistant_id=assistant_id)
        return AssistantRestarted(user_id=user_id, killed_at=1_780_000_000)
