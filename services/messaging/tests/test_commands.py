"""The chat commands, answered without asking the assistant."""

from __future__ import annotations

import asyncio
import json

import pytest
from yourclaw_common.events import (
    Stream,
    Subject,
)
from yourclaw_common.nats import publish

from .conftest import (
    PHONE,
    inbound,
    llm_requests,
    settle,
)


class TestCommands:
    async def test_help_lists_the_commands_without_asking_the_assistant(
        self, texted, devsim
    ):
        await texted("/help")
        (reply,) = await settle(devsim, PHONE, 1)
        for command in ("/help", "/status", "/reset", "/model"):
            assert command in reply["body"]
        assert await llm_requests(devsim) == []

    async def test_status_shows_assistant_model_and_todays_usage(
        self, texted, js, devsim
    ):
        await texted("hello", rate_limit_msg_per_min=5, rate_limit_msg_per_day=100)
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
        # Gone before the client drains, which would wait 30 s for it.
        await provision.unsubscribe()

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

    async def test_reset_starts_a_new_session(self, texted, js, devsim):
        user_id = await texted("remember the blue door")
        await settle(devsim, PHONE, 1, wait=0)
        await publish(js, inbound(PHONE, "/reset"))
        await settle(devsim, PHONE, 2, wait=0)
        await publish(js, inbound(PHONE, "what door?"))
        sent = await settle(devsim, PHONE, 3)
        assert "fresh conversation" in sent[1]["body"]
        first, second = await llm_requests(devsim)
        assert first["session_key"] == f"wa:{user_id}"
        assert second["session_key"] == second["user"] == f"wa:{user_id}:1"

    async def test_unknown_slash_command_goes_to_the_assistant(self, texted, devsim):
        await texted("/weather Paris")
        (reply,) = await settle(devsim, PHONE, 1)
        assert reply["body"] == "Echo: /weather Paris"


class TestChannelCommand:
    async def test_channel_tells_where_reminders_go_and_refuses_an_unlinked_one(
        self, texted, js, devsim, clean_db
    ):
        await texted("/channel")
        (told,) = await settle(devsim, PHONE, 1)
        assert "reach you on whatsapp" in told["body"]
        await publish(js, inbound(PHONE, "/channel telegram"))
        refused = (await settle(devsim, PHONE, 2))[1]["body"]
        assert '"telegram" isn\'t one of your channels' in refused
        assert await clean_db.fetchval("SELECT preferred_channel FROM users") is None
        await publish(js, inbound(PHONE, "/channel WhatsApp"))
        chosen = (await settle(devsim, PHONE, 3))[2]["body"]
        assert "now reach you on whatsapp" in chosen
        assert await clean_db.fetchval("SELECT preferred_channel FROM users") == (
            "whatsapp"
        )
        assert await llm_requests(devsim) == []


class TestVoiceCommand:
    async def test_voice_on_and_off_switch_spoken_replies(
        self, texted, js, devsim, clean_db
    ):
        await texted("/voice")
        (told,) = await settle(devsim, PHONE, 1)
        assert told["body"].startswith("Voice replies are off.")
        await publish(js, inbound(PHONE, "/voice ON"))
        turned_on = (await settle(devsim, PHONE, 2))[1]["body"]
        assert turned_on.startswith("Voice replies are on")
        assert await clean_db.fetchval("SELECT voice_replies FROM users") is True
        await publish(js, inbound(PHONE, "/voice loud"))
        unknown = (await settle(devsim, PHONE, 3))[2]["body"]
        assert unknown.startswith("Use /voice on or /voice off.")
        assert await clean_db.fetchval("SELECT voice_replies FROM users") is True
        await publish(js, inbound(PHONE, "/voice off"))
        turned_off = (await settle(devsim, PHONE, 4))[3]["body"]
        assert turned_off.startswith("Voice replies are off")
        assert await clean_db.fetchval("SELECT voice_replies FROM users") is False
        assert await llm_requests(devsim) == []

    async def test_help_lists_voice(self, texted, devsim):
        await texted("/help")
        (reply,) = await settle(devsim, PHONE, 1)
        assert "/voice on|off" in reply["body"]
