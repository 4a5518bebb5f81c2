"""A turn end to end over real NATS, Postgres and the LLM and Twilio stand-ins:
inbound → limits → the assistant (or a notice) → the reply, once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from yourclaw_common.crypto import SecretBox, generate_key
from yourclaw_common.events import (
    InboundMedia,
    InboundWhatsApp,
    OutboundWhatsApp,
    Stream,
)
from yourclaw_common.nats import count_dead_letters, publish
from yourclaw_common.testing import cuttable, eventually
from yourclaw_common.testing.plugin import TEST_ACK_WAIT_SECONDS
from yourclaw_devkit.defaults import DEV_TWILIO_ACCOUNT_SID, DEV_WHATSAPP_NUMBER
from yourclaw_devkit.llm_sim import PromptCache, estimate_tokens
from yourclaw_devkit.pytest_plugin import sent_to
from yourclaw_messaging import repository
from yourclaw_messaging.consumers import CONSUMERS
from yourclaw_messaging.errors import Unstorable
from yourclaw_messaging.limits import Limits
from yourclaw_messaging.turns import Turns

from .conftest import (
    OTHER,
    PHONE,
    STRANGER,
    clear_of_a_minute_boundary,
    count_messages,
    inbound,
    llm_requests,
    replies_settle,
    sample,
    settle,
)

# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@contextlib.asynccontextmanager
async def front(
    url: str,
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A server on loopback that answers each connection with `serve`: `url`
    with its address."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{port}"))
    finally:
        server.close()


@contextlib.asynccontextmanager
async def one_request_per_connection(url: str) -> AsyncIterator[str]:
    """`url` behind a front that drops a connection when a second request
    comes on it (a server closing an idle kept-alive connection as the next
    request arrives); the front's own URL."""
    target = urlsplit(url)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        up_reader, up_writer = await asyncio.open_connection(
            target.hostname, target.port
        )
        answered = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if answered.is_set():
                    break  # a second request: closed without an answer
                up_writer.write(data)
            writer.transport.abort()
            up_writer.transport.abort()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                answered.set()
                writer.write(data)

        with contextlib.suppress(OSError):
            await asyncio.gather(upstream(), downstream())

    async with front(url, serve) as address:
        yield address


@contextlib.asynccontextmanager
async def first_turn_fails(
    url: str,
    before: Callable[[], Awaitable[object]] | None = None,
    *,
    error: str = "another OpenClaw process owns state-lifecycle",
) -> AsyncIterator[str]:
    """`url` behind a front that fails the first turn it is asked mid-stream
    with `error` (by default as a gateway just thawed from a long freeze
    does), after awaiting `before`; later turns go through. The front's own
    URL."""
    target = urlsplit(url)
    failed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        if not failed.is_set():
            failed.set()
            await reader.readuntil(b"\r\n\r\n")
            if before is not None:
                await before()
            event = orjson.dumps({"error": {"message": error}})
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"connection: close\r\n\r\ndata: " + event + b"\n\n"
            )
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(
            target.hostname, target.port
        )

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
            dst.transport.abort()

        with contextlib.suppress(OSError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with front(url, serve) as address:
        yield address


class TestHandleInbound:
    async def test_registered_user_gets_the_assistants_reply(
        self, texted, devsim, clean_db
    ):
        user_id = await texted("hello there", sid="SMhello1")

        sent = await replies_settle(devsim, PHONE, 1)
        assert [m["body"] for m in sent] == ["Echo: hello there"]
        assert sent[0]["from"] == DEV_WHATSAPP_NUMBER

        (req,) = await llm_requests(devsim)
        assert req["session_key"] == f"wa:{user_id}"
        assert req["user"] == f"wa:{user_id}"
        assert req["model"] == "openclaw/default"
        assert req["has_authorization"]
        assert req["headers"]["x-openclaw-message-channel"] == "whatsapp"

        rows = await clean_db.fetch(
            "SELECT direction, body, status, twilio_sid, user_id FROM messages ORDER BY created_at"
        )
        assert [(r["direction"], r["status"]) for r in rows] == [
            ("INBOUND", "RECEIVED"),
            ("OUTBOUND", "SENT"),
        ]
        assert rows[0]["twilio_sid"] == "SMhello1"
        assert rows[1]["twilio_sid"] == sent[0]["sid"]
        usage = await clean_db.fetchrow(
            "SELECT * FROM usage_daily WHERE user_id = $1", user_id
        )
        assert (usage["inbound_count"], usage["outbound_count"]) == (1, 1)
        assert usage["tokens_out"] > 0

    async def test_message_sid_seen_before_does_nothing(
        self, texted, js, devsim, clean_db
    ):
        await texted("once", sid="SMonce")
        await replies_settle(devsim, PHONE, 1, wait=0)
        # The same MessageSid again, past JetStream's dedupe (another Msg-Id), as
        # after the duplicate window: the database remembers it.
        event = inbound(PHONE, "once", sid="SMonce")
        await js.publish(
            "inbound.whatsapp",
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": "other"},
        )
        sent = await replies_settle(devsim, PHONE, 1, wait=1.5)
        assert len(sent) == 1
        assert len(await llm_requests(devsim)) == 1
        assert await count_messages(clean_db) == 2

    async def test_unknown_number_gets_one_signup_reply(
        self, start_messaging, js, devsim, clean_db
    ):
        await start_messaging()
        await publish(js, inbound(STRANGER, "hi who is this"))
        sent = await replies_settle(devsim, STRANGER, 1, wait=0)
        assert "Sign up at https://app.yourclaw.test" in sent[0]["body"]
        # More messages the same day: no more sign-up replies (no spam).
        await publish(js, inbound(STRANGER, "hello?"))
        await publish(js, inbound(STRANGER, "anyone?"))
        sent = await replies_settle(devsim, STRANGER, 1, wait=1.5)
        assert len(sent) == 1
        assert await llm_requests(devsim) == []
        assert (
            await count_messages(clean_db, "direction = 'INBOUND' AND user_id IS NULL")
            == 3
        )

    async def test_failing_assistant_gets_one_apology_and_no_retry_loop(
        self, texted, js, devsim, nats_client
    ):
        await texted("please #fail")
        sent = await replies_settle(devsim, PHONE, 1, wait=TEST_ACK_WAIT_SECONDS + 1)
        assert len(sent) == 1
        assert sent[0]["body"].startswith("Sorry, your assistant couldn't answer")
        assert len(await llm_requests(devsim)) == 1
        info = await js.consumer_info(Stream.INBOUND, "messaging-inbound-whatsapp")
        assert info.num_ack_pending == 0
        assert info.num_redelivered == 0

    async def test_a_starting_assistant_is_waited_for_not_apologised_for(
        self, start_messaging, register, js, devsim, devsim_url, clean_db
    ):
        async with cuttable(devsim_url) as gateway:
            await gateway.cut()  # restarting: connections are refused
            await register(PHONE, endpoint=gateway.url(devsim_url))
            await start_messaging()
            await publish(js, inbound(PHONE, "are you up", sid="SMwait"))
            await eventually(
                lambda: clean_db.fetchval(
                    "SELECT 1 FROM messages WHERE twilio_sid = 'SMwait'"
                )
            )
            await asyncio.sleep(2)
            assert await sent_to(devsim, PHONE) == []

            await gateway.start()
            sent = await replies_settle(devsim, PHONE, 1, wait=1)

        assert [m["body"] for m in sent] == ["Echo: are you up"]
        assert len(await llm_requests(devsim)) == 1
        assert await count_dead_letters(js, CONSUMERS.MESSAGING_INBOUND_WHATSAPP) == 0

    async def test_a_gateway_that_closes_idle_connections_still_answers(
        self, start_messaging, register, js, devsim, devsim_url
    ):
        # OpenClaw's server closes a kept-alive connection after 5 s idle; a
        # turn sent on it just then (or on one to a gateway re-created at the
        # same address) got nothing back and the user an apology.
        async with one_request_per_connection(devsim_url) as gateway:
            await register(PHONE, endpoint=gateway)
            await start_messaging()
            await publish(js, inbound(PHONE, "first", sid="SMka1"))
            await replies_settle(devsim, PHONE, 1, wait=0.5)
            await publish(js, inbound(PHONE, "second", sid="SMka2"))
            sent = await replies_settle(devsim, PHONE, 2, wait=1)

        assert [m["body"] for m in sent] == ["Echo: first", "Echo: second"]

    async def test_a_turn_failed_before_any_model_call_is_asked_once_more(
        self, start_messaging, register, js, devsim, devsim_url
    ):
        asked_again = sample("yourclaw_messaging_turns_total", outcome="asked_again")
        async with first_turn_fails(devsim_url) as gateway:
            await register(PHONE, endpoint=gateway)
            await start_messaging()
            await publish(js, inbound(PHONE, "good morning", sid="SMthaw1"))
            sent = await replies_settle(devsim, PHONE, 1, wait=1)

        assert [m["body"] for m in sent] == ["Echo: good morning"]
        assert len(await llm_requests(devsim)) == 1
        assert (
            sample("yourclaw_messaging_turns_total", outcome="asked_again")
            == asked_again + 1
        )

    @pytest.mark.parametrize("failure", ["after a model call", "another error"])
    async def test_a_turn_failed_after_a_model_call_or_otherwise_is_not_asked_again(
        self, failure, start_messaging, register, js, devsim, devsim_url, clean_db
    ):
        # After a model call, what the turn did (the model's tool calls) would
        # be done twice; another error (a provider's outage, say) would only
        # come again, later.
        user_id: uuid.UUID | None = None

        async def model_called() -> None:
            await clean_db.execute(
                """
                INSERT INTO llm_calls (user_id, assistant_id, provider, model,
                    endpoint, key_source, status, price_version)
                VALUES ($1, $2, 'anthropic', 'claude-sonnet-4-5', 'messages',
                    'PLATFORM', 200, 'test')
                """,
                user_id,
                uuid.uuid4(),
            )

        failing = (
            first_turn_fails(devsim_url, model_called)
            if failure == "after a model call"
            else first_turn_fails(
                devsim_url, error="LLM request failed: provider overloaded"
            )
        )
        async with failing as gateway:
            user_id = await register(PHONE, endpoint=gateway)
            await start_messaging()
            await publish(js, inbound(PHONE, "remind me at five", sid="SMthaw2"))
            sent = await replies_settle(devsim, PHONE, 1, wait=2)

        assert len(sent) == 1
        assert sent[0]["body"].startswith("Sorry, your assistant couldn't answer")
        assert await llm_requests(devsim) == []

    async def test_an_assistant_that_never_starts_gets_one_apology(
        self, start_messaging, register, js, devsim, devsim_url
    ):
        async with cuttable(devsim_url) as gateway:
            await gateway.cut()
            await register(PHONE, endpoint=gateway.url(devsim_url))
            await start_messaging(assistant_not_ready_deliveries=2)
            await publish(js, inbound(PHONE, "hello?", sid="SMnever"))

            sent = await replies_settle(devsim, PHONE, 1, wait=3)

        assert len(sent) == 1
        assert sent[0]["body"].startswith("Sorry")

    async def test_assistant_timeout_gets_an_apology(self, texted, devsim):
        await texted("slow one #sleep=3", assistant_timeout_seconds=1)
        sent = await replies_settle(devsim, PHONE, 1, wait=0)
        assert sent[0]["body"].startswith("Sorry")

    async def test_long_reply_is_split_in_order(self, texted, devsim, clean_db):
        await texted("tell me a lot #long=4000")
        sent = await replies_settle(devsim, PHONE, 3)
        assert len(sent) == 3
        assert all(len(m["body"]) <= 1600 for m in sent)
        parts = await clean_db.fetch(
            "SELECT part, body, twilio_sid FROM messages WHERE direction = 'OUTBOUND' ORDER BY part"
        )
        assert [p["twilio_sid"] for p in parts] == [m["sid"] for m in sent]
        assert sum(len(p["body"]) for p in parts) >= 4000 - 3

    async def test_assistant_not_ready_and_inactive_subscription_get_clear_replies(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await clean_db.execute(
            "UPDATE assistants SET status = 'PROVISIONING' WHERE user_id = $1", user_id
        )
        await start_messaging()
        await publish(js, inbound(PHONE, "are you there"))
        sent = await replies_settle(devsim, PHONE, 1, wait=0)
        assert "still being set up" in sent[0]["body"]
        await clean_db.execute(
            "UPDATE subscriptions SET status = 'CANCELED' WHERE user_id = $1", user_id
        )
        await publish(js, inbound(PHONE, "hello again"))
        sent = await replies_settle(devsim, PHONE, 2, wait=0)
        assert "subscription isn't active" in sent[1]["body"]
        assert await llm_requests(devsim) == []


class TestTurn:
    async def test_turn_streams_with_usage_and_records_tokens(
        self, texted, devsim, clean_db
    ):
        user_id = await texted("count my tokens")
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
        self, texted, js, devsim, clean_db, devsim_url
    ):
        user_id = await texted("my door is blue")
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
        assert await count_messages(clean_db, "direction = 'INBOUND'") == 8

    async def test_minute_limit_says_when_to_write_again(
        self, start_messaging, register, js, devsim
    ):
        await register(PHONE)
        await clear_of_a_minute_boundary()
        await start_messaging(rate_limit_msg_per_min=2)
        window = datetime.now(UTC).replace(second=0, microsecond=0)
        for i in range(5):
            await publish(js, inbound(PHONE, f"quick {i}"))
        sent = await settle(devsim, PHONE, 3, wait=1.5)
        bodies = [m["body"] for m in sent]
        assert len(bodies) == 3
        (notice,) = [b for b in bodies if "limit of 2 messages per minute" in b]
        assert f"at {window + timedelta(minutes=1):%H:%M} UTC" in notice

    async def test_stop_on_whatsapp_is_limited_like_any_message(
        self, start_messaging, register, js, devsim
    ):
        # STOP is an SMS carrier's keyword: on WhatsApp it is only a message.
        await register(PHONE)
        await clear_of_a_minute_boundary()
        await start_messaging(rate_limit_msg_per_min=1)
        await publish(js, inbound(PHONE, "hi"))
        await settle(devsim, PHONE, 1, wait=0)
        await publish(js, inbound(PHONE, "STOP"))
        sent = await settle(devsim, PHONE, 2, wait=1.0)
        assert len(sent) == 2
        assert "limit of 1 message per minute" in sent[1]["body"]

    async def test_an_exempt_message_in_a_batch_is_stored_once_never_counted(
        self, register, clean_db
    ):
        exempt_user = await register(PHONE)
        other_user = await register(OTHER)
        check = Limits(1, 0, 0).inbound_check()
        Inbound = repository.inbound.Inbound
        batch = [
            Inbound("SMexempt", "whatsapp", PHONE, "STOP", 0, exempt=True),
            Inbound("SMcounted", "whatsapp", OTHER, "STOP", 0),
        ]
        async with clean_db.acquire() as conn:
            await repository.inbound.receive(
                conn,
                [
                    Inbound("SMfirst1", "whatsapp", PHONE, "hi", 0),
                    Inbound("SMfirst2", "whatsapp", OTHER, "hi", 0),
                ],
                limits=check,
            )

            exempt, counted = await repository.inbound.receive(
                conn, batch, limits=check
            )
            # A redelivery of the batch: stored already, nothing counted again.
            again = await repository.inbound.receive(conn, batch, limits=check)

            minute = await conn.fetch(
                "SELECT user_id, count FROM rate_windows WHERE scope = 'minute'"
            )
        assert (exempt.is_new, exempt.limited, exempt.notified) == (True, None, False)
        assert (counted.is_new, counted.limited, counted.notified) == (
            True,
            "minute",
            True,
        )
        assert [(r.is_new, r.limited) for r in again] == [(False, None)] * 2
        assert {r["user_id"]: r["count"] for r in minute} == {
            exempt_user: 1,
            other_user: 2,
        }
        assert await count_messages(clean_db, "twilio_sid = 'SMexempt'") == 1
        assert await count_messages(clean_db, "in_reply_to = 'SMexempt'") == 0
        assert await count_messages(clean_db, "in_reply_to = 'SMcounted'") == 1

    async def test_token_allowance_stops_the_assistant_for_the_day(
        self, texted, js, devsim
    ):
        await texted("one two three four five six", rate_limit_tokens_per_day=5)
        await settle(devsim, PHONE, 1, wait=0.3)
        await publish(js, inbound(PHONE, "more please"))
        await publish(js, inbound(PHONE, "and more"))
        sent = await settle(devsim, PHONE, 2, wait=1.5)
        assert len(sent) == 2
        assert "today's allowance of 5 tokens" in sent[1]["body"]
        assert len(await llm_requests(devsim)) == 1


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
        url = await self.upload(devsim, b"\x00\x00\x00\x18ftypmp42", "video/mp4")
        await publish(js, with_media(PHONE, "", [(url, "video/mp4")]))
        (reply,) = await settle(devsim, PHONE, 1)
        assert "not video files yet" in reply["body"]
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


class TestUnreadableToken:
    async def test_token_encrypted_with_another_key_gets_an_apology(
        self, start_messaging, register, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        other = SecretBox(generate_key()).encrypt("tok", owner=str(user_id))
        await clean_db.execute(
            "UPDATE assistants SET gateway_token_encrypted = $2 WHERE user_id = $1",
            user_id,
            other,
        )
        await start_messaging()
        await publish(js, inbound(PHONE, "hello"))
        sent = await replies_settle(devsim, PHONE, 1)
        assert len(sent) == 1
        assert sent[0]["body"].startswith("Sorry")
        assert await llm_requests(devsim) == []


class TestPoison:
    async def test_a_message_postgres_refuses_is_dead_lettered_at_once(
        self, texted, js, devsim, clean_db
    ):
        await texted("nul \x00 byte", sid="SMpoison")
        await publish(js, inbound(PHONE, "after it", sid="SMafter"))

        sent = await replies_settle(devsim, PHONE, 1, wait=TEST_ACK_WAIT_SECONDS + 1)

        assert [m["body"] for m in sent] == ["Echo: after it"]
        spec = CONSUMERS.MESSAGING_INBOUND_WHATSAPP
        assert await count_dead_letters(js, spec) == 1
        info = await js.consumer_info(Stream.INBOUND, spec.durable)
        assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
        assert await count_messages(clean_db, "twilio_sid = 'SMpoison'") == 0

    async def test_a_refused_message_in_a_batch_fails_only_itself(
        self, register, clean_db, monkeypatch
    ):
        await register(PHONE)
        await register(OTHER)
        batches: list[int] = []
        receive = repository.inbound.receive

        async def counting(conn, batch, **kw):
            batches.append(len(batch))
            return await receive(conn, batch, **kw)

        monkeypatch.setattr(repository.inbound, "receive", counting)
        turns = Turns(
            pool=clean_db,
            channels={},
            assistant=None,
            secrets=None,
            commands=None,
            app_url="",
            limits=Limits(0, 0, 0),
        )

        results = await asyncio.gather(
            turns._receive(
                repository.inbound.Inbound("SMgood1", "whatsapp", PHONE, "hi", 0)
            ),
            turns._receive(
                repository.inbound.Inbound("SMbad", "whatsapp", STRANGER, "\x00", 0)
            ),
            turns._receive(
                repository.inbound.Inbound("SMgood2", "whatsapp", OTHER, "yo", 0)
            ),
            return_exceptions=True,
        )

        assert batches == [3, 1, 1, 1]
        assert results[0].is_new
        assert results[2].is_new
        assert isinstance(results[1], Unstorable)
        assert await count_messages(clean_db) == 2


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
            return repository.outbound.Replies(
                inbound_sid=sid,
                user_id=user_id,
                channel="whatsapp",
                address=phone,
                parts=parts,
                turn=repository.outbound.Turn("http://gw:1", *tokens),
            )

        async with clean_db.acquire() as conn:
            (earlier,) = await repository.outbound.add_many_replies(
                conn, [answer("SMb", second, "+15551240002", ["old"], (1, 1))]
            )
            stored = await repository.outbound.add_many_replies(
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


class TestWhereWhatsAppIsAllowed:
    async def test_a_number_outside_the_allowed_countries_is_told_where_to_go(
        self, texted, js, devsim, clean_db
    ):
        """Meta's policy: no general-purpose assistant over WhatsApp there."""
        user_id = await texted(
            "what's the weather?", whatsapp_allowed_countries="IT BR"
        )
        (reply,) = await settle(devsim, PHONE, 1)
        assert "WhatsApp can't carry your assistant in your country" in reply["body"]
        assert await llm_requests(devsim) == []
        # Nothing is lost: the message is stored like any other.
        assert (
            await count_messages(
                clean_db, "user_id = $1 AND direction = 'INBOUND'", user_id
            )
            == 1
        )

    async def test_and_nothing_we_send_first_goes_there(
        self, register, start_messaging, js, devsim, clean_db
    ):
        user_id = await register(PHONE)
        await start_messaging(whatsapp_allowed_countries="IT")
        await publish(js, OutboundWhatsApp(user_id=user_id, body="Reminder: call Sam"))
        # Handled (acked) without sending: the consumer has nothing pending.
        consumer = CONSUMERS.MESSAGING_OUTBOUND_WHATSAPP

        async def handled() -> bool:
            info = await js.consumer_info(consumer.stream, consumer.durable)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(handled)
        assert await sent_to(devsim, PHONE) == []
        assert await count_messages(clean_db, "direction = 'OUTBOUND'") == 0
