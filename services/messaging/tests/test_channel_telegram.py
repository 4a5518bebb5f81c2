"""Telegram through the Bot API stand-in: replies by sendMessage (split at
4,096 characters, 429's retry_after honoured, typing while the assistant
works), the answers to `/start <code>`, an unlinked chat, media by getFile."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import aiohttp
import httpx
import pytest
import pytest_asyncio
from yourclaw_common.crypto import SecretBox
from yourclaw_common.events import InboundMedia, InboundTelegram, OutboundWhatsApp
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.cli import register_dev_user
from yourclaw_devkit.defaults import DEV_GATEWAY_TOKEN
from yourclaw_devkit.llm_sim import build_reply, spoken_text
from yourclaw_devkit.pytest_plugin import sent_to
from yourclaw_devkit.telegram_sim import TelegramSim
from yourclaw_messaging import replies
from yourclaw_messaging.channels.markup import telegram_html
from yourclaw_messaging.channels.telegram import TelegramChannel
from yourclaw_messaging.errors import MediaRejected
from yourclaw_messaging.telegram import TelegramClient

from .conftest import TEMPLATE_NOTIFY, llm_requests, sample

CHAT = 424242
PHONE_AND_CHAT = "+15551249999"
APP_URL = "https://app.yourclaw.test"
_updates = itertools.count(900_000_000)


@pytest_asyncio.fixture(loop_scope="session")
async def telegram(start_messaging, telegram_sim):
    """Start messaging with Telegram on the stand-in."""

    async def start(**overrides) -> None:
        await start_messaging(
            telegram_bot_token=telegram_sim.token,
            telegram_api_base=telegram_sim.url,
            **overrides,
        )

    telegram_sim.state.clear()
    return start


async def linked_user(pool, devsim_url, encryption_key, chat_id: int = CHAT):
    """A user with a READY assistant (the LLM stand-in) and a linked chat."""
    async with pool.acquire() as conn:
        user = await register_dev_user(
            conn,
            phone=f"+1555{chat_id % 10_000_000:07d}",
            endpoint=devsim_url,
            token=DEV_GATEWAY_TOKEN,
            box=SecretBox(encryption_key),
            link_phone=False,
        )
        await conn.execute(
            "INSERT INTO telegram_links (user_id, chat_id, linked_by) "
            "VALUES ($1, $2, 1)",
            user.user_id,
            chat_id,
        )
    return user.user_id


@pytest_asyncio.fixture(loop_scope="session")
async def linked(clean_db, devsim_url, encryption_key):
    """The user of CHAT (a READY assistant, the chat linked); their id."""
    return await linked_user(clean_db, devsim_url, encryption_key)


def said(
    telegram_sim: TelegramSim, text: str, *, chat_id: int = CHAT, **fields
) -> InboundTelegram:
    """What gateway-api publishes for a message the chat sends (the stand-in
    numbers it, so the bot's answers follow it)."""
    chat = telegram_sim.state.chat(chat_id, first_name="Ada")
    message = telegram_sim.state.message_from(chat, text=text)
    return InboundTelegram(
        update_id=next(_updates),
        chat_id=chat_id,
        message_id=message["message_id"],
        text=text,
        first_name="Ada",
        **fields,
    )


async def fault(telegram_sim: TelegramSim, method: str, code: int, **spec) -> None:
    """The stand-in's next `method` call to the chat fails with `code`."""
    async with httpx.AsyncClient(base_url=telegram_sim.url) as client:
        answer = await client.post(
            "/_devsim/telegram/faults",
            json={"method": method, "error_code": code, "chat_id": CHAT, **spec},
        )
    answer.raise_for_status()


async def answers(
    telegram_sim: TelegramSim, count: int, *, chat_id: int = CHAT, wait=1.0
):
    """The texts the bot sent the chat, once there are `count` (and a moment more)."""

    async def enough():
        return len(telegram_sim.state.sent(chat_id)) >= count

    await eventually(enough, timeout=15)
    await asyncio.sleep(wait)
    return [m["text"] for m in telegram_sim.state.sent(chat_id)]


class TestReplies:
    async def test_linked_chat_is_answered_by_send_message(
        self, linked, telegram, telegram_sim, js, clean_db, devsim
    ):
        await telegram()
        event = said(telegram_sim, "hello bot #sleep=1")
        await publish(js, event)
        assert await answers(telegram_sim, 1) == ["Echo: hello bot #sleep=1"]
        (sent,) = telegram_sim.state.sent(CHAT)
        row = await clean_db.fetchrow(
            "SELECT * FROM messages WHERE direction = 'OUTBOUND'"
        )
        assert (row["channel"], row["phone_e164"], row["user_id"]) == (
            "telegram",
            str(CHAT),
            linked,
        )
        assert row["status"] == "SENT"
        assert row["twilio_sid"] == f"tg:{CHAT}:{sent['message_id']}"
        assert row["in_reply_to"] == event.message_key
        # "typing…" while the assistant worked.
        assert [a["action"] for a in telegram_sim.state.actions(CHAT)][:1] == ["typing"]

    async def test_long_reply_is_split_at_4096_characters(
        self, linked, telegram, telegram_sim, js
    ):
        await telegram()
        await publish(js, said(telegram_sim, "essay #long=9000"))
        parts = await answers(telegram_sim, 3)
        assert len(parts) == 3
        assert all(len(p) <= 4096 for p in parts)
        assert " ".join(parts).split() == build_reply("#long=9000").split()

    async def test_429_retry_after_is_honoured_and_sent_once(
        self, linked, telegram, telegram_sim, js
    ):
        await fault(telegram_sim, "sendMessage", 429, retry_after=2)
        before = sample("yourclaw_messaging_telegram_sends_total", outcome="retried")
        await telegram()
        published = time.monotonic()
        await publish(js, said(telegram_sim, "busy?"))
        assert await answers(telegram_sim, 1) == ["Echo: busy?"]
        assert time.monotonic() - published >= 2
        after = sample("yourclaw_messaging_telegram_sends_total", outcome="retried")
        assert after - before == 1

    async def test_a_refused_send_is_recorded_failed(
        self, linked, telegram, telegram_sim, js, clean_db
    ):
        await fault(
            telegram_sim,
            "sendMessage",
            403,
            description="Forbidden: bot was blocked by the user",
        )
        await telegram()
        await publish(js, said(telegram_sim, "hi"))

        async def failed():
            return await clean_db.fetchrow(
                "SELECT status, error_code FROM messages "
                "WHERE direction = 'OUTBOUND' AND status = 'FAILED'"
            )

        row = await eventually(failed, timeout=15)
        assert row["error_code"] == "403"
        assert telegram_sim.state.sent(CHAT) == []


class TestMarkup:
    @pytest.mark.parametrize(
        ("text", "html"),
        [
            (
                "**Bold** and *it* and _x_ ~y~",
                "<b>Bold</b> and <b>it</b> and <i>x</i> <s>y</s>",
            ),
            ("snake_case and 2*3*4 and a * b", "snake_case and 2*3*4 and a * b"),
            ("# Title\n* one\n- two", "<b>Title</b>\n• one\n- two"),
            (
                "[docs](https://e.x/a_b_) <tag> & co",
                '<a href="https://e.x/a_b_">docs</a> &lt;tag&gt; &amp; co',
            ),
            (
                "```py\nif a < b:\n```\nuse `*x*`",
                "<pre>if a &lt; b:</pre>\nuse <code>*x*</code>",
            ),
            ("https://e.x/_a_ *b*", "https://e.x/_a_ <b>b</b>"),
        ],
    )
    def test_markup_as_telegram_html(self, text, html):
        assert telegram_html(text) == html

    async def test_the_assistants_markup_shows_as_formatting(
        self, linked, telegram, telegram_sim, js, clean_db
    ):
        await telegram()
        await publish(js, said(telegram_sim, "*tea* at 5 & `bring <cups>`"))
        assert await answers(telegram_sim, 1) == ["Echo: tea at 5 & bring <cups>"]
        (sent,) = telegram_sim.state.sent(CHAT)
        assert sent["entities"] == [
            {"offset": 6, "length": 3, "type": "bold"},
            {"offset": 17, "length": 12, "type": "code"},
        ]
        # The conversation keeps the reply as the assistant wrote it.
        body = await clean_db.fetchval(
            "SELECT body FROM messages WHERE direction = 'OUTBOUND'"
        )
        assert body == "Echo: *tea* at 5 & `bring <cups>`"

    async def test_markup_telegram_cannot_parse_goes_as_plain_text(
        self, linked, telegram, telegram_sim, js
    ):
        refusal = "Bad Request: can't parse entities: Unsupported start tag"
        await fault(telegram_sim, "sendMessage", 400, description=refusal)
        await telegram()
        await publish(js, said(telegram_sim, "*tea* at 5"))
        # Sent once, its marks as written rather than not at all.
        assert await answers(telegram_sim, 1) == ["Echo: *tea* at 5"]
        assert "entities" not in telegram_sim.state.sent(CHAT)[0]


class TestLinking:
    @pytest.mark.parametrize(
        ("link", "expected"),
        [
            ("linked", replies.TELEGRAM_LINKED),
            ("expired", replies.TELEGRAM_LINK_EXPIRED.format(app_url=APP_URL)),
            ("invalid", replies.TELEGRAM_LINK_INVALID.format(app_url=APP_URL)),
        ],
    )
    async def test_link_results_are_answered_without_the_assistant(
        self,
        telegram,
        telegram_sim,
        js,
        clean_db,
        devsim_url,
        encryption_key,
        devsim,
        link,
        expected,
    ):
        if link == "linked":  # gateway-api linked the chat before publishing
            await linked_user(clean_db, devsim_url, encryption_key)
        await telegram()
        await publish(js, said(telegram_sim, "/start", link=link))
        assert await answers(telegram_sim, 1) == [expected]
        assert await llm_requests(devsim) == []

    async def test_unlinked_chat_is_told_once_how_to_link(
        self, telegram, telegram_sim, js, clean_db, devsim
    ):
        await telegram()
        for text in ("hello?", "anyone there?"):
            await publish(js, said(telegram_sim, text))
        assert await answers(telegram_sim, 1, wait=2.0) == [
            replies.TELEGRAM_STRANGER.format(app_url=APP_URL)
        ]
        assert await llm_requests(devsim) == []
        stored = await clean_db.fetch(
            "SELECT user_id, channel FROM messages WHERE direction = 'INBOUND'"
        )
        assert [(r["user_id"], r["channel"]) for r in stored] == [
            (None, "telegram"),
            (None, "telegram"),
        ]

    async def test_bare_start_from_a_linked_chat_says_it_is_linked(
        self, linked, telegram, telegram_sim, js, devsim
    ):
        await telegram()
        await publish(js, said(telegram_sim, "/start"))
        assert await answers(telegram_sim, 1) == [replies.TELEGRAM_LINKED]
        assert await llm_requests(devsim) == []


class TestMedia:
    async def test_photo_reaches_the_assistant_as_a_data_uri(
        self, linked, telegram, telegram_sim, js, devsim
    ):
        stored, _ = telegram_sim.state.add_file(b"\xff\xd8\xff-a-jpeg", "image/jpeg")
        await telegram()
        media = (InboundMedia(url=stored.file_id, content_type="image/jpeg"),)
        await publish(js, said(telegram_sim, "what is this?", media=media))
        await answers(telegram_sim, 1)
        (request,) = await llm_requests(devsim)
        content = request["body"]["messages"][-1]["content"]
        assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")

    async def test_voice_note_is_transcribed_and_answered(
        self, linked, telegram, telegram_sim, js, devsim_url, devsim
    ):
        note, _ = telegram_sim.state.add_file(
            b"OggS\x00\x02what is on my calendar tomorrow", "audio/ogg"
        )
        await telegram(dev_llm_base_url=devsim_url)
        media = (InboundMedia(url=note.file_id, content_type="audio/ogg"),)
        await publish(js, said(telegram_sim, "", media=media))
        assert await answers(telegram_sim, 1) == [
            "Echo: (voice note) what is on my calendar tomorrow"
        ]
        heard, _ = await llm_requests(devsim)
        assert heard["body"]["file"]["content_type"] == "audio/ogg"

    async def test_voice_note_is_fetched_from_the_bot_api_only(
        self, telegram_sim, clean_db
    ):
        stored, _ = telegram_sim.state.add_file(b"OggS" + b"\x00" * 100, "audio/ogg")
        async with aiohttp.ClientSession() as http:
            channel = TelegramChannel(
                pool=clean_db,
                client=TelegramClient(
                    http, api_base=telegram_sim.url, token=telegram_sim.token
                ),
                app_url=APP_URL,
            )
            data, kind = await channel.fetch_media(stored.file_id, max_bytes=1000)
            assert (data[:4], kind) == (b"OggS", "audio/ogg")
            with pytest.raises(MediaRejected):
                await channel.fetch_media(stored.file_id, max_bytes=50)
            with pytest.raises(MediaRejected):
                await channel.fetch_media("not-a-file-id", max_bytes=1000)


async def voice_note(telegram_sim, text: str) -> InboundTelegram:
    """The chat sends a voice note saying `text` (the LLM stand-in hears it)."""
    note, _ = telegram_sim.state.add_file(b"OggS\x00\x02" + text.encode(), "audio/ogg")
    media = (InboundMedia(url=note.file_id, content_type="audio/ogg"),)
    return said(telegram_sim, "", media=media)


def audio_of(telegram_sim, message) -> bytes:
    stored = telegram_sim.state.file(message["voice"]["file_id"])
    assert stored is not None
    return stored.data


class TestVoiceReplies:
    async def test_a_short_answer_is_the_voice_messages_caption(
        self, linked, telegram, telegram_sim, js, devsim_url, devsim, clean_db
    ):
        await clean_db.execute("UPDATE users SET voice_replies = true")
        await telegram(dev_llm_base_url=devsim_url)

        await publish(js, await voice_note(telegram_sim, "what *time* is it"))

        await answers_or_voices(telegram_sim, 1)
        (sent,) = telegram_sim.state.sent(CHAT)
        answer = "Echo: (voice note) what *time* is it"
        # Its markup shows as formatting, as in a text reply.
        assert sent["caption"] == answer.replace("*", "")
        assert sent["caption_entities"] == [
            {"offset": len("Echo: (voice note) what "), "length": 4, "type": "bold"}
        ]
        assert "text" not in sent
        assert spoken_text(audio_of(telegram_sim, sent)) == answer
        # The caption is the reply part, recorded as sent by that message.
        row = await clean_db.fetchrow(
            "SELECT status, twilio_sid FROM messages WHERE direction = 'OUTBOUND'"
        )
        assert (row["status"], row["twilio_sid"]) == (
            "SENT",
            f"tg:{CHAT}:{sent['message_id']}",
        )
        *_, spoke = await llm_requests(devsim)
        assert spoke["path"] == "/v1/audio/speech"
        assert spoke["headers"]["x-yourclaw-user"] == str(linked)

    async def test_an_answer_too_long_for_a_caption_goes_as_text_then_voice(
        self, linked, telegram, telegram_sim, js, devsim_url, clean_db
    ):
        await clean_db.execute("UPDATE users SET voice_replies = true")
        await telegram(dev_llm_base_url=devsim_url)

        await publish(js, await voice_note(telegram_sim, "#long=1200"))

        await answers_or_voices(telegram_sim, 2)
        text, voice = telegram_sim.state.sent(CHAT)
        assert text["text"] == build_reply("(voice note) #long=1200")
        assert "caption" not in voice
        assert spoken_text(audio_of(telegram_sim, voice)) == text["text"]

    async def test_a_refused_voice_message_leaves_the_text(
        self, linked, telegram, telegram_sim, js, devsim_url, clean_db
    ):
        await clean_db.execute("UPDATE users SET voice_replies = true")
        await fault(
            telegram_sim,
            "sendVoice",
            400,
            description="Bad Request: VOICE_MESSAGES_FORBIDDEN",
        )
        await telegram(dev_llm_base_url=devsim_url)

        await publish(js, await voice_note(telegram_sim, "hello"))

        assert await answers(telegram_sim, 1) == ["Echo: (voice note) hello"]
        assert (
            await clean_db.fetchval(
                "SELECT status FROM messages WHERE direction = 'OUTBOUND'"
            )
            == "SENT"
        )

    async def test_off_by_default(self, linked, telegram, telegram_sim, js, devsim_url):
        await telegram(dev_llm_base_url=devsim_url)

        await publish(js, await voice_note(telegram_sim, "hello"))

        assert await answers(telegram_sim, 1) == ["Echo: (voice note) hello"]


async def answers_or_voices(telegram_sim, count: int, *, wait=1.0) -> None:
    async def enough():
        return len(telegram_sim.state.sent(CHAT)) >= count

    await eventually(enough, timeout=15)
    await asyncio.sleep(wait)
    assert len(telegram_sim.state.sent(CHAT)) == count


class TestMessagesWeSendFirst:
    async def test_a_telegram_only_user_gets_notices_free_form(
        self, linked, telegram, telegram_sim, js, clean_db
    ):
        telegram_sim.state.chat(CHAT)
        await telegram()
        await publish(
            js,
            OutboundWhatsApp(
                event_id=uuid.uuid4(), user_id=linked, body="Reminder: stretch"
            ),
        )
        assert await answers(telegram_sim, 1) == ["Reminder: stretch"]
        row = await clean_db.fetchrow(
            "SELECT kind, channel, status FROM messages WHERE direction = 'OUTBOUND'"
        )
        assert (row["kind"], row["channel"], row["status"]) == (
            "proactive",
            "telegram",
            "SENT",
        )

    async def test_reminders_follow_the_preferred_channel(
        self, telegram, telegram_sim, js, clean_db, devsim, devsim_url, encryption_key
    ):
        """A user on WhatsApp and Telegram: a reminder goes where they last
        wrote, until `/channel` names one; then it goes there."""
        async with clean_db.acquire() as conn:
            user = await register_dev_user(
                conn,
                phone=PHONE_AND_CHAT,
                endpoint=devsim_url,
                token=DEV_GATEWAY_TOKEN,
                box=SecretBox(encryption_key),
            )
            await conn.execute(
                "INSERT INTO telegram_links (user_id, chat_id, linked_by) "
                "VALUES ($1, $2, 1)",
                user.user_id,
                CHAT,
            )
        await telegram(twilio_template_notification=TEMPLATE_NOTIFY)

        async def remind(body: str) -> None:
            await publish(js, OutboundWhatsApp(user_id=user.user_id, body=body))

        await publish(js, said(telegram_sim, "hi"))
        await answers(telegram_sim, 1, wait=0)
        await remind("Reminder: stretch")  # they last wrote on Telegram
        assert (await answers(telegram_sim, 2))[1] == "Reminder: stretch"

        await publish(js, said(telegram_sim, "/channel whatsapp"))
        told = (await answers(telegram_sim, 3))[2]
        assert "now reach you on whatsapp" in told
        await remind("Reminder: drink water")

        async def on_whatsapp():
            return await sent_to(devsim, PHONE_AND_CHAT)

        (reminder,) = await eventually(on_whatsapp)
        # Outside WhatsApp's 24-hour window (they never wrote there): the template.
        assert "Reminder: drink water" in reminder["body"]
        assert len(telegram_sim.state.sent(CHAT)) == 3
