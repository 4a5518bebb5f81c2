"""Creates are sealed to the host's key: what crosses the bus, and key changes."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY
from yourclaw_common.events import AssistantProvisionRequested, container_name
from yourclaw_common.nats import publish
from yourclaw_common.sealing import key_id
from yourclaw_common.testing import eventually

from .conftest import assistant, config_of, jobs_of, provision, wait_status


def _logged(caplog) -> str:
    """Every log line of the provisioner, its fields unredacted."""
    return "\n".join(
        f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records
    )


def _key_changes(host_id: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "yourclaw_provisioner_host_key_changes_total", {"host": host_id}
        )
        or 0.0
    )


async def _host_key(pool, host_id: str) -> str | None:
    return await pool.fetchval("SELECT public_key FROM hosts WHERE id = $1", host_id)


async def _change_model(js, user_id) -> None:
    """A re-create: the next create goes to the assistant's host."""
    await publish(
        js,
        AssistantProvisionRequested(
            user_id=user_id, reason="model_changed", model="openai/gpt-4o"
        ),
    )


class TestSealedCreates:
    async def test_no_secret_crosses_the_bus_in_clear(
        self,
        start_provisioner,
        fake_host,
        make_user,
        js,
        clean_db,
        box,
        nats_client,
        caplog,
    ):
        caplog.set_level(logging.DEBUG)
        host = await fake_host("h1")
        user_id = await make_user()
        # The operator's user reads every subject: commands, replies, heartbeats.
        seen: list[tuple[str, bytes]] = []

        async def record(msg) -> None:
            seen.append((msg.subject, msg.data + repr(msg.headers).encode()))

        sub = await nats_client.subscribe(">", cb=record)
        await start_provisioner()

        row = await provision(js, clean_db, user_id)
        await nats_client.flush()
        await sub.unsubscribe()

        owner = str(user_id)
        token = box.decrypt(row["gateway_token_encrypted"], owner=owner)
        notify = box.decrypt(row["notify_secret_encrypted"], owner=owner)
        proxy = box.decrypt(row["proxy_token_encrypted"], owner=owner)
        creates = [data for subject, data in seen if subject == "host.h1.create"]
        assert creates, "the reader sees the create command"
        assert host.key.key_id.encode() in creates[0]
        everything = b"\n".join(data for _, data in seen)
        for secret in (token, notify, proxy):
            assert secret.encode() not in everything
            assert secret not in _logged(caplog)
        # The host opened the spec it runs: the secrets are there.
        config = config_of(host.creates()[0])
        assert config["gateway"]["auth"]["token"] == token
        assert proxy in str(config["models"])
        assert notify in str(config["cron"])

    async def test_a_host_that_announces_no_key_gets_no_placement(
        self, start_provisioner, fake_host, make_user, js, clean_db, caplog
    ):
        caplog.set_level(logging.INFO)
        old = await fake_host("h-old", keyless=True)
        user_id = await make_user()
        await start_provisioner()

        await publish(js, AssistantProvisionRequested(user_id=user_id))
        await wait_status(clean_db, user_id, "ERROR")

        assert old.creates() == []
        jobs = await jobs_of(clean_db, user_id)
        assert jobs[-1]["last_error"].startswith("NO_HOST_AVAILABLE")
        assert "provisioner.host.no_public_key" in _logged(caplog)
        # Upgraded (it announces a key): it takes the assistant.
        old.keyless = False
        await eventually(lambda: _host_key(clean_db, "h-old"))
        await publish(
            js, AssistantProvisionRequested(user_id=user_id, reason="recreated")
        )
        await wait_status(clean_db, user_id, "READY")
        assert len(old.creates()) == 1

    async def test_a_new_host_key_is_learned_and_sealed_to(
        self, ready_assistant, js, clean_db, caplog
    ):
        caplog.set_level(logging.INFO)
        host, user_id, _ = await ready_assistant()
        old_key = host.key
        changes = _key_changes("h1")

        # The agent lost its key (a new disk) or an operator rotated it.
        new_key = host.rotate_key()

        async def learned():
            return await _host_key(clean_db, "h1") == new_key.public_key

        await eventually(learned)
        await _change_model(js, user_id)

        async def recreated():
            row = await assistant(clean_db, user_id)
            return row["status"] == "READY" and len(host.creates()) == 2

        await eventually(recreated)
        assert host.refused == []  # opened with the new key, first time
        assert _key_changes("h1") == changes + 1  # HostKeyChanged alerts on it
        [changed] = [
            r
            for r in caplog.records
            if r.getMessage() == "provisioner.host.key_changed"
        ]
        assert changed.levelname == "WARNING"
        assert (changed.fields["previous_key_id"], changed.fields["key_id"]) == (
            old_key.key_id,
            key_id(new_key.public_key),
        )

    async def test_a_create_sealed_to_a_stale_key_is_sealed_again(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1")
        user_id = await make_user()
        await start_provisioner(
            provision_retry_base_seconds=0.5, provision_max_attempts=5
        )
        # The agent restarted with a new key; its heartbeat is not in yet, so
        # the first create is sealed to the key it no longer holds.
        host.rotate_key(announce=False)

        await publish(js, AssistantProvisionRequested(user_id=user_id))

        async def refused():
            return ("create", "SEALED_FOR_ANOTHER_KEY") in host.refused

        await eventually(refused)
        host.announce_key()
        row = await wait_status(clean_db, user_id, "READY")

        assert row["host_id"] == "h1"
        assert host.running() == {container_name(user_id)}

    async def test_no_spec_goes_to_a_host_that_announces_no_key(
        self, ready_assistant, js, clean_db
    ):
        host, user_id, _ = await ready_assistant()
        # An agent older than sealing is back on the assistant's host.
        host.keyless = True

        async def forgotten():
            return await _host_key(clean_db, "h1") is None

        await eventually(forgotten)
        await _change_model(js, user_id)

        async def refused():
            jobs = await jobs_of(clean_db, user_id)
            error = jobs[-1]["last_error"] or ""
            return error.startswith("HOST_KEY_UNKNOWN")

        await eventually(refused)
        assert len(host.creates()) == 1  # the first one, sealed
