"""A WhatsApp voice note, end to end with the real OpenClaw gateway:

`inbound.whatsapp` with MediaUrl0 on the Twilio stand-in (audio/ogg) →
messaging fetches the audio from Twilio with the account's credentials →
llm-proxy `/v1/audio/transcriptions` with messaging's service credential, for
the user (metered to them) → the stand-in provider hears the text in the file →
the user's gateway gets "(voice note) <transcript>" and answers through the
proxy → Twilio. Slow: one gateway boot. (A MediaUrl on another host, too large
or undecodable audio: services/messaging/tests/test_voice.py.)
"""

from __future__ import annotations

import random

import pytest
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import AssistantProvisionRequested
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, subscribed_user
from yourclaw_devkit.pytest_plugin import inbound_whatsapp

from .conftest import wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+15557771818"
SERVICE_TOKEN = "voice-e2e-service-credential-0123456789"
SPOKEN = "what should I cook tonight"


@pytest_asyncio.fixture(loop_scope="session")
async def stack(gateway_stack):
    proxy = f"http://127.0.0.1:{free_port()}"
    return await gateway_stack(
        capacity=1,
        provisioner={
            # Clear of other test runs' gateways on this machine.
            "host_port_range_start": (start := 30000 + random.randrange(0, 9000)),
            "host_port_range_end": start + 50,
            "llm_proxy_url": proxy,
        },
        llm_proxy={
            "llm_proxy_port": int(proxy.rsplit(":", 1)[1]),
            "llm_proxy_service_token": SERVICE_TOKEN,
        },
        messaging={
            "voice_transcription_url": proxy,
            "llm_proxy_service_token": SERVICE_TOKEN,
        },
    )


class TestVoiceNoteEndToEnd:
    async def test_a_voice_note_is_transcribed_and_answered(self, stack, clean_db):
        user_id = await subscribed_user(clean_db, phone=PHONE)
        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        await wait_ready(clean_db, user_id)
        (await stack.devsim.delete("/_devsim/llm/requests")).raise_for_status()
        hosted = await stack.devsim.post(
            "/_devsim/media",
            content=b"OggS\x00\x02" + SPOKEN.encode() + b"\x00" * 6000,
            headers={"content-type": "audio/ogg"},
        )
        hosted.raise_for_status()

        await publish(
            stack.nc.jetstream(),
            inbound_whatsapp(PHONE, "", media=[(hosted.json()["url"], "audio/ogg")]),
        )

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
