"""A WhatsApp voice note, end to end with the real OpenClaw gateway:

`inbound.whatsapp` with MediaUrl0 on the Twilio stand-in (audio/ogg) →
messaging fetches the audio from Twilio with the account's credentials →
llm-proxy `/v1/audio/transcriptions` with messaging's service credential, for
the user (metered to them) → the stand-in provider hears the text in the file →
the user's gateway gets "(voice note) <transcript>" and answers through the
proxy → Twilio. Slow: one gateway boot. (A MediaUrl on another host, too large
or undecodable audio: services/messaging/tests/test_voice.py.)

Voice replies, for a user who turned them on: the answer to a voice note on
Telegram comes back as a voice message (sendVoice, the text as its caption)
and on WhatsApp as the text plus a message whose MediaUrl gateway-api serves
(signed, over loopback); the audio is the LLM stand-in's Ogg/Opus of the
answer, spoken through llm-proxy and metered to the user.
"""

from __future__ import annotations

import random

import httpx
import pytest
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    AssistantProvisionRequested,
    InboundMedia,
    InboundTelegram,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, subscribed_user
from yourclaw_devkit.llm_sim import ogg_packets, spoken_text
from yourclaw_devkit.pytest_plugin import inbound_whatsapp
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.telegram_sim import running_telegram_sim
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings

from .conftest import gateway_ports, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+15557771818"
SERVICE_TOKEN = "voice-e2e-service-credential-0123456789"
SPOKEN = "what should I cook tonight"


async def through_the_proxy(gateway_stack, *, messaging=None, **overrides):
    """One gateway whose model calls, and messaging's voice notes (and voice
    replies), go through llm-proxy on a port of its own."""
    proxy = f"http://127.0.0.1:{free_port()}"
    return await gateway_stack(
        capacity=1,
        provisioner={**gateway_ports(), "llm_proxy_url": proxy},
        llm_proxy={
            "llm_proxy_port": int(proxy.rsplit(":", 1)[1]),
            "llm_proxy_service_token": SERVICE_TOKEN,
        },
        messaging={
            "voice_transcription_url": proxy,
            "llm_proxy_service_token": SERVICE_TOKEN,
            **(messaging or {}),
        },
        **overrides,
    )


async def say_on_whatsapp(stack, words: str) -> None:
    """PHONE sends a WhatsApp voice note saying `words` (hosted at the Twilio
    stand-in as its MediaUrl0; the LLM stand-in hears the text in it)."""
    hosted = await stack.devsim.post(
        "/_devsim/media",
        content=b"OggS\x00\x02" + words.encode() + b"\x00" * 6000,
        headers={"content-type": "audio/ogg"},
    )
    hosted.raise_for_status()
    await publish(
        stack.nc.jetstream(),
        inbound_whatsapp(PHONE, "", media=[(hosted.json()["url"], "audio/ogg")]),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def stack(gateway_stack):
    return await through_the_proxy(gateway_stack)


class TestVoiceNoteEndToEnd:
    async def test_a_voice_note_is_transcribed_and_answered(self, stack, clean_db):
        user_id = await subscribed_user(clean_db, phone=PHONE)
        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        await wait_ready(clean_db, user_id)
        (await stack.devsim.delete("/_devsim/llm/requests")).raise_for_status()

        await say_on_whatsapp(stack, SPOKEN)

        async def answered():
            found = [r for r in await stack.replies(PHONE) if "voice note" in r]
            return found or None

        (reply,) = await eventually(answered, timeout=180, interval=0.5)
        assert reply == f"Echo: (voice note) {SPOKEN}"
        requests = (await stack.devsim.get("/_devsim/llm/requests")).json()["requests"]
        heard = [r for r in requests if r["path"] == "/v1/audio/transcriptions"]
        assert len(heard) == 1
        # Through the proxy: neither messaging's credential nor the user header
        # reaches the provider (the log drops credentials; the header is ours).
        assert "x-yourclaw-user" not in heard[0]["headers"]

        async def metered():
            rows = await clean_db.fetch(
                "SELECT endpoint, model, cost_microusd FROM llm_calls "
                "WHERE user_id = $1 AND endpoint = 'audio/transcriptions'",
                user_id,
            )
            return rows or None

        (row,) = await eventually(metered, timeout=10)
        assert row["model"] == "whisper-1"
        assert row["cost_microusd"] == 300  # 3 s at $0.006 a minute


# --- voice replies ------------------------------------------------------------

CHAT = 7161
MEDIA_KEY = "voice-e2e-media-signing-key-0123456789abcdef"
ASKED = "when does the bakery open"


@pytest_asyncio.fixture(loop_scope="session")
async def speaking(gateway_stack, service_env):
    """The voice note stack plus the Telegram stand-in, and gateway-api on
    loopback serving the spoken replies Twilio is given links to."""
    api_port = free_port()
    public = f"http://127.0.0.1:{api_port}"
    api_settings = GatewaySettings(
        _env_file=None,
        **{
            **{k.lower(): v for k, v in service_env.items()},
            "public_base_url": public,
            "api_port": api_port,
            "media_url_signing_key": MEDIA_KEY,
        },
    )
    async with (
        running_telegram_sim() as telegram,
        running_app(create_app(api_settings), port=api_port),
    ):
        stack = await through_the_proxy(
            gateway_stack,
            public_base_url=public,
            messaging={
                "telegram_bot_token": telegram.token,
                "telegram_api_base": telegram.url,
                "media_url_signing_key": MEDIA_KEY,
                "public_base_url": public,
            },
        )
        yield stack, telegram, public


class TestVoiceRepliesEndToEnd:
    async def test_voice_notes_are_answered_aloud_on_telegram_and_whatsapp(
        self, speaking, clean_db
    ):
        stack, telegram, public = speaking
        user_id = await subscribed_user(clean_db, phone=PHONE)
        await clean_db.execute(
            "INSERT INTO telegram_links (user_id, chat_id, linked_by) "
            "VALUES ($1, $2, 1)",
            user_id,
            CHAT,
        )
        # As `PUT /api/v1/channels/voice {"enabled": true}` or `/voice on` set it.
        await clean_db.execute(
            "UPDATE users SET voice_replies = true WHERE id = $1", user_id
        )
        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        await wait_ready(clean_db, user_id)
        answer = f"Echo: (voice note) {ASKED}"

        # Telegram: one voice message (sendVoice, a multipart upload), the
        # answer as its caption.
        note, _ = telegram.state.add_file(
            b"OggS\x00\x02" + ASKED.encode() + b"\x00" * 4000, "audio/ogg"
        )
        chat = telegram.state.chat(CHAT, first_name="Ada")
        said = telegram.state.message_from(chat, text="")
        await publish(
            stack.nc.jetstream(),
            InboundTelegram(
                update_id=random.randrange(10**8, 10**9),
                chat_id=CHAT,
                message_id=said["message_id"],
                text="",
                first_name="Ada",
                media=(InboundMedia(url=note.file_id, content_type="audio/ogg"),),
            ),
        )

        async def voiced():
            return telegram.state.sent(CHAT) or None

        (voice,) = await eventually(voiced, timeout=180, interval=0.5)
        assert voice["caption"] == answer
        async with httpx.AsyncClient(base_url=telegram.url) as bot_api:
            found = await bot_api.post(
                f"/bot{telegram.token}/getFile",
                json={"file_id": voice["voice"]["file_id"]},
            )
            audio = await bot_api.get(
                f"/file/bot{telegram.token}/{found.json()['result']['file_path']}"
            )
        ogg_packets(audio.content)  # a well-formed Ogg stream, checksums and all
        assert spoken_text(audio.content) == answer

        # WhatsApp: the text, then the audio from a MediaUrl that gateway-api
        # answers over loopback.
        await say_on_whatsapp(stack, ASKED)

        async def both():
            # With what Twilio's API does not echo back: the MediaUrl given.
            answer_ = await stack.devsim.get(
                "/_devsim/messages", params={"to": f"whatsapp:{PHONE}"}
            )
            sent = list(reversed(answer_.json()["messages"]))
            return sent if len(sent) >= 2 else None

        text, spoken = await eventually(both, timeout=120, interval=0.5)
        assert (text["body"], text["media_urls"]) == (answer, [])
        assert spoken["body"] == ""
        (link,) = spoken["media_urls"]
        assert link.startswith(f"{public}/api/v1/media/")
        async with httpx.AsyncClient() as twilio_fetching:
            fetched = await twilio_fetching.get(link)
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "audio/ogg"
        assert spoken_text(fetched.content) == answer

        async def metered():
            rows = await clean_db.fetch(
                "SELECT model, cost_microusd FROM llm_calls "
                "WHERE user_id = $1 AND endpoint = 'audio/speech'",
                user_id,
            )
            return rows if len(rows) == 2 else None

        rows = await eventually(metered, timeout=10)
        # tts-1: $15 a million characters, both replies the same length.
        assert [(r["model"], r["cost_microusd"]) for r in rows] == [
            ("tts-1", round(len(answer) * 15))
        ] * 2
