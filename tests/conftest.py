"""Fixtures of the cross-service tests that run the real OpenClaw gateway."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.events import HostReply, HostVerb, ListContainers, host_command
from yourclaw_common.nats_auth import host_user
from yourclaw_common.testing import eventually
from yourclaw_devkit.defaults import DEV_TWILIO_AUTH_TOKEN
from yourclaw_devkit.pytest_plugin import PUBLIC_BASE_URL, messaging_values, sent_to
from yourclaw_devkit.serving import running_app
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_host_agent.app import run as run_host_agent
from yourclaw_host_agent.install_openclaw import DEFAULT_OPENCLAW_HOME, ensure_openclaw
from yourclaw_host_agent.layout import DataLayout
from yourclaw_host_agent.runtimes.process import ProcessRuntime
from yourclaw_host_agent.settings import HostAgentSettings
from yourclaw_llm_proxy.app import run as run_llm_proxy
from yourclaw_llm_proxy.settings import LlmProxySettings
from yourclaw_messaging.app import run as run_messaging
from yourclaw_messaging.settings import MessagingSettings
from yourclaw_provisioner.app import run as run_provisioner
from yourclaw_provisioner.settings import ProvisionerSettings

REPO = Path(__file__).resolve().parents[1]


@contextlib.asynccontextmanager
async def running_edge(
    service_env: dict[str, str],
    devsim_url: str,
    nats_identity: Callable[[str], dict[str, Any]],
    *,
    gateway: dict[str, Any] | None = None,
    messaging: dict[str, Any] | None = None,
) -> AsyncIterator[str]:
    """gateway-api (its URL yielded) and messaging, sending through the
    stand-ins at `devsim_url`; `gateway`/`messaging`: settings overrides."""
    values = {k.lower(): v for k, v in service_env.items()}
    values.update(
        public_base_url=PUBLIC_BASE_URL, twilio_auth_token=DEV_TWILIO_AUTH_TOKEN
    )
    values.update(gateway or {})
    gateway_settings = GatewaySettings(
        _env_file=None, **values, **nats_identity("gateway-api")
    )
    messaging_settings = MessagingSettings(
        _env_file=None,
        **messaging_values(
            service_env,
            devsim_url,
            **nats_identity("messaging"),
            **(messaging or {}),
        ),
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_messaging(messaging_settings, stop))
    try:
        async with running_app(create_app(gateway_settings)) as api_url:
            yield api_url
    finally:
        stop.set()
        await worker


@pytest.fixture
def edge(
    service_env: dict[str, str],
    devsim_url: str,
    nats_identity: Callable[[str], dict[str, Any]],
) -> Callable[..., contextlib.AbstractAsyncContextManager[str]]:
    """`running_edge` on this test's NATS, PostgreSQL and stand-ins."""
    return functools.partial(running_edge, service_env, devsim_url, nats_identity)


@pytest.fixture(scope="session")
def openclaw_dir() -> Path:
    """The pinned openclaw `make openclaw` installed (installed here if missing)."""
    configured = os.environ.get("OPENCLAW_INSTALL_DIR")
    home = Path(configured) if configured else REPO / DEFAULT_OPENCLAW_HOME
    ensure_openclaw(home)
    return home.resolve()


@pytest_asyncio.fixture(loop_scope="session")
async def gateway_host_dir(tmp_path: Path, openclaw_dir: Path) -> AsyncIterator[Path]:
    """A host-agent's data dir; after the test, every gateway under it is stopped.

    Gateways outlive their host-agent by design, and a provisioner's reconcile
    can re-create one the test removed: sweeping from disk once everything has
    stopped is what keeps a 1.3 GB gateway from outliving the test run.
    """
    data_dir = tmp_path / "host"
    yield data_dir
    runtime = ProcessRuntime(
        DataLayout(data_dir.resolve()),
        openclaw_dir=openclaw_dir,
        install=False,
        stop_timeout=10,
    )
    for info in await runtime.list():
        await runtime.remove(info.name)
    await runtime.close()  # and warm spares


# A gateway's first boot on a busy 2-core machine can take half a minute.
BOOT_TIMEOUT = 180.0


@dataclass
class GatewayStack:
    """host-agent (process runtime, real OpenClaw), provisioner and messaging,
    in-process on real NATS and PostgreSQL, with the stand-ins at `devsim`."""

    host_id: str
    data_dir: Path
    nc: Any
    devsim: httpx.AsyncClient

    async def containers(self) -> dict[str, str]:
        msg = await self.nc.request(
            host_command(self.host_id, HostVerb.LIST),
            ListContainers().model_dump_json().encode(),
            timeout=10,
        )
        reply = HostReply.model_validate_json(msg.data)
        return {c.name: c.state for c in reply.containers}

    async def replies(self, phone: str) -> list[str]:
        return [m["body"] for m in await sent_to(self.devsim, phone)]


@pytest_asyncio.fixture(loop_scope="session")
async def gateway_stack(
    service_env,
    devsim_url,
    devsim,
    clean_db,
    nats_client,
    openclaw_dir,
    gateway_host_dir,
    nats_identity,
) -> AsyncIterator[Callable[..., Awaitable[GatewayStack]]]:
    """Start a `GatewayStack`: `capacity` gateways on the host, provisioner and
    messaging settings overridable by field name. Stopped after the test; its
    gateways are then stopped by `gateway_host_dir`."""
    env = {k.lower(): v for k, v in service_env.items()}
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start(
        *,
        capacity: int = 2,
        # gateway-api, where the proxy passes automation webhooks on.
        public_base_url: str = "http://127.0.0.1:8000",
        provisioner: dict[str, Any] | None = None,
        messaging: dict[str, Any] | None = None,
        llm_proxy: dict[str, Any] | None = None,
        host_agent: dict[str, Any] | None = None,
    ) -> GatewayStack:
        host_id = f"e2e-{uuid.uuid4().hex[:8]}"
        host_agent_settings = HostAgentSettings(
            _env_file=None,
            **env,
            **nats_identity(host_user(host_id)),
            service_name="host-agent",
            host_runtime="process",
            yourclaw_env="dev",
            host_id=host_id,
            host_capacity=capacity,
            host_heartbeat_seconds=1,
            host_data_dir=gateway_host_dir,
            openclaw_install_dir=openclaw_dir,
            **(host_agent or {}),
        )
        # Every model call of the gateways goes through the proxy to the
        # stand-in; their automation webhooks through it to gateway-api.
        proxy_port = free_port()
        llm_proxy_settings = LlmProxySettings(
            _env_file=None,
            **{
                **env,
                **nats_identity("llm-proxy"),
                "service_name": "llm-proxy",
                "llm_proxy_port": proxy_port,
                "dev_llm_base_url": devsim_url,
                "gateway_api_url": public_base_url,
                **(llm_proxy or {}),
            },
        )
        provisioner_settings = ProvisionerSettings(
            _env_file=None,
            **{
                **env,
                **nats_identity("provisioner"),
                "llm_proxy_url": f"http://127.0.0.1:{proxy_port}",
                "gateway_health_timeout_seconds": BOOT_TIMEOUT,
                "provision_poll_interval_seconds": 0.2,
                "reconcile_interval_seconds": 1,
                **(provisioner or {}),
            },
        )
        messaging_settings_ = MessagingSettings(
            _env_file=None,
            **messaging_values(
                service_env,
                devsim_url,
                **nats_identity("messaging"),
                **{"assistant_timeout_seconds": 120, **(messaging or {})},
            ),
        )
        tasks.extend(
            [
                asyncio.create_task(run_llm_proxy(llm_proxy_settings, stop)),
                asyncio.create_task(run_host_agent(host_agent_settings, stop)),
                asyncio.create_task(run_provisioner(provisioner_settings, stop)),
                asyncio.create_task(run_messaging(messaging_settings_, stop)),
            ]
        )
        return GatewayStack(host_id, gateway_host_dir, nats_client, devsim)

    try:
        yield start
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


def gateway_ports() -> dict[str, int]:
    """The provisioner's port range for a test's gateways: from a random
    start, clear of other test runs' gateways on this machine, and five ports
    of its grid (HOST_PORT_STRIDE apart) so that a gateway whose port another
    process takes while it boots is moved to the next (PORT_IN_USE)."""
    stride = ProvisionerSettings.model_fields["host_port_stride"].default
    start = 30000 + random.randrange(0, 9000)
    return {"host_port_range_start": start, "host_port_range_end": start + 4 * stride}


@contextlib.asynccontextmanager
async def stack_with_api(
    service_env: dict[str, str],
    gateway_stack: Callable[..., Awaitable[GatewayStack]],
    *,
    gateway: dict[str, Any] | None = None,
    messaging: dict[str, Any] | None = None,
    host_agent: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[GatewayStack, str]]:
    """A `GatewayStack` for one gateway (on ports clear of other test runs on
    this machine) and gateway-api in-process on loopback, which the rendered
    `cron.webhookSsrfPolicy` lets the gateway's automations post to; yields
    the stack and gateway-api's URL. `gateway`/`messaging`/`host_agent`:
    settings overrides."""
    api_port = free_port()
    public = f"http://127.0.0.1:{api_port}"
    settings = GatewaySettings(
        _env_file=None,
        **{
            **{k.lower(): v for k, v in service_env.items()},
            "public_base_url": public,
            "api_port": api_port,
            **(gateway or {}),
        },
    )
    stack = await gateway_stack(
        capacity=1,
        public_base_url=public,
        provisioner=gateway_ports(),
        messaging=messaging,
        host_agent=host_agent,
    )
    async with running_app(create_app(settings), port=api_port) as url:
        yield stack, url


async def told_ready(stack: GatewayStack, phone: str) -> None:
    """Once the ready notice (a template: the 24-hour window is closed)
    reached `phone`: a user writes after it. Written sooner, the notice
    follows the answer as free-form text, as it would for a real user."""

    async def sent() -> bool:
        return any(r.startswith("[template") for r in await stack.replies(phone))

    await eventually(sent, timeout=60, interval=0.2, message="no ready notice")


async def wait_ready(pool, user_id, *, spec_hash_not: str | None = None):
    """The user's assistant once READY (with another spec than `spec_hash_not`);
    fails with the provisioning jobs when it goes to ERROR or never gets there."""

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
    except AssertionError as exc:
        jobs = await pool.fetch(
            "SELECT kind, status, attempts, last_error FROM provisioning_jobs "
            "WHERE user_id = $1 ORDER BY created_at",
            user_id,
        )
        raise AssertionError(f"{exc}; jobs: {[dict(j) for j in jobs]}") from None
