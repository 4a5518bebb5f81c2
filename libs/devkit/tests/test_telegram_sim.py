"""The Telegram stand-in answers as the Bot API does and speaks as a chat."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest_asyncio
from fastapi import FastAPI, Request, Response
from yourclaw_devkit.cli import main
from yourclaw_devkit.llm_sim import speech_audio
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.telegram_sim import (
    DEV_TELEGRAM_BOT_TOKEN,
    SECRET_HEADER,
    TelegramSim,
    running_telegram_sim,
)

SECRET = "hook-secret_0123"


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook recording each Update with the secret header it came with."""
    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        received.append(
            {
                "secret": request.headers.get(SECRET_HEADER),
                "update": orjson.loads(await request.body()),
            }
        )
        forged = request.headers.get(SECRET_HEADER) != SECRET
        return Response(status_code=401 if forged else 200)

    async with running_app(app) as url:
        yield url + "/hook", received


@pytest_asyncio.fixture(loop_scope="session")
async def sim() -> AsyncIterator[tuple[TelegramSim, httpx.AsyncClient]]:
    async with (
        running_telegram_sim() as sim,
        httpx.AsyncClient(base_url=sim.url, timeout=10) as client,
    ):
        yield sim, client


def bot(method: str) -> str:
    return f"/bot{DEV_TELEGRAM_BOT_TOKEN}/{method}"


async def speak(client: httpx.AsyncClient, **spec: Any) -> dict[str, Any]:
    """The stand-in's answer to speaking as a chat (the Update and its delivery)."""
    answer = await client.post("/_devsim/telegram/updates", json=spec)
    result: dict[str, Any] = answer.json()
    return result


async def upload(client: httpx.AsyncClient, data: bytes, kind: str) -> dict[str, Any]:
    answer = await client.post(
        "/_devsim/telegram/files", content=data, headers={"content-type": kind}
    )
    result: dict[str, Any] = answer.json()
    return result


async def hooked(client: httpx.AsyncClient, url: str) -> None:
    answer = await client.post(
        bot("setWebhook"),
        json={"url": url, "secret_token": SECRET, "allowed_updates": ["message"]},
    )
    assert answer.json() == {
        "ok": True,
        "result": True,
        "description": "Webhook was set",
    }


class TestBotApi:
    async def test_get_me_names_the_bot(self, sim):
        _, client = sim
        me = (await client.get(bot("getMe"))).json()
        assert me["ok"] is True
        assert me["result"]["is_bot"] is True
        assert me["result"]["username"] == "yourclaw_dev_bot"
        assert me["result"]["id"] == int(DEV_TELEGRAM_BOT_TOKEN.partition(":")[0])

    async def test_wrong_token_is_unauthorized(self, sim):
        _, client = sim
        answer = await client.get("/bot1:wrong/getMe")
        assert answer.status_code == 401
        assert answer.json() == {
            "ok": False,
            "error_code": 401,
            "description": "Unauthorized",
        }

    async def test_unknown_method_is_not_found(self, sim):
        _, client = sim
        answer = await client.post(bot("sendSticker"), json={})
        assert answer.status_code == 404
        assert answer.json()["description"] == "Not Found"

    async def test_webhook_info_after_set_webhook(self, sim, receiver):
        _, client = sim
        await hooked(client, receiver[0])
        info = (await client.get(bot("getWebhookInfo"))).json()["result"]
        assert info["url"] == receiver[0]
        assert info["allowed_updates"] == ["message"]
        assert info["pending_update_count"] == 0

    async def test_set_webhook_refuses_a_bad_secret(self, sim):
        _, client = sim
        answer = await client.post(
            bot("setWebhook"), data={"url": "https://x.test/h", "secret_token": "a b"}
        )
        assert answer.status_code == 400
        assert "unallowed characters" in answer.json()["description"]


class TestSpeakingAsAChat:
    async def test_message_reaches_the_webhook_with_the_secret(self, sim, receiver):
        _, client = sim
        url, received = receiver
        await hooked(client, url)
        answer = await speak(client, chat_id=1001, text="/start abc", username="ada")
        assert answer["status"] == 200
        got = received[-1]
        assert got["secret"] == SECRET
        message = got["update"]["message"]
        assert got["update"]["update_id"] == answer["update"]["update_id"]
        assert message["chat"] == {
            "id": 1001,
            "first_name": "User 1001",
            "type": "private",
            "username": "ada",
        }
        assert message["text"] == "/start abc"
        assert message["entities"] == [
            {"offset": 0, "length": 6, "type": "bot_command"}
        ]

    async def test_replay_and_forgery(self, sim, receiver):
        _, client = sim
        url, received = receiver
        await hooked(client, url)
        first = await speak(client, chat_id=1002, text="hi")
        again = await speak(client, update_id=first["update"]["update_id"])
        assert again["update"] == first["update"]
        forged = await speak(client, chat_id=1002, text="hi", secret_token="guess")
        assert forged["status"] == 401
        assert received[-1]["secret"] == "guess"

    async def test_voice_note_is_a_file_the_bot_can_download(self, sim, receiver):
        _, client = sim
        await hooked(client, receiver[0])
        uploaded = await upload(client, b"OggS-voice", "audio/ogg")
        assert uploaded["kind"] == "voice"
        update = (await speak(client, chat_id=1003, file_id=uploaded["file_id"]))[
            "update"
        ]
        voice = update["message"]["voice"]
        assert voice["mime_type"] == "audio/ogg"
        assert voice["file_size"] == len(b"OggS-voice")

        found = (
            await client.post(bot("getFile"), json={"file_id": voice["file_id"]})
        ).json()["result"]
        assert found["file_path"].startswith("voice/")
        download = await client.get(
            f"/file/bot{DEV_TELEGRAM_BOT_TOKEN}/{found['file_path']}"
        )
        assert download.content == b"OggS-voice"
        assert (
            await client.get(f"/file/bot1:wrong/{found['file_path']}")
        ).status_code == 401

    async def test_photo_arrives_in_sizes_largest_last(self, sim, receiver):
        _, client = sim
        await hooked(client, receiver[0])
        uploaded = await upload(client, b"\xff\xd8jpeg", "image/jpeg")
        update = (
            await speak(client, chat_id=1004, file_id=uploaded["file_id"], text="look")
        )["update"]
        assert update["message"]["photo"][-1]["file_id"] == uploaded["file_id"]
        assert update["message"]["caption"] == "look"
        assert "text" not in update["message"]


class TestSending:
    async def test_send_message_is_recorded_per_chat(self, sim, receiver):
        tg, client = sim
        await hooked(client, receiver[0])
        await speak(client, chat_id=2001, text="hello")
        sent = (
            await client.post(bot("sendMessage"), json={"chat_id": 2001, "text": "Hi!"})
        ).json()["result"]
        # The chat's user wrote message 1; the bot's answer is message 2.
        assert sent["message_id"] == 2
        assert sent["chat"]["id"] == 2001
        assert sent["from"]["is_bot"] is True
        await client.post(
            bot("sendChatAction"), data={"chat_id": "2001", "action": "typing"}
        )
        record = (
            await client.get("/_devsim/telegram/sent", params={"chat_id": 2001})
        ).json()
        assert [m["text"] for m in record["messages"]] == ["Hi!"]
        assert [a["action"] for a in record["actions"]] == ["typing"]
        assert tg.state.sent(2001)[0]["text"] == "Hi!"

    async def test_send_voice_takes_a_multipart_upload_with_a_caption(
        self, sim, receiver
    ):
        tg, client = sim
        await hooked(client, receiver[0])
        await speak(client, chat_id=2005, text="hello")
        audio = speech_audio("It is nine o'clock, time for tea.")  # 2 s

        answer = await client.post(
            bot("sendVoice"),
            data={"chat_id": "2005", "caption": "It is nine o'clock."},
            files={"voice": ("reply.ogg", audio, "audio/ogg")},
        )

        assert answer.status_code == 200, answer.text
        sent = answer.json()["result"]
        assert sent["caption"] == "It is nine o'clock."
        assert "text" not in sent
        voice = sent["voice"]
        assert (voice["mime_type"], voice["duration"]) == ("audio/ogg", 2)
        assert voice["file_size"] == len(audio)
        # The bot (or a test) downloads what it sent, as any file.
        found = (
            await client.post(bot("getFile"), json={"file_id": voice["file_id"]})
        ).json()["result"]
        download = await client.get(
            f"/file/bot{DEV_TELEGRAM_BOT_TOKEN}/{found['file_path']}"
        )
        assert download.content == audio
        assert tg.state.sent(2005)[0]["voice"]["file_id"] == voice["file_id"]

    async def test_limits_of_send_voice(self, sim, receiver):
        _, client = sim
        await hooked(client, receiver[0])
        await speak(client, chat_id=2006, text="x")
        audio = speech_audio("hi")

        long_caption = await client.post(
            bot("sendVoice"),
            data={"chat_id": "2006", "caption": "a" * 1025},
            files={"voice": ("v.ogg", audio, "audio/ogg")},
        )
        no_voice = await client.post(bot("sendVoice"), json={"chat_id": 2006})
        unknown_id = await client.post(
            bot("sendVoice"), json={"chat_id": 2006, "voice": "AwACAgIAAx"}
        )

        assert long_caption.json()["description"] == (
            "Bad Request: message caption is too long"
        )
        assert no_voice.status_code == unknown_id.status_code == 400

    async def test_limits_of_send_message(self, sim, receiver):
        _, client = sim
        await hooked(client, receiver[0])
        await speak(client, chat_id=2002, text="x")
        too_long = await client.post(
            bot("sendMessage"), json={"chat_id": 2002, "text": "a" * 4097}
        )
        assert too_long.status_code == 400
        assert too_long.json()["description"] == "Bad Request: message is too long"
        just_fits = await client.post(
            bot("sendMessage"), json={"chat_id": 2002, "text": "a" * 4096}
        )
        assert just_fits.status_code == 200
        unknown = await client.post(
            bot("sendMessage"), json={"chat_id": 999999, "text": "hi"}
        )
        assert unknown.json()["description"] == "Bad Request: chat not found"

    async def test_html_markup_becomes_entities_or_a_400(self, sim, receiver):
        _, client = sim
        await hooked(client, receiver[0])
        await speak(client, chat_id=2007, text="x")

        async def send(text: str, **more: Any) -> httpx.Response:
            return await client.post(
                bot("sendMessage"),
                json={"chat_id": 2007, "text": text, "parse_mode": "HTML", **more},
            )

        sent = await send(
            '😀 <b>bold <i>both</i></b> &amp; <a href="https://e.x">x</a>'
        )
        message = sent.json()["result"]
        # As a chat shows it; offsets count UTF-16 units (the emoji is two).
        assert message["text"] == "😀 bold both & x"
        assert message["entities"] == [
            {"offset": 3, "type": "bold", "length": 9},
            {"offset": 8, "type": "italic", "length": 4},
            {"offset": 15, "type": "text_link", "url": "https://e.x", "length": 1},
        ]
        # The limit counts the text without its markup.
        assert (await send(f"<b>{'a' * 4096}</b>")).status_code == 200
        for bad, why in (
            ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
            ("<blink>x</blink>", 'Unsupported start tag "blink"'),
            ("<b>x</i>", 'Can\'t find end tag corresponding to start tag "b"'),
        ):
            refused = await send(bad)
            assert refused.status_code == 400
            assert refused.json()["description"] == (
                f"Bad Request: can't parse entities: {why}"
            )
        other_mode = await send("*x*", parse_mode="MarkdownV2")
        assert other_mode.status_code == 400

    async def test_injected_429_carries_retry_after(self, sim, receiver):
        _, client = sim
        await hooked(client, receiver[0])
        await speak(client, chat_id=2003, text="x")
        await client.post(
            "/_devsim/telegram/faults",
            json={
                "method": "sendMessage",
                "chat_id": 2003,
                "error_code": 429,
                "retry_after": 3,
            },
        )
        limited = await client.post(
            bot("sendMessage"), json={"chat_id": 2003, "text": "hi"}
        )
        assert limited.status_code == 429
        assert limited.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        }
        again = await client.post(
            bot("sendMessage"), json={"chat_id": 2003, "text": "hi"}
        )
        assert again.status_code == 200


class TestDevCli:
    async def test_telegram_command_prints_the_bots_reply(
        self, sim, capsys, monkeypatch
    ):
        tg, client = sim
        monkeypatch.setenv("TELEGRAM_API_BASE", tg.url)
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            # The bot answers the way messaging does: sendMessage to the chat.
            chat = orjson.loads(await request.body())["message"]["chat"]["id"]
            await client.post(
                bot("sendMessage"), json={"chat_id": chat, "text": "Pong"}
            )
            # And a voice reply, as messaging sends one with its text.
            await client.post(
                bot("sendVoice"),
                data={"chat_id": str(chat), "caption": "Pong, aloud"},
                files={"voice": ("reply.ogg", speech_audio("Pong"), "audio/ogg")},
            )
            return {"received": True}

        async with running_app(app) as url:
            await hooked(client, url + "/hook")
            code = await asyncio.to_thread(
                main, ["telegram", "--chat", "3001", "--timeout", "5", "ping"]
            )
        assert code == 0
        out = capsys.readouterr().out
        assert "from chat 3001 -> webhook HTTP 200" in out
        assert "<- Pong" in out
        assert "<- [voice message, 1 s] Pong, aloud" in out
