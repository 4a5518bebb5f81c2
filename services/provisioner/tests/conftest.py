from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from yourclaw_common.crypto import SecretBox
from yourclaw_common.events import (
    AssistantProvisionRequested,
    ConsumerSpec,
    ContainerSpec,
    HostReply,
    NamedContainer,
    container_name,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, returned_within
from yourclaw_devkit.fake_host import FakeContainer, FakeHost
from yourclaw_provisioner.app import run
from yourclaw_provisioner.settings import ProvisionerSettings

PUBLIC_BASE_URL = "https://api.yourclaw.test"
SHARED_ANTHROPIC = "sk-ant-shared-0000"
SHARED_OPENAI = "sk-openai-shared-0000"


@pytest.fixture
def provisioner_env(service_env) -> dict[str, str]:
    # Short timings so faults resolve in about a second; same code paths.
    return {
        **service_env,
        "SERVICE_NAME": "provisioner",
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "ANTHROPIC_API_KEY": SHARED_ANTHROPIC,
        "OPENAI_API_KEY": SHARED_OPENAI,
        "HOST_HEARTBEAT_TIMEOUT_SECONDS": "2",
        "HOST_EVACUATE_AFTER_SECONDS": "600",
        "HOST_COMMAND_TIMEOUT_SECONDS": "2",
        "HOST_CREATE_TIMEOUT_SECONDS": "5",
        "GATEWAY_HEALTH_TIMEOUT_SECONDS": "1",
        "PROVISION_RETRY_BASE_SECONDS": "0.1",
        "PROVISION_JOB_LEASE_SECONDS": "3",
        "PROVISION_POLL_INTERVAL_SECONDS": "0.2",
        "RECONCILE_INTERVAL_SECONDS": "0.2",
    }


def settings_from(env: dict[str, str], **overrides: Any) -> ProvisionerSettings:
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    values.update(overrides)
    return ProvisionerSettings(_env_file=None, **values)


@pytest_asyncio.fixture(loop_scope="session")
async def start_provisioner(
    provisioner_env, clean_db, nats_client, fake_host
) -> AsyncIterator[Callable[..., Awaitable[asyncio.Event]]]:
    """Start a provisioner replica in-process; returns its stop event.

    Returns once the replica pulls and knows the fake hosts already beating.
    """
    replicas: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> asyncio.Event:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run(settings_from(provisioner_env, **overrides), stop)
        )
        replicas.append((stop, task))
        # Started once its durable consumers exist and it pulls.
        await asyncio.sleep(0.3)
        if task.done():
            task.result()
        beating = [h.host_id for h in fake_host.started if not h.heartbeats_paused]
        await hosts_known(clean_db, *beating)
        return stop

    yield start
    for stop, _ in replicas:
        stop.set()
    await returned_within(*(t for _, t in replicas))


class SleepyFakeHost(FakeHost):
    """The devkit's fake host with the host-agent's refusals of a wake: a
    stopped sleeper whose port another process took meanwhile (PORT_IN_USE),
    no room for one more gateway in memory, awake or frozen (NO_CAPACITY);
    and a sleeper it is told to `stop` stays a sleeper, stopped."""

    async def _dispatch(self, verb: str, data: bytes) -> HostReply:
        named = NamedContainer.model_validate_json(data) if verb == "wake" else None
        container = self.containers.get(named.name) if named else None
        if named is not None and container is not None and container.sleeping:
            refusal = self._wake_refusal(container)
            if refusal is not None:
                self.commands.append((verb, named))
                self.refused.append((verb, refusal.code or ""))
                return refusal
        reply = await super()._dispatch(verb, data)
        if verb == "stop" and reply.ok and reply.container is not None:
            stopped = self.containers[reply.container.name]
            if stopped.sleeping is not None:
                stopped.sleeping = "stopped"
        return reply

    def _wake_refusal(self, container: FakeContainer) -> HostReply | None:
        if container.sleeping == "stopped" and container.spec.port in self.taken_ports:
            return HostReply(
                ok=False,
                code="PORT_IN_USE",
                error=f"port {container.spec.port} is taken",
            )
        in_memory = sum(
            1
            for c in self.containers.values()
            if c is not container and c.state in ("running", "paused")
        )
        if in_memory >= self.capacity:
            return HostReply(ok=False, code="NO_CAPACITY", error="host is full")
        return None


class FakeHosts:
    """Starts fake host-agents (heart-beating) on the test's NATS connection."""

    def __init__(self, nc):
        self._nc = nc
        self.started: list[SleepyFakeHost] = []

    async def __call__(
        self, host_id: str | None = None, **options: Any
    ) -> SleepyFakeHost:
        options.setdefault("heartbeat_interval", 0.2)
        host = SleepyFakeHost(
            self._nc, host_id=host_id or f"h-{uuid.uuid4().hex[:8]}", **options
        )
        self.started.append(host)
        return await host.start()


@pytest_asyncio.fixture(loop_scope="session")
async def fake_host(nats_client) -> AsyncIterator[FakeHosts]:
    hosts = FakeHosts(nats_client)
    yield hosts
    for host in hosts.started:
        await host.stop()


@pytest.fixture
def box(encryption_key) -> SecretBox:
    return SecretBox(encryption_key)


@pytest_asyncio.fixture(loop_scope="session")
async def make_user(clean_db, box) -> Callable[..., Awaitable[uuid.UUID]]:
    """A signed-up user, optionally with their own LLM keys (BYOK)."""

    async def make(**byok: str) -> uuid.UUID:
        user_id = uuid.uuid4()
        await clean_db.execute("INSERT INTO users (id) VALUES ($1)", user_id)
        for provider, key in byok.items():
            await clean_db.execute(
                "INSERT INTO api_keys (user_id, provider, encrypted_key, key_last4) "
                "VALUES ($1, $2, $3, $4)",
                user_id,
                provider.upper(),
                box.encrypt(key, owner=str(user_id)),
                key[-4:],
            )
        return user_id

    return make


async def assistant(pool, user_id):
    return await pool.fetchrow("SELECT * FROM assistants WHERE user_id = $1", user_id)


async def wait_status(pool, user_id, status, *, timeout=10.0):
    async def probe():
        row = await assistant(pool, user_id)
        return row if row is not None and row["status"] == status else None

    return await eventually(
        probe, timeout=timeout, message=f"assistant {user_id} {status}"
    )


async def provision(js, pool, user_id):
    """Ask for the user's assistant and wait until it is READY; its row."""
    await publish(js, AssistantProvisionRequested(user_id=user_id))
    return await wait_status(pool, user_id, "READY")


@pytest_asyncio.fixture(loop_scope="session")
async def ready_assistant(start_provisioner, fake_host, make_user, js, clean_db):
    """A fake host, a user, a provisioner started, the user's assistant READY.

    `ready_assistant(host_id="h1", **provisioner_overrides)` returns
    (the fake host, the user's id, the assistant's row).
    """

    async def make(
        host_id: str = "h1", **overrides: Any
    ) -> tuple[SleepyFakeHost, uuid.UUID, Any]:
        host = await fake_host(host_id)
        user_id = await make_user()
        await start_provisioner(**overrides)
        return host, user_id, await provision(js, clean_db, user_id)

    return make


async def put_to_sleep(host, pool, user_id, mode="stopped"):
    """The host puts the user's idle assistant to sleep; it is SUSPENDED."""
    host.sleep(container_name(user_id), mode)
    return await wait_status(pool, user_id, "SUSPENDED")


@pytest_asyncio.fixture(loop_scope="session")
async def sleeping_assistant(ready_assistant, clean_db):
    """`ready_assistant`, then put to sleep: `sleeping_assistant(mode)` returns
    (the fake host, the user's id, the assistant's row when READY)."""

    async def make(
        mode: str = "stopped", **options: Any
    ) -> tuple[SleepyFakeHost, uuid.UUID, Any]:
        host, user_id, ready = await ready_assistant(**options)
        await put_to_sleep(host, clean_db, user_id, mode)
        return host, user_id, ready

    return make


async def jobs_of(pool, user_id):
    return await pool.fetch(
        "SELECT * FROM provisioning_jobs WHERE user_id = $1 ORDER BY created_at",
        user_id,
    )


async def consumer_idle(js, spec: ConsumerSpec, *, timeout=10.0) -> None:
    """Every message of the consumer's stream was delivered and acked."""

    async def probe():
        info = await js.consumer_info(spec.stream, spec.durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(probe, timeout=timeout, message=f"{spec.durable} idle")


def config_of(spec: ContainerSpec) -> dict[str, Any]:
    return json.loads(spec.files["config/openclaw.json"])


async def hosts_known(pool, *host_ids: str) -> None:
    """The provisioner has recorded a heartbeat of every one of these hosts."""

    async def probe():
        n = await pool.fetchval(
            "SELECT count(*) FROM hosts WHERE id = ANY($1::text[])", list(host_ids)
        )
        return n == len(host_ids)

    await eventually(probe, timeout=30, message=f"hosts {host_ids} recorded")
