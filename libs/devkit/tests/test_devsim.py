from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from yourclaw_common.testing import eventually
from yourclaw_devkit.defaults import DEV_TWILIO_ACCOUNT_SID as SID
from yourclaw_devkit.defaults import DEV_TWILIO_AUTH_TOKEN as TOKEN
from yourclaw_devkit.devsim import (
    ASSISTANT_READY_TEMPLATE,
    DevsimSettings,
    running_devsim,
)
from yourclaw_devkit.llm_sim import (
    ogg_packets,
    pick_user_text,
    speech_audio,
    spoken_text,
    transcript_of,
)
from yourclaw_devkit.serving import running_app

MESSAGES_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
AUTH = (SID, TOKEN)
USER = "whatsapp:+15551234567"
OTHER = "whatsapp:+15557654321"
SENDER = "whatsapp:+14155238886"


async def send(
    client: httpx.AsyncClient, to: str = USER, body: str | None = "hi", **extra: Any
) -> httpx.Response:
    """Create a message as messaging does (`body` None: a template or media only)."""
    data = {"To": to, "From": SENDER, **({"Body": body} if body is not None else {})}
    return await client.post(MESSAGES_PATH, data={**data, **extra}, auth=AUTH)


def parse_sse(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


class TestHealth:
    async def test_ok(self, devsim):
        response = await devsim.get("/_devsim/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestCreateMessage:
    async def test_returns_twilio_shaped_message(self, devsim):
        response = await send(devsim, body="hello there")

        assert response.status_code == 201
        message = response.json()
        assert message["sid"].startswith("SM")
        assert len(message["sid"]) == 34
        int(message["sid"][2:], 16)
        assert message["account_sid"] == SID
        assert message["to"] == USER
        assert message["from"] == SENDER
        assert message["body"] == "hello there"
        assert message["status"] == "queued"
        assert message["direction"] == "outbound-api"
        assert message["api_version"] == "2010-04-01"
        assert message["num_segments"] == "1"
        assert message["num_media"] == "0"
        assert message["error_code"] is None
        assert message["error_message"] is None
        assert message["price"] is None
        assert (
            message["uri"]
            == f"/2010-04-01/Accounts/{SID}/Messages/{message['sid']}.json"
        )
        # RFC 2822, as Twilio writes dates.
        datetime.strptime(message["date_created"], "%a, %d %b %Y %H:%M:%S %z")

    async def test_round_trip_create_list_fetch(self, devsim):
        first = (await send(devsim, body="one")).json()
        second = (await send(devsim, body="two")).json()
        await send(devsim, to=OTHER, body="elsewhere")

        listed = (
            await devsim.get(MESSAGES_PATH, params={"To": USER}, auth=AUTH)
        ).json()
        fetched = await devsim.get(
            f"/2010-04-01/Accounts/{SID}/Messages/{first['sid']}.json", auth=AUTH
        )

        assert [m["sid"] for m in listed["messages"]] == [second["sid"], first["sid"]]
        assert listed["page"] == 0
        assert listed["page_size"] == 50
        assert listed["next_page_uri"] is None
        assert listed["first_page_uri"].startswith(MESSAGES_PATH + "?")
        assert fetched.status_code == 200
        assert fetched.json()["body"] == "one"
        assert fetched.json()["status"] == "sent"

    async def test_bad_auth_is_401_twilio_shaped(self, devsim):
        wrong = await devsim.post(
            MESSAGES_PATH,
            data={"To": USER, "From": SENDER, "Body": "x"},
            auth=(SID, "nope"),
        )
        missing = await devsim.get(MESSAGES_PATH)

        for response in (wrong, missing):
            assert response.status_code == 401
            assert response.json() == {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            }
        assert (await devsim.get("/_devsim/messages")).json()["messages"] == []

    async def test_other_account_in_path_is_404(self, devsim):
        other = "AC" + "1" * 32
        response = await devsim.post(
            f"/2010-04-01/Accounts/{other}/Messages.json",
            data={"To": USER, "From": SENDER, "Body": "x"},
            auth=AUTH,
        )

        assert response.status_code == 404
        assert response.json()["code"] == 20404
        assert response.json()["status"] == 404

    async def test_missing_to_is_400_21604(self, devsim):
        response = await devsim.post(
            MESSAGES_PATH, data={"From": SENDER, "Body": "x"}, auth=AUTH
        )

        assert response.status_code == 400
        assert response.json()["code"] == 21604
        assert (
            response.json()["more_info"] == "https://www.twilio.com/docs/errors/21604"
        )

    async def test_missing_body_and_content_is_400_21619(self, devsim):
        response = await devsim.post(
            MESSAGES_PATH, data={"To": USER, "From": SENDER}, auth=AUTH
        )

        assert response.status_code == 400
        assert response.json()["code"] == 21619

    async def test_body_over_1600_characters_is_400_21617(self, devsim):
        response = await send(devsim, body="x" * 1601)

        assert response.status_code == 400
        assert response.json()["code"] == 21617

    async def test_mixed_channels_are_rejected(self, devsim):
        response = await send(devsim, to="+15551234567")

        assert response.status_code == 400
        assert response.json()["code"] == 21910

    async def test_content_template_is_accepted_and_recorded(self, devsim):
        response = await send(
            devsim,
            body=None,
            ContentSid="HX" + "a" * 32,
            ContentVariables='{"1": "Ada"}',
        )
        recorded = (await devsim.get("/_devsim/messages")).json()["messages"]

        assert response.status_code == 201
        assert "HX" + "a" * 32 in response.json()["body"]
        assert recorded[0]["content_sid"] == "HX" + "a" * 32
        assert recorded[0]["content_variables"] == {"1": "Ada"}

    async def test_known_template_shows_as_its_rendered_text(self):
        ready, notify = "HX" + "r" * 32, "HX" + "n" * 32
        settings = DevsimSettings(
            _env_file=None,
            twilio_template_assistant_ready=ready,
            twilio_template_notification=notify,
            devsim_twilio_templates={"HX" + "c" * 32: "Hi {{ 1 }}, {{2}} and {{3}}"},
        )
        async with (
            running_devsim(settings) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            bodies = []
            for sid, variables in (
                (ready, None),
                (notify, {"1": "Reminder: stretch"}),
                ("HX" + "c" * 32, {"1": "Ada", "2": "you"}),
            ):
                data = {"To": USER, "From": SENDER, "ContentSid": sid}
                if variables:
                    data["ContentVariables"] = orjson.dumps(variables).decode()
                response = await client.post(MESSAGES_PATH, data=data, auth=AUTH)
                assert response.status_code == 201
                bodies.append(response.json()["body"])
            listed = (
                await client.get(MESSAGES_PATH, params={"To": USER}, auth=AUTH)
            ).json()["messages"]

        assert bodies == [
            ASSISTANT_READY_TEMPLATE,
            "Your assistant has a message for you: Reminder: stretch",
            "Hi Ada, you and {{3}}",
        ]
        assert [m["body"] for m in reversed(listed)] == bodies

    async def test_media_urls_make_an_mm_sid(self, devsim):
        response = await send(
            devsim, body=None, MediaUrl=["https://e.x/a.png", "https://e.x/b.png"]
        )

        assert response.status_code == 201
        assert response.json()["sid"].startswith("MM")
        assert response.json()["num_media"] == "2"

    async def test_sms_segments_are_counted(self, devsim):
        response = await send(
            devsim, to="+15551234567", body="a" * 161, From="+14155238886"
        )

        assert response.status_code == 201
        assert response.json()["num_segments"] == "2"

    async def test_official_twilio_client_round_trip(self, devsim, devsim_url):
        def use_client() -> tuple[Any, list[Any]]:
            client = Client(SID, TOKEN)
            client.api.base_url = devsim_url
            created = client.messages.create(to=USER, from_=SENDER, body="from the SDK")
            listed = client.messages.list(
                to=USER,
                date_sent_after=datetime.now(UTC) - timedelta(days=1),
                page_size=2,
            )
            return created, listed

        created, listed = await asyncio.to_thread(use_client)

        assert created.sid.startswith("SM")
        assert created.status == "queued"
        assert [m.sid for m in listed] == [created.sid]
        assert listed[0].body == "from the SDK"


class TestListMessages:
    async def test_filters_by_to_and_from(self, devsim):
        await send(devsim, to=USER, body="a")
        await send(devsim, to=OTHER, body="b")

        by_to = (
            await devsim.get(MESSAGES_PATH, params={"To": OTHER}, auth=AUTH)
        ).json()
        by_from = (
            await devsim.get(MESSAGES_PATH, params={"From": SENDER}, auth=AUTH)
        ).json()
        by_nobody = (
            await devsim.get(
                MESSAGES_PATH, params={"From": "whatsapp:+19999999999"}, auth=AUTH
            )
        ).json()

        assert [m["body"] for m in by_to["messages"]] == ["b"]
        assert [m["body"] for m in by_from["messages"]] == ["b", "a"]
        assert by_nobody["messages"] == []

    async def test_filters_by_date_sent(self, devsim):
        await send(devsim, body="today")
        today = datetime.now(UTC).date()
        yesterday = (today - timedelta(days=1)).isoformat()
        tomorrow = (today + timedelta(days=1)).isoformat()

        async def bodies(params: dict[str, str]) -> list[str]:
            listed = (await devsim.get(MESSAGES_PATH, params=params, auth=AUTH)).json()
            return [m["body"] for m in listed["messages"]]

        assert await bodies({"DateSent": today.isoformat()}) == ["today"]
        assert await bodies({"DateSent": yesterday}) == []
        assert await bodies({"DateSent>": yesterday}) == ["today"]
        assert await bodies({"DateSent>": tomorrow}) == []
        assert await bodies({"DateSent<": tomorrow}) == ["today"]
        assert await bodies({"DateSent<": yesterday}) == []
        assert await bodies({"DateSent>": yesterday, "DateSent<": tomorrow}) == [
            "today"
        ]

    async def test_bad_date_is_400(self, devsim):
        response = await devsim.get(
            MESSAGES_PATH, params={"DateSent>": "soon"}, auth=AUTH
        )

        assert response.status_code == 400
        assert response.json()["code"] == 20001

    async def test_page_size_pages_newest_first(self, devsim):
        for i in range(5):
            await send(devsim, body=str(i))

        first = (
            await devsim.get(MESSAGES_PATH, params={"PageSize": 2}, auth=AUTH)
        ).json()
        second = (await devsim.get(first["next_page_uri"], auth=AUTH)).json()
        last = (await devsim.get(second["next_page_uri"], auth=AUTH)).json()

        assert [m["body"] for m in first["messages"]] == ["4", "3"]
        assert [m["body"] for m in second["messages"]] == ["2", "1"]
        assert [m["body"] for m in last["messages"]] == ["0"]
        assert first["page_size"] == 2
        assert last["next_page_uri"] is None

    async def test_unknown_message_is_404(self, devsim):
        response = await devsim.get(
            f"/2010-04-01/Accounts/{SID}/Messages/SM{'0' * 32}.json", auth=AUTH
        )

        assert response.status_code == 404
        assert response.json()["code"] == 20404


class TestStatusCallbacks:
    async def test_signed_sent_and_delivered_callbacks(self, devsim):
        received: list[tuple[str, dict[str, str], str]] = []
        receiver = FastAPI()

        @receiver.post("/status")
        async def status(request: Request) -> PlainTextResponse:
            form = {k: str(v) for k, v in (await request.form()).items()}
            received.append(
                (str(request.url), form, request.headers["x-twilio-signature"])
            )
            return PlainTextResponse("")

        async with running_app(receiver) as receiver_url:
            created = (
                await send(devsim, StatusCallback=f"{receiver_url}/status")
            ).json()

            async def both_arrived() -> bool:
                return len(received) == 2

            await eventually(both_arrived, timeout=5)

        validator = RequestValidator(TOKEN)
        assert [form["MessageStatus"] for _, form, _ in received] == [
            "sent",
            "delivered",
        ]
        for url, form, signature in received:
            assert form["MessageSid"] == created["sid"]
            assert validator.validate(url, form, signature)
        fetched = await devsim.get(created["uri"], auth=AUTH)
        assert fetched.json()["status"] == "delivered"


OPENCLAW_MESSAGES = [
    {
        "role": "system",
        "content": "You are a personal assistant running inside OpenClaw.",
    },
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "[Fri 2026-11-27 08:52 UTC] what's the weather?"}
        ],
    },
    {
        "role": "user",
        "content": (
            "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\n"
            "OpenClaw runtime context for the immediately preceding user message.\n"
            "This context is runtime-generated, not user-authored. Keep internal details private.\n"
            "channel: webchat\n"
            "<<<END_OPENCLAW_INTERNAL_CONTEXT>>>"
        ),
    },
]


def completion_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "openclaw/default",
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


class TestChatCompletions:
    async def test_non_stream_echoes_with_usage(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions",
            json=completion_body("hello there"),
            headers={"Authorization": "Bearer anything"},
        )

        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "chat.completion"
        assert body["id"].startswith("chatcmpl-")
        assert body["model"] == "openclaw/default"
        assert body["choices"][0]["message"] == {
            "role": "assistant",
            "content": "Echo: hello there",
            "refusal": None,
        }
        assert body["choices"][0]["finish_reason"] == "stop"
        usage = body["usage"]
        assert usage["prompt_tokens"] > 0
        assert usage["completion_tokens"] > 0
        assert (
            usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        )

    async def test_stream_sends_sse_chunks_and_usage(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions",
            json=completion_body(
                "stream me a reply please",
                stream=True,
                stream_options={"include_usage": True},
            ),
        )

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.text)
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in chunks
            if c["choices"]
        )
        assert text == "Echo: stream me a reply please"
        finals = [
            c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
        ]
        assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["total_tokens"] > 0

    async def test_stream_without_include_usage_has_no_usage_chunk(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions", json=completion_body("hi", stream=True)
        )

        chunks = parse_sse(response.text)[:-1]
        assert all(c["choices"] for c in chunks)
        assert all("usage" not in c for c in chunks)

    async def test_openclaw_style_messages_echo_the_user_text(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions",
            json={
                "model": "local/echo-1",
                "messages": OPENCLAW_MESSAGES,
                "stream": True,
                "stream_options": {"include_usage": True},
                "tools": [
                    {"type": "function", "function": {"name": "read", "parameters": {}}}
                ],
                "tool_choice": "auto",
                "max_completion_tokens": 1024,
                "store": False,
                "some_future_field": {"x": 1},
            },
        )

        text = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in parse_sse(response.text)[:-1]
            if c["choices"]
        )
        assert text == "Echo: what's the weather?"

    async def test_image_parts_are_mentioned(self, devsim):
        content = [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]
        response = await devsim.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": content}]},
        )

        assert (
            response.json()["choices"][0]["message"]["content"]
            == "Echo: what is this? [image]"
        )

    async def test_fail_marker_is_500_openai_shaped(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions", json=completion_body("boom #fail")
        )

        assert response.status_code == 500
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "code"}
        assert error["type"] == "server_error"

    async def test_fail_marker_takes_a_status(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions", json=completion_body("slow down #fail=429")
        )

        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limit_exceeded"

    async def test_long_marker_answers_exactly_n_characters(self, devsim):
        first = await devsim.post(
            "/v1/chat/completions", json=completion_body("#long=3500")
        )
        again = await devsim.post(
            "/v1/chat/completions", json=completion_body("#long=3500")
        )

        content = first.json()["choices"][0]["message"]["content"]
        assert len(content) == 3500
        assert content == again.json()["choices"][0]["message"]["content"]
        assert ". " in content

    async def test_sleep_marker_delays_the_answer(self, devsim):
        started = time.monotonic()
        response = await devsim.post(
            "/v1/chat/completions", json=completion_body("#sleep=0.3 hi")
        )

        assert time.monotonic() - started >= 0.3
        assert (
            response.json()["choices"][0]["message"]["content"] == "Echo: #sleep=0.3 hi"
        )

    async def test_bad_request_is_400_openai_shaped(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions", json={"model": "m", "messages": []}
        )

        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"

    async def test_requests_are_recorded_without_the_token(self, devsim):
        await devsim.post(
            "/v1/chat/completions",
            json={**completion_body("remember me"), "user": "wa:u1"},
            headers={
                "Authorization": "Bearer secret-gateway-token",
                "x-openclaw-session-key": "wa:u1",
                "x-openclaw-model": "local/echo-1",
            },
        )

        requests = (await devsim.get("/_devsim/llm/requests")).json()["requests"]
        assert len(requests) == 1
        record = requests[0]
        assert record["session_key"] == "wa:u1"
        assert record["user"] == "wa:u1"
        assert record["model"] == "openclaw/default"
        assert record["user_text"] == "remember me"
        assert record["has_authorization"] is True
        assert record["headers"]["x-openclaw-model"] == "local/echo-1"
        assert "secret-gateway-token" not in orjson.dumps(requests).decode()

    async def test_models_are_listed(self, devsim):
        response = await devsim.get("/v1/models")

        assert response.json()["object"] == "list"
        assert response.json()["data"][0]["object"] == "model"


class TestRealisticUsage:
    async def test_prompt_tokens_follow_the_request_size(self, devsim):
        short = await devsim.post("/v1/chat/completions", json=completion_body("hi"))
        long = await devsim.post(
            "/v1/chat/completions", json=completion_body("hi " + "word " * 400)
        )

        assert long.json()["usage"]["prompt_tokens"] > (
            short.json()["usage"]["prompt_tokens"] + 400
        )

    async def test_a_repeated_long_prefix_is_read_from_cache(self, devsim):
        system = {"role": "system", "content": "You are helpful. " * 400}
        first = [system, {"role": "user", "content": "first question"}]
        second = [
            *first,
            {"role": "assistant", "content": "Echo: first question"},
            {"role": "user", "content": "second question"},
        ]

        one = await devsim.post(
            "/v1/chat/completions", json={"model": "m", "messages": first}
        )
        two = await devsim.post(
            "/v1/chat/completions", json={"model": "m", "messages": second}
        )

        assert "prompt_tokens_details" not in one.json()["usage"]
        usage = two.json()["usage"]
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        assert 1024 <= cached < usage["prompt_tokens"]


class TestTranscriptions:
    async def test_the_text_in_the_file_is_heard_and_priced_by_duration(self, devsim):
        (await devsim.delete("/_devsim/llm/requests")).raise_for_status()
        audio = b"OggS\x00\x02what time is it?" + b"\x00" * 4000

        response = await devsim.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-1"},
            files={"file": ("voice.ogg", audio, "audio/ogg")},
            headers={"authorization": "Bearer anything"},
        )

        assert response.status_code == 200
        assert response.json() == {
            "text": "what time is it?",
            "usage": {"type": "duration", "seconds": 2},
        }
        (logged,) = (await devsim.get("/_devsim/llm/requests")).json()["requests"]
        assert logged["path"] == "/v1/audio/transcriptions"
        assert logged["body"]["file"] == {
            "filename": "voice.ogg",
            "content_type": "audio/ogg",
            "bytes": len(audio),
        }
        assert "authorization" not in logged["headers"]

    async def test_silence_and_failure_markers(self, devsim):
        async def transcribe(audio: bytes) -> httpx.Response:
            return await devsim.post(
                "/v1/audio/transcriptions",
                data={"model": "whisper-1"},
                files={"file": ("v.ogg", audio, "audio/ogg")},
            )

        assert (await transcribe(b"OggS\x00\x01")).json()["text"] == ""
        failed = await transcribe(b"OggS please #fail=503")
        assert failed.status_code == 503
        missing = await devsim.post(
            "/v1/audio/transcriptions", data={"model": "whisper-1"}
        )
        assert missing.status_code == 400


def _decoded_frames(audio: bytes, tmp_path) -> int | None:
    """PCM frames libsndfile (with the system's libopus) decodes from `audio`;
    None where the library is not installed."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("sndfile")
    if name is None:
        return None
    lib = ctypes.CDLL(name)

    class Info(ctypes.Structure):
        _fields_ = [
            ("frames", ctypes.c_int64),
            ("samplerate", ctypes.c_int),
            ("channels", ctypes.c_int),
            ("format", ctypes.c_int),
            ("sections", ctypes.c_int),
            ("seekable", ctypes.c_int),
        ]

    path = tmp_path / "speech.ogg"
    path.write_bytes(audio)
    info = Info()
    lib.sf_open.restype = ctypes.c_void_p
    handle = lib.sf_open(str(path).encode(), 0x10, ctypes.byref(info))  # SFM_READ
    assert handle, "libsndfile cannot open the stand-in's speech"
    lib.sf_close(ctypes.c_void_p(handle))
    assert info.format == 0x200064  # SF_FORMAT_OGG | SF_FORMAT_OPUS
    assert info.samplerate == 48000
    return int(info.frames)


class TestSpeech:
    async def test_the_text_is_spoken_as_a_real_ogg_opus_file(self, devsim, tmp_path):
        (await devsim.delete("/_devsim/llm/requests")).raise_for_status()
        text = "It is half past nine. " * 5  # 110 characters: about 7 seconds

        response = await devsim.post(
            "/v1/audio/speech",
            json={
                "model": "tts-1",
                "input": text,
                "voice": "alloy",
                "response_format": "opus",
            },
            headers={"authorization": "Bearer anything"},
        )

        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/ogg"
        audio = response.content
        packets = ogg_packets(audio)  # every page's checksum verified
        assert packets[0].startswith(b"OpusHead")
        assert packets[1].startswith(b"OpusTags")
        assert spoken_text(audio) == text
        # Heard back as what it says, as a transcription of a real reply would.
        assert transcript_of(audio) == text
        # 20 ms packets: about fifteen characters a second.
        assert len(packets) - 2 == round(len(text) / 15 * 50)
        frames = _decoded_frames(audio, tmp_path)
        if frames is not None:
            assert 7.0 < frames / 48000 < 7.5
        (logged,) = (await devsim.get("/_devsim/llm/requests")).json()["requests"]
        assert logged["path"] == "/v1/audio/speech"
        assert logged["body"]["characters"] == len(text)

    async def test_a_short_text_lasts_a_second_and_longer_ones_longer(self):
        short, longer = speech_audio("Hi"), speech_audio("x" * 300)

        assert len(ogg_packets(short)) - 2 == 50
        assert len(ogg_packets(longer)) - 2 == 1000
        assert spoken_text(b"OggS not really") is None

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"model": "tts-1", "voice": "alloy", "response_format": "opus"}, 400),
            (
                {
                    "model": "tts-1",
                    "input": "x" * 4097,
                    "voice": "alloy",
                    "response_format": "opus",
                },
                400,
            ),
            (
                {
                    "model": "tts-1",
                    "input": "hello #fail=503",
                    "voice": "alloy",
                    "response_format": "opus",
                },
                503,
            ),
        ],
    )
    async def test_bad_requests_and_failure_markers(self, devsim, body, status):
        response = await devsim.post("/v1/audio/speech", json=body)

        assert response.status_code == status
        assert "error" in response.json()


def anthropic_body(text: str, **extra) -> dict:
    # The same messages; Anthropic wants max_tokens too.
    return completion_body(
        text, model="claude-sonnet-4-5-20250929", max_tokens=256, **extra
    )


class TestAnthropicMessages:
    async def test_non_stream_echoes_with_usage(self, devsim):
        response = await devsim.post(
            "/v1/messages",
            json=anthropic_body("hello there"),
            headers={"x-api-key": "anything", "anthropic-version": "2023-06-01"},
        )

        assert response.status_code == 200
        body = response.json()
        assert body["type"] == "message"
        assert body["content"] == [{"type": "text", "text": "Echo: hello there"}]
        assert body["stop_reason"] == "end_turn"
        assert body["usage"]["input_tokens"] > 0
        assert body["usage"]["output_tokens"] > 0

    async def test_stream_sends_anthropic_events(self, devsim):
        response = await devsim.post(
            "/v1/messages", json=anthropic_body("stream me a reply please", stream=True)
        )

        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            orjson.loads(line[5:])
            for line in response.text.splitlines()
            if line.startswith("data:")
        ]
        kinds = [e["type"] for e in events]
        assert kinds[0] == "message_start"
        assert kinds[-2:] == ["message_delta", "message_stop"]
        text = "".join(
            e["delta"]["text"] for e in events if e["type"] == "content_block_delta"
        )
        assert text == "Echo: stream me a reply please"
        assert events[-2]["usage"]["output_tokens"] > 0

    async def test_cache_control_prefix_is_written_then_read(self, devsim):
        system = [
            {
                "type": "text",
                "text": "You are helpful. " * 400,
                "cache_control": {"type": "ephemeral"},
            }
        ]
        first = anthropic_body("first question", system=system)
        second = {
            **first,
            "messages": [
                *first["messages"],
                {"role": "assistant", "content": "Echo: first question"},
                {"role": "user", "content": "second question"},
            ],
        }

        one = (await devsim.post("/v1/messages", json=first)).json()["usage"]
        two = (await devsim.post("/v1/messages", json=second)).json()["usage"]

        assert one["cache_read_input_tokens"] == 0
        assert one["cache_creation_input_tokens"] > 1000
        assert two["cache_read_input_tokens"] >= one["cache_creation_input_tokens"]

    async def test_reminder_is_a_tool_use_block(self, devsim):
        body = anthropic_body(
            "remind me in 2 minutes to stretch",
            system="Automations deliver with\n    mode: webhook\n    to: "
            "http://127.0.0.1:8790/notify/0b5b3a4e-1f65-4d0c-8c1e-3f3c9f4a2b10\n",
            tools=[{"name": "automations", "input_schema": {"type": "object"}}],
        )

        response = await devsim.post("/v1/messages", json=body)

        message = response.json()
        assert message["stop_reason"] == "tool_use"
        (block,) = message["content"]
        assert block["name"] == "automations"
        assert block["input"]["job"]["delivery"] == {
            "mode": "webhook",
            "to": "http://127.0.0.1:8790/notify/0b5b3a4e-1f65-4d0c-8c1e-3f3c9f4a2b10",
        }

    async def test_bad_request_is_400_anthropic_shaped(self, devsim):
        response = await devsim.post("/v1/messages", json={"model": "m"})

        assert response.status_code == 400
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "invalid_request_error"


class TestChatCompletionsApiKey:
    async def test_configured_key_is_required(self):
        settings = DevsimSettings(devsim_llm_api_key="k-123", _env_file=None)
        async with (
            running_devsim(settings) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            missing = await client.post(
                "/v1/chat/completions", json=completion_body("hi")
            )
            wrong = await client.post(
                "/v1/chat/completions",
                json=completion_body("hi"),
                headers={"Authorization": "Bearer nope"},
            )
            right = await client.post(
                "/v1/chat/completions",
                json=completion_body("hi"),
                headers={"Authorization": "Bearer k-123"},
            )

        for response in (missing, wrong):
            assert response.status_code == 401
            error = response.json()["error"]
            assert error["code"] == "invalid_api_key"
            assert error["type"] == "invalid_request_error"
            assert error["message"]
        assert right.status_code == 200


class TestPickUserText:
    @pytest.mark.parametrize(
        ("messages", "expected"),
        [
            ([{"role": "user", "content": "plain"}], "plain"),
            (
                [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                ],
                "a",
            ),
            (
                [
                    {"role": "user", "content": "mine"},
                    {
                        "role": "user",
                        "content": "OpenClaw runtime context (internal):\nstuff",
                    },
                ],
                "mine",
            ),
            ([{"role": "system", "content": "only system"}], ""),
        ],
    )
    def test_skips_what_the_person_did_not_write(self, messages, expected):
        assert pick_user_text(messages) == expected


class TestPickUserTextWithOpenClawRuntimeLine:
    def test_runtime_status_line_is_not_part_of_the_user_text(self):
        from yourclaw_devkit.llm_sim import (
            pick_user_text,
        )

        text = (
            "hello there\nRuntime: agent=main | model=local/echo-1 | channel=whatsapp"
        )
        assert pick_user_text([{"role": "user", "content": text}]) == "hello there"
