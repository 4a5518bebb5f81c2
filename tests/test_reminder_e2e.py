"""A reminder that arrives by itself, with the real OpenClaw gateway:

"remind me in 5 seconds to stretch" on WhatsApp → messaging → the user's
gateway → the model (LLM stand-in, scripted like a real model) calls the
`automations` tool with webhook delivery to the address in the agent's
instructions → OpenClaw's scheduler fires, runs the job, and POSTs the finished
run (bearer = the assistant's notify secret, through `cron.webhookSsrfPolicy`)
to gateway-api's notify endpoint → `outbound.whatsapp` → messaging → Twilio.
Nobody writes in between. Slow: one gateway boot (~1.3 GB).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from yourclaw_common.events import AssistantProvisionRequested
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, subscribed_user
from yourclaw_devkit.pytest_plugin import inbound_whatsapp

from .conftest import stack_with_api, told_ready, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+15557775678"


@pytest_asyncio.fixture(loop_scope="session")
async def stack(service_env, gateway_stack) -> AsyncIterator[object]:
    async with stack_with_api(
        service_env,
        gateway_stack,
        messaging={
            "twilio_template_assistant_ready": "HXready00000000000000000000000000"
        },
    ) as (stack, _):
        yield stack


class TestReminderEndToEnd:
    async def test_reminder_arrives_by_itself(self, stack, clean_db, devsim):
        user_id = await subscribed_user(clean_db, phone=PHONE)
        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        await wait_ready(clean_db, user_id)
        await told_ready(stack, PHONE)
        await publish(
            stack.nc.jetstream(),
            inbound_whatsapp(PHONE, "remind me in 5 seconds to stretch"),
        )

        async def confirmed():
            return [
                r for r in await stack.replies(PHONE) if not r.startswith("[template")
            ][:1] or None

        (confirmation,) = await eventually(confirmed, timeout=120, interval=0.5)
        assert confirmation == "Done: I'll remind you."
        # The model really asked for the automation, with webhook delivery.
        requests = (await devsim.get("/_devsim/llm/requests")).json()["requests"]
        # Directly, or (the prompt diet keeps the request small) behind Tool
        # Search's `tool_call`, which the stand-in then calls with its id.
        assert any(
            "automations" in str(r["body"].get("tools"))
            or "'tool_call'" in str(r["body"].get("tools"))
            for r in requests
        ), "the gateway did not offer the automations tool"

        async def reminded():
            replies = [
                r for r in await stack.replies(PHONE) if not r.startswith("[template")
            ]
            return replies if len(replies) >= 2 else None

        replies = await eventually(reminded, timeout=120, interval=0.5)
        assert replies[1] == "Reminder: stretch"
        row = await clean_db.fetchrow(
            "SELECT kind, status FROM messages WHERE direction = 'OUTBOUND' "
            "AND in_reply_to LIKE 'out:%'"
        )
        assert (row["kind"], row["status"]) == ("proactive", "SENT")
        await asyncio.sleep(2)
        # The confirmation and the reminder, each once (besides the ready template).
        assert [
            r for r in await stack.replies(PHONE) if not r.startswith("[template")
        ] == [
            "Done: I'll remind you.",
            "Reminder: stretch",
        ]
