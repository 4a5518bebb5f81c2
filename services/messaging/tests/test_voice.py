"""Voice notes over real NATS and Postgres with the Twilio and LLM stand-ins:
transcribed and answered as the user's text, or one plain reply and the
assistant not asked (too large, not decodable, not on a Twilio host, a failed
transcription)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from yourclaw_common.events import InboundMedia, InboundWhatsApp
from yourclaw_common.media_links import MEDIA_PATH, media_signature_ok
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.llm_sim import build_reply, speech_audio, spoken_text
from yourclaw_devkit.serving import running_app
from yourclaw_messaging.errors import MediaRejected
from yourclaw_messaging.outgoing import Planned
from yourclaw_messaging.speech import Speaker, SpeechFailed, SpeechRefused
from yourclaw_messaging.voice import Transcriber, VoiceNotes

from .conftest import PHONE, count_messages, inbound, llm_requests, sample, settle

TRANSCRIPTIONS = "/v1/audio/transcriptions"


def voice_note(url: str, content_type: str = "audio/ogg") -> InboundWhatsApp:
    """A WhatsApp voice note as gateway-api publishes it (no body)."""
    return inbound(PHONE, "", media=[(url, content_type)])


async def upload(devsim, data: bytes, content_type: str = "audio/ogg") -> str:
    """Host `data` at the Twilio stand-in as an inbound attachment; its MediaUrl."""
    resp = await devsim.post(
        "/_devsim/media", content=data, headers={"content-type": content_type}
    )
    resp.raise_for_status()
    return str(resp.json()["url"])


async def inbound_stored(pool, sid: str) -> bool:
    return bool(
        await count_messages(pool, "twilio_sid = $1 AND direction = 'INBOUND'", sid)
    )


async def voice_replies_on(pool, user_id) -> None:
    await pool.execute("UPDATE users SET voice_replies = true WHERE id = $1", user_id)


@pytest_asyncio.fixture(loop_scope="session")
async def listening(
    register, start_messaging, devsim_url, clean_db
) -> Callable[..., Awaitable[uuid.UUID]]:
    """PHONE's user, registered, and a messaging just started whose voice notes
    the LLM stand-in transcribes (and speaks the answers to).

    `listening(speaks=False, **settings_overrides)` returns the user's id;
    `speaks`: the user turned voice replies on.
    """

    async def start(*, speaks: bool = False, **overrides) -> uuid.UUID:
        user_id = await register(PHONE)
        if speaks:
            await voice_replies_on(clean_db, user_id)
        await start_messaging(dev_llm_base_url=devsim_url, **overrides)
        return user_id

    return start


@pytest_asyncio.fixture(loop_scope="session")
async def foreign_host() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A host that is not Twilio's (127.0.0.2), serving audio to anyone and
    recording every request with its headers."""
    seen: list[dict[str, Any]] = []

    async def serve(request: Request) -> Response:
        seen.append({"path": request.url.path, "headers": dict(request.headers)})
        return Response(b"OggS stolen credentials please", media_type="audio/ogg")

    app = Starlette(routes=[Route("/{path:path}", serve, methods=["GET"])])
    async with running_app(app, host="127.0.0.2") as url:
        yield url, seen


class TestVoiceNotes:
    async def test_a_voice_note_is_transcribed_and_answered_as_the_users_text(
        self, listening, js, devsim
    ):
        user_id = await listening()
        url = await upload(devsim, b"OggS\x00\x02what is on my calendar tomorrow")

        await publish(js, voice_note(url))

        (reply,) = await settle(devsim, PHONE, 1)
        assert reply["body"] == "Echo: (voice note) what is on my calendar tomorrow"
        heard, asked = await llm_requests(devsim)
        assert heard["path"] == TRANSCRIPTIONS
        assert heard["body"]["model"] == "whisper-1"
        assert heard["body"]["file"]["filename"] == "voice.ogg"
        assert heard["body"]["file"]["content_type"] == "audio/ogg"
        assert heard["headers"]["x-yourclaw-user"] == str(user_id)
        assert asked["user_text"] == "(voice note) what is on my calendar tomorrow"

    async def test_an_oversized_voice_note_gets_one_reply_and_is_kept(
        self, listening, js, devsim, clean_db
    ):
        await listening(voice_max_bytes=64)
        note = voice_note(await upload(devsim, b"OggS" + b"la " * 100))

        await publish(js, note)

        sent = await settle(devsim, PHONE, 1, wait=1.5)
        assert len(sent) == 1
        assert "couldn't be downloaded" in sent[0]["body"]
        assert "the limit is 64 bytes" in sent[0]["body"]
        assert await llm_requests(devsim) == []
        assert await inbound_stored(clean_db, note.message_sid)

    @pytest.mark.parametrize(
        ("declared", "served", "data", "kind"),
        [
            # A format the provider does not decode.
            ("audio/amr", "audio/amr", b"#!AMR hello", "amr"),
            # Declared audio, served as a page.
            ("audio/ogg", "text/html", b"<html>hello</html>", "html"),
        ],
    )
    async def test_audio_the_provider_cannot_decode_gets_one_reply(
        self, listening, js, devsim, declared, served, data, kind
    ):
        await listening()
        url = await upload(devsim, data, served)

        await publish(js, voice_note(url, declared))

        sent = await settle(devsim, PHONE, 1, wait=1.5)
        assert [m["body"] for m in sent] == [
            f"Sorry, your assistant can't listen to {kind} audio. Please record "
            "a voice note in the app, or type your message."
        ]
        assert await llm_requests(devsim) == []

    async def test_media_on_a_foreign_host_is_refused_without_credentials(
        self, listening, js, devsim, foreign_host
    ):
        url, seen = foreign_host
        await listening()

        await publish(js, voice_note(f"{url}/2010-04-01/Media/ME1"))

        (reply,) = await settle(devsim, PHONE, 1, wait=1.5)
        assert "couldn't be downloaded" in reply["body"]
        assert seen == []  # not contacted at all, so no credentials either
        assert await llm_requests(devsim) == []

    async def test_a_failed_transcription_gets_one_reply(self, listening, js, devsim):
        await listening()
        url = await upload(devsim, b"OggS please #fail=503")

        await publish(js, voice_note(url))

        sent = await settle(devsim, PHONE, 1, wait=1.5)
        assert len(sent) == 1
        assert "couldn't be transcribed just now" in sent[0]["body"]
        assert [r["path"] for r in await llm_requests(devsim)] == [TRANSCRIPTIONS]

    async def test_over_the_allowance_it_is_kept_and_nothing_is_said(
        self, listening, js, devsim, clean_db
    ):
        # The proxy answers 402 and has told the user once (usage.cap_reached),
        # as it does for a text message over the cap.
        await listening()
        note = voice_note(await upload(devsim, b"OggS hello #fail=402"))

        await publish(js, note)

        async def settled():
            return await clean_db.fetchval(
                "SELECT status FROM messages WHERE in_reply_to = $1",
                note.message_sid,
            )

        assert await eventually(settled, timeout=15) == "SKIPPED"
        assert await settle(devsim, PHONE, 0, wait=1.0) == []
        assert await inbound_stored(clean_db, note.message_sid)

    @pytest.mark.parametrize("proxied", [False, True])
    async def test_without_a_transcription_service_it_says_so(
        self, register, start_messaging, js, devsim, devsim_url, proxied
    ):
        await register(PHONE)
        # proxied: llm-proxy is named, but messaging has no credential for it.
        await start_messaging(
            **({"voice_transcription_url": devsim_url} if proxied else {})
        )
        url = await upload(devsim, b"OggS hello")

        await publish(js, voice_note(url))

        (reply,) = await settle(devsim, PHONE, 1, wait=1.5)
        assert "can't listen to voice notes here yet" in reply["body"]
        assert await llm_requests(devsim) == []


class _Channel:
    """A channel whose downloads name no type, as Telegram's file server's do."""

    def __init__(self, data: bytes, content_type: str):
        self.data, self.content_type = data, content_type
        self.asked: list[str] = []

    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        self.asked.append(url)
        if len(self.data) > max_bytes:
            raise MediaRejected("too large")
        return self.data, self.content_type


class TestVoiceNotesOfAnyChannel:
    async def test_an_untyped_download_keeps_the_declared_type(
        self, devsim, devsim_url
    ):
        channel = _Channel(b"OggS remind me at noon", "application/octet-stream")
        async with aiohttp.ClientSession() as http:
            notes = VoiceNotes(Transcriber(http, devsim_url, token="dev"))
            text = await notes.content(
                channel,
                [InboundMedia(url="AwACAgQAAxkBAAIB", content_type="audio/ogg")],
                "and this",
                user_id=uuid.uuid4(),
                key="tg:1:2",
            )

        assert channel.asked == ["AwACAgQAAxkBAAIB"]  # a Telegram file id
        assert text == "and this\n\n(voice note) remind me at noon"
        (heard,) = await llm_requests(devsim)
        assert heard["body"]["file"]["content_type"] == "audio/ogg"

    async def test_silence_gets_its_own_reply(self, devsim, devsim_url):
        async with aiohttp.ClientSession() as http:
            notes = VoiceNotes(Transcriber(http, f"{devsim_url}/v1", token="dev"))
            answer = await notes.content(
                _Channel(b"OggS\x00\x00", "audio/ogg"),
                [InboundMedia(url="x", content_type="audio/ogg; codecs=opus")],
                "",
                user_id=uuid.uuid4(),
                key="tg:1:3",
            )

        assert isinstance(answer, Planned)
        assert answer.kind == "notice"
        assert "couldn't hear any words" in answer.parts[0]


MEDIA_KEY = "media-signing-key-for-tests-0123456789abcdef"
PUBLIC = "https://api.yourclaw.test"
SPEECH = "/v1/audio/speech"
VOICE_REPLIES = "yourclaw_messaging_voice_replies_total"


def signed_media(url: str) -> tuple[uuid.UUID, int, str]:
    """The media id, expiry and signature of a link messaging gave Twilio."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    name = parts.path.removeprefix(f"{MEDIA_PATH}/")
    assert name.endswith(".ogg")
    query = parse_qs(parts.query)
    return uuid.UUID(name.removesuffix(".ogg")), int(query["exp"][0]), query["sig"][0]


class TestVoiceRepliesOnWhatsApp:
    async def test_the_answer_to_a_voice_note_comes_as_text_and_audio(
        self, listening, js, devsim, clean_db
    ):
        user_id = await listening(
            speaks=True, media_url_signing_key=MEDIA_KEY, public_base_url=PUBLIC
        )
        url = await upload(devsim, b"OggS\x00\x02what is on my calendar tomorrow")

        await publish(js, voice_note(url))

        text, audio = await settle(devsim, PHONE, 2)
        answer = "Echo: (voice note) what is on my calendar tomorrow"
        assert (text["body"], text["media_urls"]) == (answer, [])
        assert audio["body"] == ""
        (link,) = audio["media_urls"]
        media_id, expires, signature = signed_media(link)
        assert media_signature_ok(MEDIA_KEY, media_id, expires, signature)
        assert 3000 < expires - time.time() <= 3600
        row = await clean_db.fetchrow(
            "SELECT user_id, content, content_type FROM voice_reply_media "
            "WHERE id = $1",
            media_id,
        )
        assert (row["user_id"], row["content_type"]) == (user_id, "audio/ogg")
        # The stand-in's Ogg/Opus of the answer, as the speech endpoint gave it.
        assert spoken_text(bytes(row["content"])) == answer
        *_, spoke = await llm_requests(devsim)
        assert spoke["path"] == SPEECH
        assert spoke["body"]["model"] == "tts-1"
        assert spoke["body"]["response_format"] == "opus"
        assert spoke["headers"]["x-yourclaw-user"] == str(user_id)
        # One reply part recorded; the audio is no part of the turn's record.
        assert await count_messages(clean_db, "direction = 'OUTBOUND'") == 1

    async def test_a_text_message_is_answered_in_text(self, listening, js, devsim):
        await listening(speaks=True, media_url_signing_key=MEDIA_KEY)

        await publish(js, inbound(PHONE, "what time is it"))

        (reply,) = await settle(devsim, PHONE, 1, wait=1.5)
        assert reply["media_urls"] == []
        assert SPEECH not in [r["path"] for r in await llm_requests(devsim)]

    @pytest.mark.parametrize(
        ("spoken", "overrides", "outcome"),
        [
            # Longer than VOICE_REPLY_MAX_CHARS: not spoken at all.
            ("#long=1550", {}, "too_long"),
            # The speech endpoint refuses (400: no voice given): text only.
            ("hello there", {"voice_reply_voice": ""}, "failed"),
            # No signing key: Twilio could not fetch it, so none is made.
            ("hello there", {"media_url_signing_key": ""}, None),
        ],
    )
    async def test_text_only_when_the_answer_cannot_be_spoken(
        self, listening, js, devsim, clean_db, spoken, overrides, outcome
    ):
        counted = {
            o: sample(VOICE_REPLIES, channel="whatsapp", outcome=o)
            for o in ("too_long", "failed", "spoken")
        }
        await listening(
            speaks=True, **{"media_url_signing_key": MEDIA_KEY, **overrides}
        )
        url = await upload(devsim, b"OggS\x00\x02" + spoken.encode())

        await publish(js, voice_note(url))

        (reply,) = await settle(devsim, PHONE, 1, wait=1.5)
        assert reply["body"] == build_reply(f"(voice note) {spoken}")
        assert reply["media_urls"] == []
        assert SPEECH not in [r["path"] for r in await llm_requests(devsim)]
        assert {
            o: sample(VOICE_REPLIES, channel="whatsapp", outcome=o) - before
            for o, before in counted.items()
        } == {o: float(o == outcome) for o in counted}
        assert await clean_db.fetchval("SELECT count(*) FROM voice_reply_media") == 0


@pytest_asyncio.fixture(loop_scope="session")
async def speech_provider() -> AsyncIterator[str]:
    """A speech endpoint that streams its audio in small chunks, as providers
    do, or answers as the request's `voice` asks (`402`, `html`)."""

    async def speech(request: Request) -> Response:
        body = await request.json()
        if body["voice"] == "402":
            return Response(b'{"detail": "over"}', status_code=402)
        if body["voice"] == "html":
            return Response(b"<html>hi</html>", media_type="text/html")

        async def chunks() -> AsyncIterator[bytes]:
            audio = speech_audio(body["input"])
            for at in range(0, len(audio), 1000):
                await asyncio.sleep(0.001)
                yield audio[at : at + 1000]

        return StreamingResponse(chunks(), media_type="audio/ogg")

    app = Starlette(routes=[Route("/v1/audio/speech", speech, methods=["POST"])])
    async with running_app(app) as url:
        yield url


class TestSpeaker:
    async def test_audio_streamed_in_chunks_arrives_whole(self, speech_provider):
        text = "A long answer, read aloud. " * 40  # over a minute of speech
        async with aiohttp.ClientSession() as http:
            speaker = Speaker(http, speech_provider, token="t")

            spoken = await speaker.speak(text, user_id=uuid.uuid4())

        assert spoken.audio == speech_audio(text)
        assert spoken.content_type == "audio/ogg"

    @pytest.mark.parametrize(
        ("voice", "error"), [("402", SpeechRefused), ("html", SpeechFailed)]
    )
    async def test_a_refusal_or_an_answer_that_is_no_audio(
        self, speech_provider, voice, error
    ):
        async with aiohttp.ClientSession() as http:
            speaker = Speaker(http, speech_provider, token="t", voice=voice)

            with pytest.raises(error):
                await speaker.speak("hello", user_id=uuid.uuid4())
