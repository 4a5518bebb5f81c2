"""Telegram end to end, with the real OpenClaw gateway:

the dashboard's link (`POST /api/v1/channels/telegram/link`) → the chat's
`/start <code>` through the Bot API stand-in's webhook (`setWebhook` as `make
telegram-webhook` calls it) → gateway-api links the chat → messaging confirms;
then a message → the user's gateway → the model (LLM stand-in) → sendMessage
to that chat; and a reminder set on Telegram arrives there by itself (the
user's only channel). A chat nobody linked is told how to link, once.
Slow: one gateway boot (~1.3 GB).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import AssistantProvisionRequested
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.telegram_sim import TelegramSim, running_telegram_sim
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.telegram_setup import set_webhook
from yourclaw_messaging import replies

from .conftest import gateway_ports, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHAT = 5150
STRANGER_CHAT = 5151
WEBHOOK_SECRET = "e2e-telegram-webhook-secret"
DEV_LOGIN_SECRET = "e2e-dev-login-secret-0123456789abcdef-0123"


@dataclass
class Stack:
    api: httpx.AsyncClient
    sim: TelegramSim
    telegram: httpx.AsyncClient
    nc: Any
    settings: GatewaySettings

    async def say(self, chat_id: int, text: str) -> dict[str, Any]:
        """The chat sends `text`; the stand-in delivers the Update to the webhook."""
        answer = await self.telegram.post(
            "/_devsim/telegram/updates",
            json={"chat_id": chat_id, "text": text, "first_name": "Ada"},
        )
        answer.raise_for_status()
        delivered: dict[str, Any] = answer.json()
        assert delivered["status"] == 200, delivered
        return delivered

    async def answers(self, chat_id: int, count: int) -> list[str]:
        async def enough():
            sent = [m["text"] for m in self.sim.state.sent(chat_id)]
            return sent if len(sent) >= count else None

        got: list[str] = await eventually(enough, timeout=180, interval=0.5)
        return got


@pytest_asyncio.fixture(loop_scope="session")
async def stack(service_env, gateway_stack) -> AsyncIterator[Stack]:
    api_port = free_port()
    # gateway-api on loopback: the stand-in's webhook and the assistants'
    # automation webhooks (cron.webhookSsrfPolicy lets loopback through) reach it.
    public = f"http://127.0.0.1:{api_port}"
    async with running_telegram_sim() as sim:
        settings = GatewaySettings(
            _env_file=None,
            **{k.lower(): v for k, v in service_env.items()},
            public_base_url=public,
            api_port=api_port,
            telegram_bot_token=sim.token,
            telegram_webhook_secret=WEBHOOK_SECRET,
            telegram_api_base=sim.url,
            yourclaw_env="dev",
            dev_login_enabled=True,
            dev_login_secret=DEV_LOGIN_SECRET,
        )
        running = await gateway_stack(
            capacity=1,
            public_base_url=public,
            provisioner=gateway_ports(),
            messaging={
                "telegram_bot_token": sim.token,
                "telegram_api_base": sim.url,
                "app_url": "https://app.yourclaw.test",
            },
        )
        async with (
            running_app(create_app(settings), port=api_port),
            httpx.AsyncClient(base_url=public, timeout=30) as api,
            httpx.AsyncClient(base_url=sim.url, timeout=30) as telegram,
        ):
            # What `make telegram-webhook` does against the real Bot API.
            info = await set_webhook(api, settings)
            assert info["url"] == f"{public}/api/v1/webhooks/telegram"
            yield Stack(api, sim, telegram, running.nc, settings)


class TestTelegramEndToEnd:
    async def test_linked_chat_is_answered_by_its_assistant(self, stack, clean_db):
        login = await stack.api.post(
            "/api/v1/dev/login", json={"email": "ada@telegram.test"}
        )
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        user_id = login.json()["user_id"]

        # The dashboard's "Link Telegram" (which also creates the user row).
        link = await stack.api.post("/api/v1/channels/telegram/link", headers=auth)
        assert link.status_code == 200, link.text
        url = urlsplit(link.json()["url"])
        assert (url.netloc, url.path) == ("t.me", f"/{stack.sim.state.username}")
        code = parse_qs(url.query)["start"][0]

        # A subscriber with an assistant being provisioned (a real gateway).
        await clean_db.execute(
            "INSERT INTO subscriptions (user_id, stripe_customer_id, status) "
            "VALUES ($1, 'cus_e2e_telegram', 'ACTIVE')",
            user_id,
        )
        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )

        # Opening the link: Telegram sends /start <code> from the user's chat.
        await stack.say(CHAT, f"/start {code}")
        assert await stack.answers(CHAT, 1) == [replies.TELEGRAM_LINKED]
        linked = await clean_db.fetchrow("SELECT user_id, chat_id FROM telegram_links")
        assert (str(linked["user_id"]), linked["chat_id"]) == (user_id, CHAT)

        # A chat nobody linked reaches no assistant.
        await stack.say(STRANGER_CHAT, "hello?")
        assert await stack.answers(STRANGER_CHAT, 1) == [
            replies.TELEGRAM_STRANGER.format(app_url="https://app.yourclaw.test")
        ]

        await wait_ready(clean_db, user_id)
        # Telegram is the user's only channel: the ready notice comes here,
        # free-form (Telegram has no 24-hour window).
        ready = (await stack.answers(CHAT, 2))[1]
        assert ready.startswith("Your YourClaw assistant is ready")
        await stack.say(CHAT, "hello from telegram")
        answered = await stack.answers(CHAT, 3)
        assert answered[2] == "Echo: hello from telegram"
        # "typing…" was shown while the assistant worked.
        assert "typing" in {a["action"] for a in stack.sim.state.actions(CHAT)}
        row = await clean_db.fetchrow(
            "SELECT channel, phone_e164, status, twilio_sid FROM messages "
            "WHERE direction = 'OUTBOUND' AND body = $1",
            answered[2],
        )
        assert (row["channel"], row["phone_e164"], row["status"]) == (
            "telegram",
            str(CHAT),
            "SENT",
        )
        assert row["twilio_sid"].startswith(f"tg:{CHAT}:")

        # A reminder set on Telegram arrives there by itself.
        await stack.say(CHAT, "remind me in 5 seconds to stretch")
        answered = await stack.answers(CHAT, 5)
        assert answered[3:] == ["Done: I'll remind you.", "Reminder: stretch"]
        assert [m["text"] for m in stack.sim.state.sent(STRANGER_CHAT)] == [
            replies.TELEGRAM_STRANGER.format(app_url="https://app.yourclaw.test")
        ]
