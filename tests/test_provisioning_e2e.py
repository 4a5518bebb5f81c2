"""A real OpenClaw gateway, provisioned through NATS and used through messaging:

provisioner → host-agent (process runtime) → `openclaw gateway` → READY →
inbound.whatsapp → messaging → the gateway → the LLM stand-in → the Twilio
stand-in; then a model change (same workspace, same token), then a deprovision
(process gone, workspace kept). Slow: each gateway boot takes seconds and ~1.3 GB.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from yourclaw_common.events import (
    AssistantDeprovisionRequested,
    AssistantProvisionRequested,
    HostReply,
    HostVerb,
    InboundWhatsApp,
    ListContainers,
    container_name,
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
from yourclaw_host_agent.app import run as run_host_agent
from yourclaw_host_agent.settings import HostAgentSettings
from yourclaw_messaging.app import run as run_messaging
from yourclaw_messaging.settings import MessagingSettings
from yourclaw_provisioner.app import run as run_provisioner
from yourclaw_provisioner.settings import ProvisionerSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+15557771234"
# A gateway's first boot on a busy 2-core machine can take half a minute.
BOOT_TIMEOUT = 180.0


class Stack:
    def __init__(self, host_id: str, data_dir: Path, nc, devsim):
        self.host_id = host_id
        self.data_dir = data_dir
        self.nc = nc
        self.devsim = devsim

    async def containers(self) -> dict[str, str]:
        msg = await self.nc.request(
            host_command(self.host_id, HostVerb.LIST),
            ListContainers().model_dump_json().encode(),
            timeout=10,
        )
        reply = HostReply.model_validate_json(msg.data)
        return {c.name: c.state for c in reply.containers}

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
    host_id = f"e2e-{uuid.uuid4().hex[:8]}"
    data_dir = gateway_host_dir
    host_agent = HostAgentSettings(
        _env_file=None,
        **env,
        service_name="host-agent",
        host_id=host_id,
        host_capacity=2,
        host_heartbeat_seconds=1,
        host_data_dir=data_dir,
        openclaw_install_dir=openclaw_dir,
    )
    provisioner = ProvisionerSettings(
        _env_file=None,
        **env,
        public_base_url="http://127.0.0.1:8000",
        dev_llm_base_url=devsim_url,
        gateway_health_timeout_seconds=BOOT_TIMEOUT,
        provision_poll_interval_seconds=0.2,
        reconcile_interval_seconds=1,
    )
    messaging = MessagingSettings(
        _env_file=None,
        **env,
        twilio_account_sid=DEV_TWILIO_ACCOUNT_SID,
        twilio_auth_token=DEV_TWILIO_AUTH_TOKEN,
        twilio_whatsapp_number=DEV_WHATSAPP_NUMBER,
        twilio_api_base=devsim_url,
        assistant_timeout_seconds=120,
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_host_agent(host_agent, stop)),
        asyncio.create_task(run_provisioner(provisioner, stop)),
        asyncio.create_task(run_messaging(messaging, stop)),
    ]
    stack = Stack(host_id, data_dir, nats_client, devsim)
    try:
        yield stack
    finally:
        # Gateways left running are stopped by `gateway_host_dir`, after this.
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def ready(pool, user_id, *, spec_hash_not=None):
    async def probe():
        row = await pool.fetchrow(
            "SELECT * FROM assistants WHERE user_id = $1", user_id
        )
        if row is None:
            return None
        if row["status"] == "ERROR":
            raise AssertionError(f"provisioning failed: {row['last_error']}")
        if row["status"] == "READY" and row["spec_hash"] != spec_hash_not:
            return row
        return None

    try:
        return await eventually(probe, timeout=BOOT_TIMEOUT + 60, interval=0.2)
    except AssertionError:
        jobs = await pool.fetch(
            "SELECT kind, status, attempts, last_error FROM provisioning_jobs "
            "WHERE user_id = $1 ORDER BY created_at",
            user_id,
        )
        raise AssertionError(f"not READY; jobs: {[dict(j) for j in jobs]}") from None


async def turn(stack: Stack, text: str, count: int) -> str:
    await publish(
        stack.nc.jetstream(),
        InboundWhatsApp(
            message_sid=f"SM{uuid.uuid4().hex}",
            account_sid=DEV_TWILIO_ACCOUNT_SID,
            from_number=f"whatsapp:{PHONE}",
            to_number=DEV_WHATSAPP_NUMBER,
            body=text,
        ),
    )

    async def answered():
        replies = await stack.replies()
        return replies[count - 1] if len(replies) >= count else None

    return await eventually(answered, timeout=120, interval=0.2)


class TestProvisioningEndToEnd:
    async def test_provision_chat_change_model_deprovision(self, stack, clean_db):
        user_id = await subscribed_user(clean_db, phone=PHONE)
        name = container_name(user_id)

        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        first = await ready(clean_db, user_id)
        assert first["host_id"] == stack.host_id
        assert first["base_url"] == f"http://127.0.0.1:{first['port']}"
        assert (await stack.containers())[name] == "running"

        reply = await turn(stack, "hello from whatsapp", 1)
        assert reply.startswith("Echo: hello from whatsapp")
        requests = [
            r
            for r in (await stack.devsim.get("/_devsim/llm/requests")).json()[
                "requests"
            ]
            if "hello from whatsapp" in r["user_text"]
        ]
        # Our instructions reach the model (in the agent turn's system prompt)
        # through OpenClaw's bootstrap hook.
        assert any(
            "WhatsApp formatting only" in str(r["body"]["messages"]) for r in requests
        )

        workspace = stack.data_dir / str(user_id) / "workspace"
        (workspace / "NOTES.md").write_text("remember me")

        # A model change re-creates the gateway: same host, port, token, workspace.
        await publish(
            stack.nc.jetstream(),
            AssistantProvisionRequested(
                user_id=user_id, reason="model_changed", model="openai/gpt-4o"
            ),
        )
        second = await ready(clean_db, user_id, spec_hash_not=first["spec_hash"])
        assert second["model"] == "openai/gpt-4o"
        assert (second["host_id"], second["port"]) == (first["host_id"], first["port"])
        assert second["gateway_token_encrypted"] == first["gateway_token_encrypted"]
        assert (workspace / "NOTES.md").read_text() == "remember me"
        reply = await turn(stack, "still there?", 2)
        assert reply.startswith("Echo: still there?")

        # Deprovision: the gateway stops, the workspace stays.
        await publish(
            stack.nc.jetstream(), AssistantDeprovisionRequested(user_id=user_id)
        )

        async def gone():
            row = await clean_db.fetchrow(
                "SELECT status, host_id FROM assistants WHERE user_id = $1", user_id
            )
            return (
                row["status"] == "NONE"
                and row["host_id"] is None
                and name not in await stack.containers()
            )

        await eventually(gone, timeout=60, interval=0.2)
        row = await clean_db.fetchrow(
            "SELECT host_id, port, base_url FROM assistants WHERE user_id = $1", user_id
        )
        assert tuple(row) == (None, None, None)
        assert (workspace / "NOTES.md").read_text() == "remember me"
