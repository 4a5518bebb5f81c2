"""End to end: real events on JetStream → provisioner → a fake host-agent over NATS."""

from __future__ import annotations

import asyncio
import hashlib
import json

import httpx
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import (
    AssistantDeprovisionRequested,
    AssistantFailed,
    AssistantProvisionRequested,
    AssistantReady,
    HostHeartbeat,
    Stream,
    SubscriptionActivated,
    SubscriptionCanceled,
    container_name,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_provisioner.consumers import CONSUMERS
from yourclaw_provisioner.service import HOST_LOST_FLAG

from .conftest import (
    SHARED_OPENAI,
    assistant,
    config_of,
    consumer_idle,
    jobs_of,
    provision,
    settings_from,
    wait_status,
)


async def published(js, subject: str) -> list[bytes]:
    """Every message stored on `subject` in the ASSISTANTS stream."""
    sub = await js.subscribe(subject, stream=Stream.ASSISTANTS, ordered_consumer=True)
    out: list[bytes] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return out
            out.append(msg.data)
    finally:
        await sub.unsubscribe()


@pytest_asyncio.fixture(loop_scope="session")
async def held_create(start_provisioner, fake_host, make_user, js):
    """A provision request whose create host h1 has received and holds:
    (the host, the user's id, the event that lets the create go on)."""
    hold = asyncio.Event()
    host = await fake_host("h1", hold_creates=hold)
    user_id = await make_user()
    await start_provisioner()
    await publish(js, AssistantProvisionRequested(user_id=user_id))
    await asyncio.wait_for(host.create_received.wait(), timeout=10)
    return host, user_id, hold


class TestProvision:
    async def test_request_reaches_ready_with_the_rendered_gateway(
        self, start_provisioner, fake_host, make_user, js, clean_db, box
    ):
        host = await fake_host("h1")
        user_id = await make_user(anthropic="sk-ant-users-own-1234")
        await start_provisioner()

        event = AssistantProvisionRequested(user_id=user_id, model="openai/gpt-4o")
        await publish(js, event)
        row = await wait_status(clean_db, user_id, "READY")

        assert row["host_id"] == "h1"
        assert row["port"] == 19100
        assert row["base_url"] == "http://127.0.0.1:19100"
        assert row["container_id"] == container_name(user_id)
        assert row["model"] == "openai/gpt-4o"
        assert row["last_error"] is None
        (spec,) = host.creates()
        assert row["spec_hash"] == spec.spec_hash
        assert host.running() == {container_name(user_id)}

        owner = str(user_id)
        token = box.decrypt(row["gateway_token_encrypted"], owner=owner)
        notify_secret = box.decrypt(row["notify_secret_encrypted"], owner=owner)
        assert len(token) >= 32
        assert notify_secret != token

        config = config_of(spec)
        gateway = config["gateway"]
        assert gateway["auth"] == {"mode": "token", "token": token}
        assert gateway["mode"] == "local"
        assert gateway["http"]["endpoints"]["chatCompletions"]["enabled"] is True
        assert config["agents"]["defaults"]["model"]["primary"] == "openai/gpt-4o"
        hook = config["hooks"]["internal"]["entries"]["bootstrap-extra-files"]
        assert hook == {"enabled": True, "paths": ["yourclaw/AGENTS.md"]}
        # The prompt diet: an allowlist without shell or file-system tools.
        assert "profile" not in config["tools"]
        assert "automations" in config["tools"]["allow"]
        assert {"group:runtime", "group:fs"} <= set(config["tools"]["deny"])
        assert config["tools"]["web"]["search"]["enabled"] is True
        assert config["agents"]["defaults"]["skipBootstrap"] is True
        assert config["agents"]["defaults"]["heartbeat"] == {"every": "0m"}
        assert config["browser"]["enabled"] is False
        playwright = config["mcp"]["servers"]["playwright"]
        assert playwright["command"] == "playwright-mcp"
        proxy_url = "http://127.0.0.1:8790"
        notify = f"{proxy_url}/notify/{row['id']}"
        assert config["cron"] == {
            "webhookToken": notify_secret,
            "webhookSsrfPolicy": {"allowedHostnames": ["127.0.0.1"]},
        }

        # Every provider at the proxy, with this assistant's own credential,
        # whose hash (only) is where the proxy reads it.
        proxy_token = box.decrypt(row["proxy_token_encrypted"], owner=owner)
        providers = config["models"]["providers"]
        assert set(providers) == {"anthropic", "openai", "google"}
        assert providers["anthropic"]["baseUrl"] == f"{proxy_url}/anthropic"
        assert providers["anthropic"]["api"] == "anthropic-messages"
        assert providers["openai"]["baseUrl"] == f"{proxy_url}/openai/v1"
        assert {p["apiKey"] for p in providers.values()} == {proxy_token}
        credential = await clean_db.fetchrow(
            "SELECT * FROM proxy_credentials WHERE assistant_id = $1", row["id"]
        )
        assert credential["user_id"] == user_id
        assert (
            credential["token_sha256"]
            == hashlib.sha256(proxy_token.encode()).hexdigest()
        )
        assert credential["revoked_at"] is None

        instructions = spec.files["workspace/CLAUDE.md"]
        # Every channel a user may write from, not only WhatsApp.
        for channel in ("WhatsApp", "Telegram", "SMS"):
            assert channel in instructions
        assert "command line" in instructions
        assert notify in instructions
        assert token not in instructions
        assert spec.files["workspace/yourclaw/AGENTS.md"] == instructions

        # No provider key anywhere in what the tenant gets: the user's own
        # (BYOK) key stays with the proxy, like the platform's.
        assert spec.env == {}
        rendered = spec.model_dump_json()
        assert "sk-ant-users-own-1234" not in rendered
        assert SHARED_OPENAI not in rendered

        (job,) = await jobs_of(clean_db, user_id)
        assert (job["status"], job["kind"], job["attempts"]) == (
            "COMPLETED",
            "PROVISION",
            1,
        )
        (ready,) = await published(js, "assistant.ready")
        assert AssistantReady.model_validate_json(ready).assistant_id == row["id"]

        # The same event again (a redelivery) changes nothing.
        await publish(js, event, timeout=5)
        await consumer_idle(js, CONSUMERS.PROVISIONER_PROVISION_REQUESTED)
        assert len(await jobs_of(clean_db, user_id)) == 1
        assert len(host.creates()) == 1

    async def test_assistant_is_provisioning_while_the_gateway_boots(
        self, held_create, clean_db
    ):
        _, user_id, hold = held_create
        await wait_status(clean_db, user_id, "PROVISIONING")
        (job,) = await jobs_of(clean_db, user_id)
        assert job["status"] == "RUNNING"
        assert job["locked_by"]
        hold.set()
        await wait_status(clean_db, user_id, "READY")

    async def test_llm_proxy_url_is_where_the_gateway_reaches_models(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1")
        user_id = await make_user()
        proxy = "http://host.docker.internal:8790"
        await start_provisioner(llm_proxy_url=proxy)

        row = await provision(js, clean_db, user_id)

        config = config_of(host.creates()[0])
        # The production config, in dev too: the proxy picks the upstream.
        assert config["agents"]["defaults"]["model"]["primary"] == (
            "anthropic/claude-sonnet-4-5-20250929"
        )
        providers = config["models"]["providers"]
        assert {p["baseUrl"].split("/")[2] for p in providers.values()} == {
            "host.docker.internal:8790"
        }
        assert [m["id"] for m in providers["openai"]["models"]] == [
            "gpt-4o",
            "gpt-4o-mini",
        ]
        assert config["cron"]["webhookSsrfPolicy"] == {
            "allowedHostnames": ["host.docker.internal"]
        }
        assert (
            f"{proxy}/notify/{row['id']}"
            in host.creates()[0].files["workspace/CLAUDE.md"]
        )

    async def test_deprovision_revokes_the_proxy_credential_and_reprovision_rotates_it(
        self, ready_assistant, js, clean_db
    ):
        _, user_id, first = await ready_assistant()
        first_hash = await clean_db.fetchval(
            "SELECT token_sha256 FROM proxy_credentials WHERE user_id = $1", user_id
        )

        await publish(js, AssistantDeprovisionRequested(user_id=user_id))

        async def revoked():
            return await clean_db.fetchval(
                "SELECT revoked_at IS NOT NULL FROM proxy_credentials "
                "WHERE user_id = $1",
                user_id,
            )

        await eventually(revoked)
        await wait_status(clean_db, user_id, "NONE")
        assert (await assistant(clean_db, user_id))["proxy_token_encrypted"] is None

        await publish(
            js, AssistantProvisionRequested(user_id=user_id, reason="recreated")
        )
        second = await wait_status(clean_db, user_id, "READY")
        credential = await clean_db.fetchrow(
            "SELECT * FROM proxy_credentials WHERE user_id = $1", user_id
        )
        assert credential["revoked_at"] is None
        assert credential["token_sha256"] != first_hash
        assert credential["previous_token_sha256"] is None
        assert second["id"] == first["id"]

    async def test_failed_create_is_retried(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1", fail_creates=2)
        user_id = await make_user()
        await start_provisioner()

        await provision(js, clean_db, user_id)

        (job,) = await jobs_of(clean_db, user_id)
        assert (job["status"], job["attempts"]) == ("COMPLETED", 3)
        assert len(host.creates()) == 3

    async def test_port_taken_by_a_stray_process_moves_to_the_next_port(
        self, start_provisioner, fake_host, make_user, provisioner_env, js, clean_db
    ):
        host = await fake_host("h1")
        settings = settings_from(provisioner_env)
        first, stride = settings.host_port_range_start, settings.host_port_stride
        host.taken_ports = {first, first + stride}
        user_id = await make_user()
        await start_provisioner()

        row = await provision(js, clean_db, user_id)

        assert row["port"] == first + 2 * stride
        assert [s.port for s in host.creates()] == [
            first,
            first + stride,
            first + 2 * stride,
        ]
        (job,) = await jobs_of(clean_db, user_id)
        assert (job["status"], job["attempts"]) == ("COMPLETED", 1)

    async def test_three_failures_mark_error_and_clean_up(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1", never_healthy=True)
        user_id = await make_user()
        await start_provisioner()

        await publish(js, AssistantProvisionRequested(user_id=user_id))
        row = await wait_status(clean_db, user_id, "ERROR")

        assert row["last_error"] == (
            "Your assistant did not start correctly. Please try again."
        )
        assert (row["host_id"], row["port"], row["base_url"]) == (None, None, None)
        (job,) = await jobs_of(clean_db, user_id)
        assert (job["status"], job["attempts"]) == ("FAILED", 3)
        assert "GATEWAY_UNHEALTHY" in job["last_error"]
        assert len(host.creates()) == 3
        assert host.running() == set()
        assert [r.name for r in host.removes()] == [container_name(user_id)]
        assert not host.removes()[0].purge_workspace
        (failed,) = await published(js, "assistant.failed")
        event = AssistantFailed.model_validate_json(failed)
        assert event.reason == row["last_error"]

        # Asking again starts over.
        host.never_healthy = False
        await publish(
            js, AssistantProvisionRequested(user_id=user_id, reason="recreated")
        )
        await wait_status(clean_db, user_id, "READY")

    async def test_no_live_host_ends_in_error_with_a_reason(
        self, start_provisioner, make_user, js, clean_db
    ):
        user_id = await make_user()
        await start_provisioner()

        await publish(js, AssistantProvisionRequested(user_id=user_id))
        row = await wait_status(clean_db, user_id, "ERROR")
        # Nothing heart-beats: unreachable, which is not full.
        assert "cannot reach our servers" in row["last_error"]
        assert "full" not in row["last_error"]
        (job,) = await jobs_of(clean_db, user_id)
        assert job["last_error"].startswith("NO_LIVE_HOST")

    async def test_model_change_recreates_and_keeps_the_workspace(
        self, ready_assistant, js, clean_db
    ):
        host, user_id, first = await ready_assistant()
        host.workspaces[user_id]["workspace/USER.md"] = "Name: Ada"

        await publish(
            js,
            AssistantProvisionRequested(
                user_id=user_id,
                reason="model_changed",
                model="anthropic/claude-opus-4-5-20251101",
            ),
        )

        async def recreated():
            row = await assistant(clean_db, user_id)
            return row["status"] == "READY" and len(host.creates()) == 2

        await eventually(recreated)
        second = await assistant(clean_db, user_id)
        old, new = host.creates()
        assert config_of(new)["agents"]["defaults"]["model"]["primary"] == (
            "anthropic/claude-opus-4-5-20251101"
        )
        assert new.spec_hash != old.spec_hash
        assert second["spec_hash"] == new.spec_hash
        assert (second["host_id"], second["port"]) == (first["host_id"], first["port"])
        # The same token: messaging's stored one keeps working.
        assert config_of(new)["gateway"]["auth"] == config_of(old)["gateway"]["auth"]
        assert host.removes() == []
        assert host.workspaces[user_id]["workspace/USER.md"] == "Name: Ada"

    async def test_deprovision_removes_the_container_and_keeps_the_workspace(
        self, ready_assistant, js, clean_db
    ):
        host, user_id, _ = await ready_assistant()

        await publish(js, AssistantDeprovisionRequested(user_id=user_id))

        async def removed():
            row = await assistant(clean_db, user_id)
            jobs = await jobs_of(clean_db, user_id)
            return row["status"] == "NONE" and jobs[-1]["status"] == "COMPLETED"

        await eventually(removed)
        row = await assistant(clean_db, user_id)
        assert (row["host_id"], row["port"], row["base_url"]) == (None, None, None)
        (removal,) = host.removes()
        assert removal.name == container_name(user_id)
        assert removal.purge_workspace is False
        assert host.running() == set()
        assert [j["kind"] for j in await jobs_of(clean_db, user_id)] == [
            "PROVISION",
            "DEPROVISION",
        ]

    async def test_subscription_events_provision_and_deprovision(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1")
        user_id = await make_user()
        await start_provisioner()

        await publish(js, SubscriptionActivated(user_id=user_id))
        await wait_status(clean_db, user_id, "READY")
        # Activated again (a payment retry succeeded): nothing to do.
        await publish(js, SubscriptionActivated(user_id=user_id))
        await consumer_idle(js, CONSUMERS.PROVISIONER_SUBSCRIPTION_ACTIVATED)
        assert len(await jobs_of(clean_db, user_id)) == 1

        await publish(js, SubscriptionCanceled(user_id=user_id))

        async def gone():
            row = await assistant(clean_db, user_id)
            return row["status"] == "NONE" and host.running() == set()

        await eventually(gone)
        assert [r.name for r in host.removes()] == [container_name(user_id)]

    async def test_request_during_a_running_job_is_applied_after_it(
        self, held_create, js, clean_db
    ):
        host, user_id, hold = held_create
        await publish(js, AssistantDeprovisionRequested(user_id=user_id))
        await consumer_idle(js, CONSUMERS.PROVISIONER_DEPROVISION_REQUESTED)
        hold.set()

        async def settled():
            jobs = await jobs_of(clean_db, user_id)
            return [j["status"] for j in jobs] == ["COMPLETED", "COMPLETED"]

        await eventually(settled)
        row = await assistant(clean_db, user_id)
        assert row["status"] == "NONE"
        assert host.running() == set()
        assert await published(js, "assistant.ready") == []


class TestHeartbeats:
    async def test_heartbeat_records_the_host(
        self, start_provisioner, fake_host, clean_db
    ):
        await start_provisioner()
        await fake_host("h-beat", capacity=7)

        async def recorded():
            return await clean_db.fetchrow("SELECT * FROM hosts WHERE id = 'h-beat'")

        row = await eventually(recorded)
        assert (row["status"], row["capacity"], row["used"], row["runtime"]) == (
            "ACTIVE",
            7,
            0,
            "process",
        )
        assert row["last_heartbeat_at"] is not None

    async def test_an_oom_kill_a_host_reports_becomes_one_restarted_event(
        self, ready_assistant, js
    ):
        host, user_id, _ = await ready_assistant()

        host.oom_kills[container_name(user_id)] = 1_780_000_000
        await asyncio.sleep(2)  # several heartbeats carry the same kill

        async def told():
            return await published(js, "assistant.restarted") or None

        (data,) = await eventually(told)
        event = json.loads(data)
        assert (event["user_id"], event["killed_at"]) == (str(user_id), 1_780_000_000)
        # A second kill later is news again.
        host.oom_kills[container_name(user_id)] = 1_780_000_900

        async def twice():
            found = await published(js, "assistant.restarted")
            return found if len(found) == 2 else None

        await eventually(twice)
        await asyncio.sleep(1)
        assert len(await published(js, "assistant.restarted")) == 2

    async def test_a_heartbeat_on_another_hosts_subject_is_ignored(
        self, start_provisioner, fake_host, nats_client, clean_db
    ):
        await start_provisioner()
        await fake_host("h-real")

        async def recorded():
            return await clean_db.fetchrow("SELECT * FROM hosts WHERE id = 'h-real'")

        await eventually(recorded)
        # Host h-real's user may publish heartbeat.h-real only: a beat there
        # claiming to be h-forged (or one naming h-real elsewhere) is forged.
        forged = HostHeartbeat(
            host_id="h-forged",
            address="127.0.0.1",
            runtime="process",
            capacity=50,
            used=0,
        )
        await nats_client.publish("heartbeat.h-real", forged.model_dump_json().encode())
        await nats_client.flush()
        await asyncio.sleep(1)

        hosts = await clean_db.fetch("SELECT id FROM hosts")
        assert [h["id"] for h in hosts] == ["h-real"]

    async def test_silent_host_goes_offline_and_flags_then_recovers(
        self, ready_assistant, clean_db
    ):
        host, user_id, _ = await ready_assistant()

        host.heartbeats_paused = True

        async def flagged():
            row = await assistant(clean_db, user_id)
            status = await clean_db.fetchval("SELECT status FROM hosts WHERE id = 'h1'")
            return status == "OFFLINE" and row["last_error"] == HOST_LOST_FLAG

        await eventually(flagged)
        # Flagged, not moved: the workspace lives on that host.
        assert (await assistant(clean_db, user_id))["status"] == "READY"

        host.heartbeats_paused = False

        async def back():
            row = await assistant(clean_db, user_id)
            status = await clean_db.fetchval("SELECT status FROM hosts WHERE id = 'h1'")
            return status == "ACTIVE" and row["last_error"] is None

        await eventually(back)
        assert len(host.creates()) == 1

    async def test_host_coming_up_starts_jobs_waiting_for_room(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        user_id = await make_user()
        # Without a host the job backs off for a minute...
        await start_provisioner(provision_retry_base_seconds=60)
        await publish(js, AssistantProvisionRequested(user_id=user_id))

        async def waiting():
            jobs = await jobs_of(clean_db, user_id)
            return jobs and (jobs[0]["last_error"] or "").startswith("NO_LIVE_HOST")

        await eventually(waiting)
        # ...but a host that appears takes it at once.
        await fake_host("h-new")
        await wait_status(clean_db, user_id, "READY")
        (job,) = await jobs_of(clean_db, user_id)
        assert job["attempts"] == 2


class TestOps:
    async def test_metrics_and_probes(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        await fake_host("h-metrics", capacity=5)
        port = free_port()
        await start_provisioner(metrics_port=port)
        user_id = await make_user()
        await provision(js, clean_db, user_id)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"postgres": True, "nats": True}

            async def scraped():
                text = (await http.get("/metrics")).text
                return (
                    'yourclaw_provisioner_host_capacity{host="h-metrics"} 5.0' in text
                    and text
                )

            text = await eventually(scraped)
        assert (
            'yourclaw_provisioner_jobs_total{kind="PROVISION",outcome="completed"}'
            in text
        )
        assert "yourclaw_provisioner_request_to_ready_seconds_count" in text
        assert 'yourclaw_provisioner_assistants{status="READY"}' in text
        assert "yourclaw_provisioner_heartbeats_total" in text
        assert 'yourclaw_provisioner_host_up{host="h-metrics"} 1.0' in text
        assert 'yourclaw_provisioner_hosts{status="OFFLINE"} ' in text
        # The runner's lag gauge, one per durable the provisioner consumes.
        assert (
            "yourclaw_provisioner_consumer_pending_messages"
            '{consumer="provisioner-provision-requested"} 0.0' in text
        )
