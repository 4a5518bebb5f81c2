"""A real OpenClaw gateway, provisioned through NATS and used through messaging:

provisioner → host-agent (process runtime) → `openclaw gateway` → READY →
inbound.whatsapp → messaging → the gateway → the LLM stand-in → the Twilio
stand-in; then a model change (same workspace, same token), then a deprovision
(process gone, workspace kept). No secret of the assistant is stored on the bus
or crosses it in clear. Slow: each gateway boot takes seconds and ~1.3 GB.
"""

from __future__ import annotations

import pytest
import pytest_asyncio
from nats.js.errors import NotFoundError
from yourclaw_common.crypto import SecretBox
from yourclaw_common.events import (
    STREAMS,
    AssistantDeprovisionRequested,
    AssistantProvisionRequested,
    container_name,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, subscribed_user
from yourclaw_devkit.pytest_plugin import inbound_whatsapp

from .conftest import wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+15557771234"


@pytest_asyncio.fixture(loop_scope="session")
async def stack(gateway_stack):
    return await gateway_stack()


async def turn(stack, text: str, count: int) -> str:
    await publish(stack.nc.jetstream(), inbound_whatsapp(PHONE, text))

    async def answered():
        replies = await stack.replies(PHONE)
        return replies[count - 1] if len(replies) >= count else None

    return await eventually(answered, timeout=120, interval=0.2)


async def stored_on_the_bus(js) -> bytes:
    """Every message every JetStream stream holds, headers included, joined."""
    found: list[bytes] = []
    for stream in STREAMS:
        info = await js.stream_info(stream.name)
        if not info.state.messages:
            continue
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream.name, seq)
            except NotFoundError:  # deleted or aged out
                continue
            found.append(msg.data or b"")
            found.append(repr(msg.headers).encode())
    return b"\n".join(found)


class TestProvisioningEndToEnd:
    async def test_provision_chat_change_model_deprovision(
        self, stack, clean_db, encryption_key
    ):
        user_id = await subscribed_user(clean_db, phone=PHONE)
        name = container_name(user_id)
        # The operator's NATS user reads every subject while it provisions:
        # host commands, their replies, heartbeats, JetStream traffic.
        on_the_wire: list[tuple[str, bytes]] = []

        async def record(msg) -> None:
            on_the_wire.append((msg.subject, msg.data + repr(msg.headers).encode()))

        wiretap = await stack.nc.subscribe(">", cb=record)

        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        first = await wait_ready(clean_db, user_id)
        await stack.nc.flush()
        await wiretap.unsubscribe()
        assert first["host_id"] == stack.host_id
        assert first["base_url"] == f"http://127.0.0.1:{first['port']}"
        assert (await stack.containers())[name] == "running"

        reply = await turn(stack, "hello from whatsapp", 1)
        assert reply.startswith("Echo: hello from whatsapp")
        # No secret of the assistant, nor the platform's key, is stored on the
        # bus (host commands are core request/reply, never in a stream).
        box = SecretBox(encryption_key)
        secrets_ = [
            box.decrypt(first[column], owner=str(user_id)).encode()
            for column in (
                "gateway_token_encrypted",
                "notify_secret_encrypted",
                "proxy_token_encrypted",
            )
        ]
        bus = await stored_on_the_bus(stack.nc.jetstream())
        assert b"hello from whatsapp" in bus  # the reader sees the streams
        for secret in [*secrets_, encryption_key.encode()]:
            assert secret not in bus
        # Nor does one cross it in clear: the create was sealed to the host.
        create = f"host.{stack.host_id}.create"
        assert create in {subject for subject, _ in on_the_wire}
        traffic = b"\n".join(data for _, data in on_the_wire)
        for secret in secrets_:
            assert secret not in traffic
        # The gateway runs with them: its config on the host has the token.
        config = stack.data_dir / str(user_id) / "config" / "openclaw.json"
        assert secrets_[0] in config.read_bytes()
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
            "Formatting only as WhatsApp writes it"
            in str(r["body"].get("system")) + str(r["body"]["messages"])
            for r in requests
        )
        # Through the LLM proxy, with the platform's (stand-in) key, metered.
        assert {r["path"] for r in requests} == {"/v1/messages"}
        calls = await clean_db.fetch(
            "SELECT model, key_source FROM llm_calls WHERE user_id = $1", user_id
        )
        assert {(c["model"], c["key_source"]) for c in calls} == {
            ("claude-sonnet-4-5-20250929", "PLATFORM")
        }

        workspace = stack.data_dir / str(user_id) / "workspace"
        (workspace / "NOTES.md").write_text("remember me")

        # A model change re-creates the gateway: same host, port, token, workspace.
        await publish(
            stack.nc.jetstream(),
            AssistantProvisionRequested(
                user_id=user_id, reason="model_changed", model="openai/gpt-4o"
            ),
        )
        second = await wait_ready(clean_db, user_id, spec_hash_not=first["spec_hash"])
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
