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
import random
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    AssistantProvisionRequested,
    HostReply,
    HostVerb,
    InboundWhatsApp,
    ListContainers,
    host_command,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, subscribed_user
from yourclaw_devkit.defaults import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_devkit.pytest_plugin import sent_to
from yourclaw_devkit.serving import running_app
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_host_agent.app import run as run_host_agent
from yourclaw_host_agent.settings import HostAgentSettings
from yourclaw_messaging.app import run as run_messaging
from yourclaw_messaging.settings import MessagingSettings
from yourclaw_provisioner.app import run as run_provisioner
from yourclaw_provisioner.settings import ProvisionerSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+15557775678"
BOOT_TIMEOUT = 180.0


class Stack:
    def __init__(self, host_id: str, nc, devsim):
        self.host_id = host_id
        self.nc = nc
        self.devsim = devsim

    async def containers(self) -> list[str]:
        msg = await self.nc.request(
            host_command(self.host_id, HostVerb.LIST),
            ListContainers().model_dump_json().encode(),
            timeout=10,
        )
        return [c.name for c in HostReply.model_validate_json(msg.data).containers]

    async def replies(self) -> list[str]:
        return [m["body"] for m in await sent_to(self.devsim, PHONE)]


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    service_env,
    devsim_url,
    devsim,
    clean_db,
    nats_client,
    openclaw_dir,
    gateway_host_dir,
) -> AsyncIterator[Stack]:
    env = {k.lower(): v for k, v in service_env.items()}
    host_id = f"remind-{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    # The address OpenClaw posts automations to: gateway-api on loopback, which
    # the rendered cron.webhookSsrfPolicy lets through.
    public = f"http://127.0.0.1:{api_port}"
    gateway = GatewaySettings(
        _env_file=None, **env, public_base_url=public, api_port=api_port
    )
    host_agent = HostAgentSettings(
        _env_file=None,
        **env,
        service_name="host-agent",
        host_id=host_id,
        host_capacity=1,
        host_heartbeat_seconds=1,
        host_data_dir=gateway_host_dir,
        openclaw_install_dir=openclaw_dir,
    )
    provisioner = ProvisionerSettings(
        _env_file=None,
        **env,
        public_base_url=public,
        dev_llm_base_url=devsim_url,
        gateway_health_timeout_seconds=BOOT_TIMEOUT,
        provision_poll_interval_seconds=0.2,
        reconcile_interval_seconds=1,
        # Clear of other test runs' gateways on this machine.
        host_port_range_start=(start := 30000 + random.randrange(0, 9000)),
        host_port_range_end=start + 50,
    )
    messaging = MessagingSettings(
        _env_file=None,
        **env,
        twilio_account_sid=DEV_TWILIO_ACCOUNT_SID,
        twilio_auth_token=DEV_TWILIO_AUTH_TOKEN,
        twilio_whatsapp_number=DEV_WHATSAPP_NUMBER,
        twilio_api_base=devsim_url,
        twilio_template_assistant_ready="HXready00000000000000000000000000",
        assistant_timeout_seconds=120,
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_host_agent(host_agent, stop)),
        asyncio.create_task(run_provisioner(provisioner, stop)),
        asyncio.create_task(run_messaging(messaging, stop)),
    ]
    stack = Stack(host_id, nats_client, devsim)
    try:
        async with running_app(create_app(gateway), port=api_port):
            yield stack
    finally:
        # Gateways left running are stopped by `gateway_host_dir`, after this.
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_ready(pool, user_id):
    async def probe():
        row = await pool.fetchrow(
            "SELECT * FROM assistants WHERE user_id = $1", user_id
        )
        if row is not None and row["status"] == "ERROR":
            raise AssertionError(f"provisioning failed: {row['last_error']}")
        return row if row is not None and row["status"] == "READY" else None

    return await eventually(probe, timeout=BOOT_TIMEOUT + 60, interval=0.5)


class TestReminderEndToEnd:
    async def test_reminder_arrives_by_itself(self, stack, clean_db, devsim):
        user_id = await subscribed_user(clean_db, phone=PHONE)
        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        await wait_ready(clean_db, user_id)

        await publish(
            stack.nc.jetstream(),
            InboundWhatsApp(
                message_sid=f"SM{uuid.uuid4().hex}",
                account_sid=DEV_TWILIO_ACCOUNT_SID,
                from_number=f"whatsapp:{PHONE}",
                to_number=DEV_WHATSAPP_NUMBER,
                body="remind me in 5 seconds to stretch",
            ),
        )

        async def confirmed():
            return [r for r in await stack.replies() if not r.startswith("[template")][
                :1
            ] or None

        (confirmation,) = await eventually(confirmed, timeout=120, interval=0.5)
        assert confirmation == "Done: I'll remind you."
        # The model really asked for the automation, with webhook delivery.
        requests = (await devsim.get("/_devsim/llm/requests")).json()["requests"]
        assert any("automations" in str(r["body"].get("tools")) for r in requests), (
            "the gateway did not offer the automations tool"
        )

        async def reminded():
            replies = [
                r for r in await stack.replies() if not r.startswith("[template")
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
        assert [r for r in await stack.replies() if not r.startswith("[template")] == [
            "Done: I'll remind you.",
            "Reminder: stretch",
        ]
