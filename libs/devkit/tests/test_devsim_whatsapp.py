"""The stand-ins' WhatsApp additions: injected Twilio errors, hosted media, and a
model that schedules reminders with OpenClaw's automations tool."""

from __future__ import annotations

import orjson
from yourclaw_devkit.defaults import DEV_TWILIO_ACCOUNT_SID as SID
from yourclaw_devkit.defaults import DEV_TWILIO_AUTH_TOKEN as TOKEN

MESSAGES_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
AUTH = (SID, TOKEN)
USER = "whatsapp:+15551239999"
SENDER = "whatsapp:+14155238886"
NOTIFY = "http://127.0.0.1:8000/api/v1/internal/assistants/a1/notify"


async def send(devsim, body="hi"):
    return await devsim.post(
        MESSAGES_PATH, data={"To": USER, "From": SENDER, "Body": body}, auth=AUTH
    )


class TestFaults:
    async def test_injected_error_fails_the_next_sends_then_clears(self, devsim):
        await devsim.delete("/_devsim/twilio/faults")
        added = await devsim.post(
            "/_devsim/twilio/faults",
            json={"to": USER, "code": 20429, "status": 429, "times": 2},
        )
        assert added.status_code == 201
        first, second, third = [await send(devsim) for _ in range(3)]
        assert (first.status_code, first.json()["code"]) == (429, 20429)
        assert second.status_code == 429
        assert third.status_code == 201
        assert first.json()["more_info"] == "https://www.twilio.com/docs/errors/20429"

    async def test_asynchronous_error_is_accepted_then_reported_failed(self, devsim):
        await devsim.delete("/_devsim/twilio/faults")
        await devsim.post(
            "/_devsim/twilio/faults",
            json={"to": USER, "code": 63016, "asynchronous": True},
        )
        accepted = await send(devsim)
        assert accepted.status_code == 201
        fetched = await devsim.get(
            f"/2010-04-01/Accounts/{SID}/Messages/{accepted.json()['sid']}.json",
            auth=AUTH,
        )
        assert accepted.json()["status"] == "queued"
        assert (fetched.json()["status"], fetched.json()["error_code"]) == (
            "failed",
            63016,
        )

    async def test_malformed_fault_is_400(self, devsim):
        response = await devsim.post("/_devsim/twilio/faults", json={"to": USER})
        assert response.status_code == 400


class TestMedia:
    async def test_uploaded_media_is_served_with_account_credentials_only(self, devsim):
        uploaded = await devsim.post(
            "/_devsim/media",
            content=b"\x89PNG...",
            headers={"content-type": "image/png"},
        )
        assert uploaded.status_code == 201
        url = uploaded.json()["url"]
        assert f"/2010-04-01/Accounts/{SID}/Messages/MM" in url
        served = await devsim.get(url, auth=AUTH)
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/png"
        assert served.content == b"\x89PNG..."
        anonymous = await devsim.get(url)
        assert anonymous.status_code == 401


def chat(
    text, *, tools, extra_messages=(), system=f"mode: webhook\n    to: {NOTIFY}\n"
):
    return {
        "model": "openclaw/default",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": text},
            *extra_messages,
        ],
        "tools": [{"type": "function", "function": {"name": t}} for t in tools],
    }


class TestReminders:
    async def test_remind_me_becomes_an_automations_call_with_webhook_delivery(
        self, devsim
    ):
        response = await devsim.post(
            "/v1/chat/completions",
            json=chat("remind me in 2 minutes to call Sam", tools=["automations"]),
        )
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        (call,) = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "automations"
        args = orjson.loads(call["function"]["arguments"])
        assert args["action"] == "add"
        job = args["job"]
        assert job["schedule"]["kind"] == "at"
        assert job["payload"] == {"kind": "agentTurn", "message": "REMINDER: call Sam"}
        assert job["delivery"] == {"mode": "webhook", "to": NOTIFY}

    async def test_through_tool_search_when_not_offered_directly(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions",
            json={**chat("remind me in 5 seconds to stretch", tools=["tool_call"])},
        )
        (call,) = response.json()["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == "tool_call"
        assert orjson.loads(call["function"]["arguments"])["id"] == "automations"

    async def test_tool_result_is_answered_in_words_and_the_job_turn_reminds(
        self, devsim
    ):
        after = chat(
            "remind me in 5 seconds to stretch",
            tools=["automations"],
            extra_messages=[
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "content": "{}", "tool_call_id": "c1"},
            ],
        )
        done = await devsim.post("/v1/chat/completions", json=after)
        assert (
            done.json()["choices"][0]["message"]["content"] == "Done: I'll remind you."
        )
        fired = await devsim.post(
            "/v1/chat/completions",
            json=chat("REMINDER: stretch\nCurrent time: now", tools=["automations"]),
        )
        assert fired.json()["choices"][0]["message"]["content"] == "Reminder: stretch"

    async def test_without_the_tool_it_just_echoes(self, devsim):
        response = await devsim.post(
            "/v1/chat/completions", json=chat("remind me in 1 minute", tools=[])
        )
        assert (
            response.json()["choices"][0]["message"]["content"]
            == "Echo: remind me in 1 minute"
        )


class TestVoiceReplies:
    async def test_a_media_url_without_a_body_is_a_voice_message_in_the_chat(
        self, devsim
    ):
        link = "http://127.0.0.1:8000/api/v1/media/abc.ogg?exp=1&sig=ab"

        created = await devsim.post(
            MESSAGES_PATH,
            data={"To": USER, "From": SENDER, "MediaUrl": link},
            auth=AUTH,
        )

        assert created.status_code == 201, created.text
        assert created.json()["num_media"] == "1"
        thread = await devsim.get(
            "/_devsim/whatsapp/thread", params={"phone": USER.removeprefix("whatsapp:")}
        )
        (shown,) = [
            m for m in thread.json()["messages"] if m["sid"] == created.json()["sid"]
        ]
        assert shown["media"] == [link]
        page = await devsim.get("/_devsim/whatsapp")
        assert "voice message" in page.text
