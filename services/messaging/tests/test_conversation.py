"""The whole WhatsApp conversation, end to end over real NATS, Postgres and the
Twilio and LLM stand-ins: limits, commands, media, splitting, the 24-hour
window, proactive messages, Twilio errors and status callbacks."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from yourclaw_common.events import (
    AssistantReady,
    AssistantRestarted,
    InboundMedia,
    InboundWhatsApp,
    InboundWhatsAppStatus,
    OutboundWhatsApp,
    Stream,
    Subject,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.defaults import DEV_TWILIO_ACCOUNT_SID, DEV_WHATSAPP_NUMBER
from yourclaw_devkit.llm_sim import PromptCache, build_reply, estimate_tokens
from yourclaw_devkit.pytest_plugin import MESSAGES_PATH, sent_to
from yourclaw_messaging import repository

from .conftest import AUTH, devsim_sent, inbound

PHONE = "+15551240001"
TEMPLATE_NOTIFY = "HX00000000000000000000000000000001"
TEMPLATE_READY = "HX00000000000000000000000000000002"
# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


async def llm_requests(devsim) -> list[dict]:
    return (await devsim.get("/_devsim/llm/requests")).json()["requests"]


async def settle(devsim, phone, count, *, wait=1.0, timeout=15):
    """Wait for `count` messages to `phone`, then a little more to catch extras."""

    async def enough():
        return len(await devsim_sent(devsim, phone)) >= count

    await eventually(enough, timeout=timeout)
    await asyncio.sleep(wait)
    return await devsim_sent(devsim, phone)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestTurn:
    async def test_turn_streams_with_usage_and_records_tokens(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "count my tokens"))
        await settle(devsim, PHONE, 1, wait=0.3)
        (req,) = await llm_requests(devsim)
        assert req["stream"] is True
        assert req["body"]["stream_options"] == {"include_usage": True}
        assert req["headers"]["x-openclaw-model"] == (
            "anthropic/claude-sonnet-4-5-20250929"
        )
        assert req["body"]["user"] == f"wa:{user_id}"
        usage = await clean_db.fetchrow(
            "SELECT tokens_in, tokens_out FROM usage_daily WHERE user_id = $1", user_id
        )
        # The stand-in counts about four characters a token of the request
        # (messages, tools, system) and of the reply.
        prompt, _ = PromptCache().read(req["body"])
        assert (usage["tokens_in"], usage["tokens_out"]) == (
            prompt,
            estimate_tokens("Echo: count my tokens"),
        )


class TestSessionSeeding:
    async def test_assistant_at_a_new_address_gets_the_conversation_once(
        self, start_messaging, register, js, devsim, clean_db, devsim_url
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "my door is blue"))
        await settle(devsim, PHONE, 1, wait=0)
        # The assistant was re-created on another host: same user, new address.
        moved = devsim_url.replace("127.0.0.1", "localhost")
        await clean_db.execute(
            "UPDATE assistants SET base_url = $2 WHERE user_id = $1", user_id, moved
        )
        await publish(js, inbound(PHONE, "what colour is my door?"))
        await settle(devsim, PHONE, 2, wait=0)
        await publish(js, inbound(PHONE, "thanks"))
        await settle(devsim, PHONE, 3, wait=0)
        first, seeded, after = await llm_requests(devsim)
        assert len(first["body"]["messages"]) == 1
        assert seeded["body"]["messages"] == [
            {"role": "user", "content": "my door is blue"},
            {"role": "assistant", "content": "Echo: my door is blue"},
            {"role": "user", "content": "what colour is my door?"},
        ]
        assert len(after["body"]["messages"]) == 1  # the new gateway has it now


class TestLimits:
    async def test_daily_limit_across_two_replicas_sends_one_notice(
        self, start_messaging, register, js, devsim, clean_db
    ):
        await register(PHONE)
        # Two replicas on the same durable consumer share the work.
        await start_messaging(rate_limit_msg_per_min=0, rate_limit_msg_per_day=3)
        await start_messaging(rate_limit_msg_per_min=0, rate_limit_msg_per_day=3)
        for i in range(8):
            await publish(js, inbound(PHONE, f"message {i}"))
        sent = await settle(devsim, PHONE, 4, wait=2.0)
        bodies = [m["body"] for m in sent]
        notices = [b for b in bodies if "limit of 3 messages per day" in b]
        assert len(notices) == 1
        assert "after midnight UTC" in notices[0]
        assert len([b for b in bodies if b.startswith("Echo: ")]) == 3
        assert len(bodies) == 4
        assert len(await llm_requests(devsim)) == 3
        # Every message is recorded, limited or not.
        assert (
            await clean_db.fetchval(
                "SELECT count(*) FROM messages WHERE direction = 'INBOUND'"
            )
            == 8
        )

    async def test_minute_limit_says_when_to_write_again(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        # Stay clear of a minute boundary, so all messages fall in one window.
        second = datetime.now(UTC).second
        if second > 45:
            await asyncio.sleep(61 - second)
        await start_messaging(rate_limit_msg_per_min=2)
        window = datetime.now(UTC).replace(second=0, microsecond=0)
        for i in range(5):
            await publish(js, inbound(PHONE, f"quick {i}"))
        sent = await settle(devsim, PHONE, 3, wait=1.5)
        bodies = [m["body"] for m in sent]
        assert len(bodies) == 3
        (notice,) = [b for b in bodies if "limit of 2 messages per minute" in b]
        assert f"at {window + timedelta(minutes=1):%H:%M} UTC" in notice

    async def test_token_allowance_stops_the_assistant_for_the_day(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging(rate_limit_tokens_per_day=5)
        await publish(js, inbound(PHONE, "one two three four five six"))
        await settle(devsim, PHONE, 1, wait=0.3)
        await publish(js, inbound(PHONE, "more please"))
        await publish(js, inbound(PHONE, "and more"))
        sent = await settle(devsim, PHONE, 2, wait=1.5)
        assert len(sent) == 2
        assert "today's allowance of 5 tokens" in sent[1]["body"]
        assert len(await llm_requests(devsim)) == 1


class TestCommands:
    async def test_help_lists_the_commands_without_asking_the_assistant(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "/help"))
        (reply,) = await settle(devsim, PHONE, 1)
        for command in ("/help", "/status", "/reset", "/model"):
            assert command in reply["body"]
        assert await llm_requests(devsim) == []

    async def test_status_shows_assistant_model_and_todays_usage(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging(rate_limit_msg_per_min=5, rate_limit_msg_per_day=100)
        await publish(js, inbound(PHONE, "hello"))
        await settle(devsim, PHONE, 1, wait=0)
        await publish(js, inbound(PHONE, "/STATUS"))
        sent = await settle(devsim, PHONE, 2)
        status = sent[1]["body"]
        assert "ready" in status
        assert "Claude Sonnet 4.5" in status
        assert "2 messages from you, 1 reply, " in status
        assert "5 messages a minute, 100 messages a day" in status
        assert len(await llm_requests(devsim)) == 1

    async def test_model_in_chat_changes_the_assistant_as_the_dashboard_does(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await start_messaging()
        provision = await js.pull_subscribe(
            Subject.ASSISTANT_PROVISION_REQUESTED.value, stream=Stream.ASSISTANTS
        )
        await publish(js, inbound(PHONE, "/model opus"))
        await settle(devsim, PHONE, 1, wait=0)
        await publish(js, inbound(PHONE, "/model banana"))
        await settle(devsim, PHONE, 2, wait=0)
        await publish(js, inbound(PHONE, "/model sonnet"))
        sent = await settle(devsim, PHONE, 3, wait=0)
        assert sent[0]["body"].startswith("Switching to Claude Opus 4.5")
        assert "dashboard" in sent[0]["body"]
        assert 'no model called "banana"' in sent[1]["body"]
        assert "/model gpt-4o-mini" in sent[1]["body"]
        assert sent[2]["body"] == "Your assistant already uses Claude Sonnet 4.5."
        # The same request the dashboard's model switch publishes, and only one.
        (msg,) = await provision.fetch(1, timeout=5)
        event = json.loads(msg.data)
        assert (event["user_id"], event["reason"], event["model"]) == (
            str(user_id),
            "model_changed",
            "anthropic/claude-opus-4-5-20251101",
        )
        with pytest.raises(asyncio.TimeoutError):
            await provision.fetch(1, timeout=1)

        # Turns use the assistant's model, wherever it was changed: here the
        # provisioner has recorded another pick (the dashboard's).
        await clean_db.execute(
            "UPDATE assistants SET model = 'openai/gpt-4o-mini' WHERE user_id = $1",
            user_id,
        )
        await publish(js, inbound(PHONE, "who are you"))
        sent = await settle(devsim, PHONE, 4)
        (req,) = await llm_requests(devsim)
        assert req["headers"]["x-openclaw-model"] == "openai/gpt-4o-mini"
        await publish(js, inbound(PHONE, "/status"))
        sent = await settle(devsim, PHONE, 5)
        assert "GPT-4o Mini" in sent[4]["body"]

    async def test_reset_starts_a_new_session(
        self, start_messaging, register, js, devsim
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "remember the blue door"))
        await settle(devsim, PHONE, 1, wait=0)
        await publish(js, inbound(PHONE, "/reset"))
        await settle(devsim, PHONE, 2, wait=0)
        await publish(js, inbound(PHONE, "what door?"))
        sent = await settle(devsim, PHONE, 3)
        assert "fresh conversation" in sent[1]["body"]
        first, second = await llm_requests(devsim)
        assert first["session_key"] == f"wa:{user_id}"
        assert second["session_key"] == second["user"] == f"wa:{user_id}:1"

    async def test_unknown_slash_command_goes_to_the_assistant(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "/weather Paris"))
        (reply,) = await settle(devsim, PHONE, 1)
        assert reply["body"] == "Echo: /weather Paris"


def with_media(phone: str, body: str, media: list[tuple[str, str]]) -> InboundWhatsApp:
    return InboundWhatsApp(
        message_sid=f"MM{uuid.uuid4().hex}",
        account_sid=DEV_TWILIO_ACCOUNT_SID,
        from_number=f"whatsapp:{phone}",
        to_number=DEV_WHATSAPP_NUMBER,
        body=body,
        num_media=len(media),
        media=tuple(InboundMedia(url=u, content_type=t) for u, t in media),
    )


class TestMedia:
    async def upload(self, devsim, data: bytes, content_type: str) -> str:
        resp = await devsim.post(
            "/_devsim/media", content=data, headers={"content-type": content_type}
        )
        resp.raise_for_status()
        return resp.json()["url"]

    async def test_image_reaches_the_assistant_as_a_data_uri(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging()
        url = await self.upload(devsim, PNG, "image/png")
        await publish(js, with_media(PHONE, "what is this", [(url, "image/png")]))
        (reply,) = await settle(devsim, PHONE, 1)
        assert reply["body"] == "Echo: what is this [image]"
        (req,) = await llm_requests(devsim)
        content = req["body"]["messages"][0]["content"]
        assert content[0] == {"type": "text", "text": "what is this"}
        expected = "data:image/png;base64," + base64.b64encode(PNG).decode()
        assert content[1] == {"type": "image_url", "image_url": {"url": expected}}

    async def test_other_media_gets_a_clear_not_supported_reply(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging()
        url = await self.upload(devsim, b"OggS fake voice", "audio/ogg")
        await publish(js, with_media(PHONE, "", [(url, "audio/ogg")]))
        (reply,) = await settle(devsim, PHONE, 1)
        assert "not audio files yet" in reply["body"]
        assert await llm_requests(devsim) == []

    async def test_image_over_the_size_limit_is_refused_clearly(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging(media_max_bytes=32)
        url = await self.upload(devsim, PNG * 4, "image/png")
        await publish(js, with_media(PHONE, "look", [(url, "image/png")]))
        (reply,) = await settle(devsim, PHONE, 1)
        assert "couldn't be read" in reply["body"]
        assert await llm_requests(devsim) == []


class TestSplitting:
    async def test_5000_character_reply_arrives_in_order(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "essay please #long=5000"))
        sent = await settle(devsim, PHONE, 4)
        assert len(sent) == 4
        assert all(len(m["body"]) <= 1600 for m in sent)
        full = build_reply("#long=5000")
        assert " ".join(m["body"] for m in sent).split() == full.split()
        # Cut at sentence boundaries (the text itself ends mid-sentence).
        assert all(m["body"].endswith(".") for m in sent[:-1])


class TestWindowAndProactive:
    async def set_last_inbound(self, clean_db, user_id, hours_ago: float) -> None:
        await clean_db.execute(
            """
            INSERT INTO conversations (user_id, last_inbound_at)
            VALUES ($1, now() - make_interval(secs => $2))
            ON CONFLICT (user_id) DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at
            """,
            user_id,
            hours_ago * 3600,
        )

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
        self, start_messaging, register, js, devsim
    ):
        user_id = await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "plan my week"))
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


class TestTwilioErrors:
    async def test_20429_is_retried_and_the_reply_arrives_once(
        self, start_messaging, register, js, devsim, clean_db, twilio_faults
    ):
        await register(PHONE)
        before = sample(
            "yourclaw_messaging_twilio_sends_total",
            outcome="retried",
            error_code="20429",
        )
        await twilio_faults(PHONE, 20429, status=429, times=2)
        await start_messaging()
        await publish(js, inbound(PHONE, "busy day"))
        sent = await settle(devsim, PHONE, 1, wait=1.5)
        assert [m["body"] for m in sent] == ["Echo: busy day"]
        assert await clean_db.fetchval(
            "SELECT status FROM messages WHERE direction = 'OUTBOUND'"
        ) == ("SENT")
        after = sample(
            "yourclaw_messaging_twilio_sends_total",
            outcome="retried",
            error_code="20429",
        )
        assert after - before == 2

    async def test_invalid_recipient_is_recorded_not_retried(
        self, start_messaging, register, js, devsim, clean_db, twilio_faults
    ):
        await register(PHONE)
        await twilio_faults(PHONE, 21211, times=10)
        await start_messaging()
        await publish(js, inbound(PHONE, "hello?"))
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT status = 'FAILED' FROM messages WHERE direction = 'OUTBOUND'"
            ),
            timeout=10,
        )
        await asyncio.sleep(1.5)
        row = await clean_db.fetchrow(
            "SELECT status, error_code FROM messages WHERE direction = 'OUTBOUND'"
        )
        assert (row["status"], row["error_code"]) == ("FAILED", "21211")
        assert await sent_to(devsim, PHONE) == []
        info = await js.consumer_info(Stream.INBOUND, "messaging-inbound-whatsapp")
        assert info.num_redelivered == 0
        assert len(await llm_requests(devsim)) == 1


async def sending_replies(clean_db, user_id, count: int) -> list[uuid.UUID]:
    """`count` reply parts handed to Twilio, whose sids are not recorded yet."""
    return [
        await clean_db.fetchval(
            "INSERT INTO messages (user_id, phone_e164, direction, body, status, "
            "kind) VALUES ($1, $2, 'OUTBOUND', $3, 'SENDING', 'reply') RETURNING id",
            user_id,
            PHONE,
            f"part {i}",
        )
        for i in range(count)
    ]


class TestStatusCallbacks:
    async def test_status_never_moves_backwards(
        self, start_messaging, register, js, devsim, clean_db
    ):
        await register(PHONE)
        await start_messaging()
        await publish(js, inbound(PHONE, "track me"))
        (msg,) = await settle(devsim, PHONE, 1, wait=0)
        sid = msg["sid"]
        for status in ("delivered", "sent", "read", "delivered", "queued"):
            await publish(
                js, InboundWhatsAppStatus(message_sid=sid, message_status=status)
            )

        async def read():
            return (
                await clean_db.fetchval(
                    "SELECT delivery_status FROM messages WHERE twilio_sid = $1", sid
                )
                == "read"
            )

        await eventually(read, timeout=10)
        await asyncio.sleep(1.0)
        assert await clean_db.fetchval(
            "SELECT delivery_status FROM messages WHERE twilio_sid = $1", sid
        ) == ("read")

    @staticmethod
    async def _sent_after_callback(clean_db, register, sid, status, error_code=None):
        """A callback for `sid` arrives before the send is recorded; then it is."""
        await clean_db.execute(
            "INSERT INTO twilio_statuses (twilio_sid, status, error_code) "
            "VALUES ($1, $2, $3)",
            sid,
            status,
            error_code,
        )
        user_id = await register(PHONE)
        await clean_db.execute(
            "INSERT INTO messages (user_id, phone_e164, direction, body, status, kind) "
            "VALUES ($1, $2, 'OUTBOUND', 'x', 'SENDING', 'reply')",
            user_id,
            PHONE,
        )
        async with clean_db.acquire() as conn:
            message_id = await conn.fetchval("SELECT id FROM messages")
            (changed,) = await repository.mark_sent(conn, [(message_id, sid)])
        return user_id, changed

    async def test_callback_before_the_send_is_recorded_is_applied_later(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """Twilio may call back before its API answer reaches us."""
        user_id, changed = await self._sent_after_callback(
            clean_db, register, "SMearly", "delivered"
        )
        assert changed is not None
        assert changed["delivery_status"] == "delivered"
        row = await clean_db.fetchrow("SELECT status, twilio_sid FROM messages")
        assert (row["status"], row["twilio_sid"]) == ("SENT", "SMearly")
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == (1)

    async def test_sends_recorded_together_count_each_message_once(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        ids = await sending_replies(clean_db, user_id, 3)
        async with clean_db.acquire() as conn:
            early = await repository.mark_sent(
                conn, [(message_id, f"SMbatch{i}") for i, message_id in enumerate(ids)]
            )
        assert early == [None, None, None]
        rows = await clean_db.fetch(
            "SELECT id, status, twilio_sid FROM messages ORDER BY body"
        )
        assert [(r["id"], r["status"], r["twilio_sid"]) for r in rows] == [
            (message_id, "SENT", f"SMbatch{i}") for i, message_id in enumerate(ids)
        ]
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == (3)

    async def test_each_send_names_its_message_in_the_callback_url(
        self, start_messaging, register, js, devsim, clean_db
    ):
        await register(PHONE)
        # Nothing listens there; the stand-in's callbacks fail quietly.
        callback = "http://127.0.0.1:9/api/v1/webhooks/twilio/status?tenant=eu"
        await start_messaging(twilio_status_callback_url=callback)
        await publish(js, inbound(PHONE, "where does my status go"))
        (msg,) = await settle(devsim, PHONE, 1, wait=0)
        message_id = await eventually(
            lambda: clean_db.fetchval(
                "SELECT id FROM messages WHERE twilio_sid = $1", msg["sid"]
            ),
            timeout=10,
        )
        assert msg["status_callback"] == f"{callback}&message_id={message_id}"

    async def test_a_template_twilio_took_before_a_crash_is_not_sent_again(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """A worker died after Twilio accepted a template, before recording it.

        Twilio's message list shows a template's rendered text, not its
        ContentSid, so the list cannot tell; the status callback names the
        message, and a redelivered event then finds it sent.
        """
        user_id = await register(PHONE)
        event = OutboundWhatsApp(user_id=user_id, body="Your report is done")
        variables = json.dumps({"1": "Your report is done"})
        message_id = await clean_db.fetchval(
            "INSERT INTO messages (user_id, phone_e164, direction, body, in_reply_to, "
            "part, status, kind, content_sid, content_variables, send_attempted_at) "
            "VALUES ($1, $2, 'OUTBOUND', 'Your report is done', $3, 0, 'SENDING', "
            "'template', $4, $5::jsonb, now()) RETURNING id",
            user_id,
            PHONE,
            f"out:{event.event_id}",
            TEMPLATE_NOTIFY,
            variables,
        )
        accepted = await devsim.post(
            MESSAGES_PATH,
            data={
                "To": f"whatsapp:{PHONE}",
                "From": DEV_WHATSAPP_NUMBER,
                "ContentSid": TEMPLATE_NOTIFY,
                "ContentVariables": variables,
            },
            auth=AUTH,
        )
        assert accepted.status_code == 201
        sid = accepted.json()["sid"]
        await start_messaging(twilio_template_notification=TEMPLATE_NOTIFY)
        # gateway-api publishes Twilio's callback with the id from its URL.
        await publish(
            js,
            InboundWhatsAppStatus(
                message_sid=sid, message_status="sent", message_id=message_id
            ),
        )
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT status = 'SENT' FROM messages WHERE id = $1", message_id
            ),
            timeout=10,
        )
        handled = {
            "consumer": "messaging-outbound-whatsapp",
            "subject": "outbound.whatsapp",
            "outcome": "acked",
        }
        before = sample("yourclaw_messaging_events_consumed_total", **handled)
        await publish(js, event)  # the event the dead worker had: redelivered

        async def handled_again() -> bool:
            return (
                sample("yourclaw_messaging_events_consumed_total", **handled) > before
            )

        await eventually(handled_again, timeout=10)
        assert len(await devsim_sent(devsim, PHONE)) == 1
        row = await clean_db.fetchrow(
            "SELECT status, twilio_sid, delivery_status FROM messages WHERE id = $1",
            message_id,
        )
        assert tuple(row) == ("SENT", sid, "sent")
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == (1)

    async def test_callbacks_racing_for_unrecorded_sends_all_land(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """`sent` and `delivered` for the same message, taken at once by two
        replicas while its send is not recorded yet: neither is lost, and the
        send is counted once."""
        user_id = await register(PHONE)
        ids = await sending_replies(clean_db, user_id, 80)
        await start_messaging()
        await start_messaging()
        for i, message_id in enumerate(ids):
            for status in ("sent", "delivered"):
                await publish(
                    js,
                    InboundWhatsAppStatus(
                        message_sid=f"SMrace{i}",
                        message_status=status,
                        message_id=message_id,
                    ),
                )

        async def all_delivered() -> bool:
            delivered = await clean_db.fetchval(
                "SELECT count(*) FROM messages WHERE delivery_status = 'delivered'"
            )
            return bool(delivered == len(ids))

        await eventually(all_delivered, timeout=20)
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == len(ids)

    async def test_a_send_recorded_after_its_callback_is_counted_once(
        self, start_messaging, register, js, devsim, clean_db
    ):
        """The callback named the message and recorded it; then the sender's own
        record arrives, as it does when Twilio calls back before answering."""
        user_id, _ = await self._sent_after_callback(
            clean_db, register, "SMtwice", "sent"
        )
        message_id = await clean_db.fetchval("SELECT id FROM messages")
        async with clean_db.acquire() as conn:
            assert await repository.mark_sent(conn, [(message_id, "SMtwice")]) == [None]
        assert await clean_db.fetchval(
            "SELECT outbound_count FROM usage_daily WHERE user_id = $1", user_id
        ) == (1)

    async def test_an_early_failure_callback_fails_the_message_as_it_is_recorded(
        self, start_messaging, register, js, devsim, clean_db
    ):
        _, changed = await self._sent_after_callback(
            clean_db, register, "SMearlyfail", "undelivered", "63016"
        )
        assert changed is not None
        assert (changed["delivery_status"], changed["error_code"]) == (
            "undelivered",
            "63016",
        )
        assert await clean_db.fetchval("SELECT status FROM messages") == "FAILED"


@pytest.mark.parametrize("status", ["sent", "delivered"])
async def test_status_for_an_unknown_sid_is_kept_for_later(
    status, start_messaging, js, clean_db
):
    await start_messaging()
    await publish(
        js,
        InboundWhatsAppStatus(message_sid=f"SMunknown{status}", message_status=status),
    )
    await eventually(
        lambda: clean_db.fetchval(
            "SELECT status FROM twilio_statuses WHERE twilio_sid = $1",
            f"SMunknown{status}",
        ),
        timeout=10,
    )


class TestStoringReplies:
    async def test_a_batch_stores_each_answer_once_and_counts_each_turn(
        self, register, clean_db
    ):
        first = await register(PHONE)
        second = await register("+15551240002")
        await clean_db.execute(
            "INSERT INTO conversations (user_id) VALUES ($1), ($2)", first, second
        )

        def answer(sid, user_id, phone, parts, tokens):
            return repository.Replies(
                inbound_sid=sid,
                user_id=user_id,
                phone=phone,
                parts=parts,
                turn=repository.Turn("http://gw:1", *tokens),
            )

        async with clean_db.acquire() as conn:
            (earlier,) = await repository.add_many_replies(
                conn, [answer("SMb", second, "+15551240002", ["old"], (1, 1))]
            )
            stored = await repository.add_many_replies(
                conn,
                [
                    answer("SMa", first, PHONE, ["one", "two"], (10, 5)),
                    answer("SMb", second, "+15551240002", ["new"], (7, 7)),
                ],
            )

        assert earlier is not None
        mine, theirs = stored
        assert mine is not None
        assert [(r["body"], r["part"], r["status"]) for r in mine] == [
            ("one", 0, "SENDING"),
            ("two", 1, "SENDING"),
        ]
        # Stored before: left as it was, and its turn not counted again.
        assert theirs is None
        assert await clean_db.fetchval(
            "SELECT body FROM messages WHERE in_reply_to = 'SMb'"
        ) == ("old")
        usage = dict(
            await clean_db.fetch(
                "SELECT user_id, tokens_in + tokens_out FROM usage_daily"
            )
        )
        assert usage == {first: 15, second: 2}
        assert await clean_db.fetchval(
            "SELECT session_base_url FROM conversations WHERE user_id = $1", first
        ) == ("http://gw:1")
