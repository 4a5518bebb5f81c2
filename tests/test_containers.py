"""Tenancy on the real Docker Engine: a tenant's OpenClaw in its hardened
container, probed from outside (`docker inspect`, `iptables -S`) and from
inside, as an attacker holding the tenant's shell would.

Packets go only to this machine: the tenant bridge's host side, the docker
bridge's gateway, containers these tests start, and loopback. The metadata
and private ranges are proven closed by reading the firewall rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from yourclaw_common.events import (
    AssistantProvisionRequested,
    ContainerSpec,
    CreateContainer,
    HostHeartbeat,
    HostReply,
    HostVerb,
    host_command,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import (
    assistant_with_proxy_credential,
    eventually,
    subscribed_user,
)
from yourclaw_devkit.devsim import DevsimSettings, running_devsim
from yourclaw_host_agent.app import run as run_host_agent
from yourclaw_host_agent.install_openclaw import OPENCLAW_VERSION
from yourclaw_host_agent.runtimes.docker import DockerRuntime
from yourclaw_host_agent.settings import HostAgentSettings
from yourclaw_llm_proxy.app import run as run_llm_proxy
from yourclaw_llm_proxy.settings import LlmProxySettings
from yourclaw_provisioner.app import run as run_provisioner
from yourclaw_provisioner.render import CONFIG_FILE, GatewaySecrets, build_spec
from yourclaw_provisioner.settings import ProvisionerSettings

# One worker runs them all: they share one tenant container (a gateway boot).
pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.xdist_group("tenant-container"),
]

SOCKET = "/var/run/docker.sock"
IMAGE = os.environ.get("OPENCLAW_IMAGE", f"yourclaw-openclaw:{OPENCLAW_VERSION}")
BOOT_TIMEOUT = 180.0


def _engine_answers() -> bool:
    try:
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=SOCKET), base_url="http://docker"
        ) as client:
            return client.get("/_ping", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def inspect(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(docker("inspect", name))[0]
    return data


def bridge_gateway() -> str:
    """The host side of Docker's default bridge (`host-gateway`)."""
    ipam = json.loads(docker("network", "inspect", "bridge"))[0]["IPAM"]["Config"]
    return str(ipam[0].get("Gateway") or "172.17.0.1")


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def engine() -> None:
    if not _engine_answers():
        pytest.skip(f"no Docker Engine answers on {SOCKET} (run `make engine`)")
    if not docker("images", "-q", IMAGE):
        pytest.fail(f"the tenant image {IMAGE} is missing: run `make images`")


@dataclass
class Tenant:
    name: str
    spec: ContainerSpec
    token: str

    def exec(self, script: str, *, user: str = "1000:1000") -> tuple[int, str]:
        proc = subprocess.run(
            ["docker", "exec", "-u", user, self.name, "bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def can_connect(self, host: str, port: int) -> bool:
        code, _ = self.exec(f"timeout 3 bash -c 'echo > /dev/tcp/{host}/{port}'")
        return code == 0


@dataclass
class Cell:
    """One real host-agent (docker runtime) with a running tenant."""

    host_id: str
    nc: Any
    bridge: str
    network: str
    llm_port: int
    gateway_ip: str
    tenant: Tenant
    data_dir: Path
    settings: HostAgentSettings
    # The LLM stand-in behind the proxy, and the database the proxy meters into.
    devsim_port: int = 0
    pool: Any = None
    agent: asyncio.Task[None] | None = None
    stop: asyncio.Event | None = None

    def start_agent(self) -> None:
        self.stop = asyncio.Event()
        self.agent = asyncio.create_task(run_host_agent(self.settings, self.stop))

    async def stop_agent(self) -> None:
        if self.agent is not None and self.stop is not None:
            self.stop.set()
            await asyncio.wait_for(self.agent, 60)
            self.agent = None

    async def request(self, verb: HostVerb, payload: dict[str, Any]) -> HostReply:
        msg = await self.nc.request(
            host_command(self.host_id, verb), json.dumps(payload).encode(), timeout=60
        )
        return HostReply.model_validate_json(msg.data)


class _Listener:
    """A TCP service on all of the host's addresses, like a careless deploy."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


def agent_settings(
    nats_url: str,
    host_id: str,
    data_dir: Path,
    *,
    network: str,
    bridge: str,
    llm_port: int,
    **more: Any,
) -> HostAgentSettings:
    """A docker host-agent on its own bridge; tenants may reach `llm_port` only."""
    return HostAgentSettings(
        _env_file=None,  # type: ignore[call-arg]
        nats_url=nats_url,
        service_name="host-agent",
        host_id=host_id,
        host_runtime="docker",
        host_data_dir=data_dir,
        tenant_network=network,
        tenant_bridge=bridge,
        tenant_host_ports=[llm_port],
        **more,
    )


@pytest.fixture(scope="module")
def open_service() -> Iterator[_Listener]:
    listener = _Listener()
    yield listener
    listener.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cell(
    engine, nats_url, database_url, encryption_key, db_pool, tmp_path_factory
) -> AsyncIterator[Cell]:
    suffix = uuid.uuid4().hex[:6]
    bridge, network = f"yct{suffix}", f"yourclaw-test-{suffix}"
    gateway_ip = bridge_gateway()
    # The one host port a tenant may reach: the LLM proxy's. The stand-in
    # behind it listens on another port, closed to tenants.
    llm_port = free_port(gateway_ip)
    devsim_port = free_port(gateway_ip)
    data_dir = tmp_path_factory.mktemp("docker-host").resolve()
    host_id = f"dk{suffix}"
    # The warm pool's port grid: below the ephemeral range the tenant's own
    # port comes from, so the first tenant is a cold container.
    grid_start = 10_000 + uuid.uuid4().int % 5_000
    settings = agent_settings(
        nats_url,
        host_id,
        data_dir,
        network=network,
        bridge=bridge,
        llm_port=llm_port,
        host_capacity=3,
        host_heartbeat_seconds=1,
        warm_pool_size=1,
        openclaw_image=IMAGE,
        host_port_range_start=grid_start,
        host_port_range_end=grid_start + 200,
        host_port_stride=1,
    )
    devsim_settings = DevsimSettings(
        devsim_llm_api_key=None, devsim_llm_delay_seconds=0, _env_file=None
    )
    names: list[str] = []
    nats_client = await nats.connect(nats_url)
    user_id, assistant_id, proxy_token = await assistant_with_proxy_credential(db_pool)
    proxy_stop = asyncio.Event()
    async with running_devsim(devsim_settings, host=gateway_ip, port=devsim_port):
        proxy = asyncio.create_task(
            run_llm_proxy(
                LlmProxySettings(
                    _env_file=None,  # type: ignore[call-arg]
                    nats_url=nats_url,
                    database_url=database_url,
                    encryption_key=encryption_key,
                    llm_proxy_host=gateway_ip,
                    llm_proxy_port=llm_port,
                    dev_llm_base_url=f"http://{gateway_ip}:{devsim_port}",
                ),
                proxy_stop,
            )
        )
        token = uuid.uuid4().hex
        spec = build_spec(
            user_id=user_id,
            assistant_id=assistant_id,
            port=free_port("127.0.0.1"),
            model="openai/gpt-4o",
            secrets=GatewaySecrets(
                gateway_token=token, notify_secret="n" * 32, proxy_token=proxy_token
            ),
            llm_proxy_url=f"http://host.docker.internal:{llm_port}",
            image=IMAGE,
        )
        names.append(spec.name)
        this = Cell(
            host_id=host_id,
            nc=nats_client,
            bridge=bridge,
            network=network,
            llm_port=llm_port,
            gateway_ip=gateway_ip,
            tenant=Tenant(spec.name, spec, token),
            data_dir=data_dir,
            settings=settings,
            devsim_port=devsim_port,
            pool=db_pool,
        )
        this.start_agent()
        try:
            created = await eventually(
                lambda: _try_create(nats_client, host_id, spec), timeout=60
            )
            assert created.ok, created
            await _wait_ready(spec.port)
            yield this
        finally:
            await this.stop_agent()
            # Its tenants, and the spares it keeps for the next agent.
            ours = docker(
                "ps", "-aq", "--filter", f"label=yourclaw.data_dir={data_dir}"
            )
            for name in [*names, *ours.split()]:
                docker("rm", "-f", name, check=False)
            await _drop_firewall(bridge)
            docker("network", "rm", network, check=False)
            await nats_client.close()
            proxy_stop.set()
            await asyncio.gather(proxy, return_exceptions=True)


async def _try_create(nc: Any, host_id: str, spec: ContainerSpec) -> HostReply | None:
    try:
        msg = await nc.request(
            host_command(host_id, HostVerb.CREATE),
            CreateContainer(spec=spec).model_dump_json().encode(),
            timeout=120,
        )
    except Exception:  # no responder yet: the agent is still starting
        return None
    return HostReply.model_validate_json(msg.data)


async def _wait_ready(port: int) -> None:
    async with httpx.AsyncClient(timeout=3) as client:

        async def ready() -> bool:
            try:
                return (
                    await client.get(f"http://127.0.0.1:{port}/readyz")
                ).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout=BOOT_TIMEOUT, interval=0.5)


async def _drop_firewall(bridge: str) -> None:
    from yourclaw_host_agent.firewall import Firewall, TenantFirewallPlan

    await Firewall(TenantFirewallPlan(bridge=bridge)).remove()


class TestHardening:
    def test_the_profile_reads_back_from_the_engine(self, cell):
        data = inspect(cell.tenant.name)
        host, config = data["HostConfig"], data["Config"]

        assert host["CapDrop"] == ["ALL"]
        assert not host.get("CapAdd")
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["Privileged"] is False
        assert host["ReadonlyRootfs"] is True
        assert host["Memory"] == cell.tenant.spec.memory_mb * 1024 * 1024
        assert host["MemorySwap"] == host["Memory"]
        assert host["NanoCpus"] == int(cell.tenant.spec.cpus * 1e9)
        assert host["PidsLimit"] == cell.tenant.spec.pids_limit
        assert config["User"] == "1000:1000"
        assert config["Labels"]["yourclaw.managed"] == "true"
        assert config["Labels"]["yourclaw.user_id"] == str(cell.tenant.spec.user_id)
        bindings = host["PortBindings"]["18789/tcp"]
        assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
        assert list(data["NetworkSettings"]["Networks"]) == [cell.network]
        mounts = {m["Destination"]: m["Source"] for m in data["Mounts"]}
        assert set(mounts) == {"/home/node/.openclaw", "/home/node/.openclaw/workspace"}
        assert all(str(cell.data_dir.resolve()) in src for src in mounts.values())
        assert "docker.sock" not in json.dumps(data)

    def test_inside_it_is_an_unprivileged_user_under_tini(self, cell):
        assert cell.tenant.exec("id -u")[1] == "1000"
        code, pid1 = cell.tenant.exec("tr '\\0' ' ' < /proc/1/cmdline")
        assert code == 0
        assert "tini" in pid1.split()[0]
        # The root filesystem is read-only; only the workspace and /tmp take writes.
        assert cell.tenant.exec("touch /usr/evil")[0] != 0
        assert (
            cell.tenant.exec("touch /tmp/ok && touch ~/.openclaw/workspace/ok")[0] == 0
        )
        # No way to the engine from inside.
        assert cell.tenant.exec("test -e /var/run/docker.sock")[0] != 0
        assert cell.tenant.exec("command -v docker")[0] != 0

    def test_no_provider_key_or_platform_secret_inside(self, cell):
        env = "\n".join(inspect(cell.tenant.name)["Config"]["Env"])
        code, inner = cell.tenant.exec("cat /proc/1/environ | tr '\\0' '\\n'; env")
        assert code == 0
        for text in (env, inner):
            for marker in ("API_KEY", "DATABASE_URL", "NATS_URL", "STRIPE", "TWILIO"):
                assert marker not in text


class TestNetwork:
    def test_the_allowed_port_is_reachable_and_nothing_else_on_the_host(
        self, cell, open_service, nats_url
    ):
        tenant = cell.tenant
        # The one host port tenants may use: the LLM proxy's; not the
        # provider (here the stand-in) behind it.
        assert tenant.can_connect(cell.gateway_ip, cell.llm_port)
        assert not tenant.can_connect(cell.gateway_ip, cell.devsim_port)
        # A service listening on every host address is still out of reach.
        assert not tenant.can_connect(cell.gateway_ip, open_service.port)
        tenant_gw = json.loads(docker("network", "inspect", cell.network))[0]["IPAM"][
            "Config"
        ][0]["Gateway"]
        assert not tenant.can_connect(tenant_gw, open_service.port)
        # NATS, and the Docker API's TCP ports, through the host's side.
        nats_port = int(nats_url.rsplit(":", 1)[1])
        for port in (nats_port, 5432, 2375, 2376):
            assert not tenant.can_connect(cell.gateway_ip, port)
        # Loopback inside the container is its own.
        assert not tenant.can_connect("127.0.0.1", nats_port)

    def test_another_tenant_is_unreachable(self, cell):
        other = f"yourclaw-probe-{uuid.uuid4().hex[:8]}"
        docker(
            "run", "-d", "--rm", "--name", other, "--network", cell.network,
            "--user", "1000:1000", "--entrypoint", "node", IMAGE, "-e",
            "require('net').createServer(s=>s.end('hi')).listen(18789)",
        )  # fmt: skip
        try:
            ip = inspect(other)["NetworkSettings"]["Networks"][cell.network][
                "IPAddress"
            ]

            def host_reaches() -> bool:
                with contextlib.suppress(OSError):
                    socket.create_connection((ip, 18789), timeout=2).close()
                    return True
                return False

            # The host reaches it (so the probe below is meaningful) ...
            for _ in range(50):
                if host_reaches():
                    break
                subprocess.run(["sleep", "0.1"], check=False)
            assert host_reaches()
            # ... but a tenant does not.
            assert not cell.tenant.can_connect(ip, 18789)
        finally:
            docker("rm", "-f", other, check=False)

    def test_the_firewall_drops_metadata_and_private_ranges(self, cell):
        fwd = subprocess.run(
            ["iptables", "-S", f"YC-FWD-{cell.bridge}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for net in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
            [rule] = [r for r in fwd.splitlines() if f"-d {net} " in r]
            assert rule.endswith("-j DROP")
        assert fwd.strip().splitlines()[-1].endswith("-j RETURN")
        inp = subprocess.run(
            ["iptables", "-S", f"YC-IN-{cell.bridge}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"--dport {cell.llm_port}" in inp
        assert inp.strip().splitlines()[-1].endswith("-j DROP")
        jumps = subprocess.run(
            ["iptables", "-S"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"-A DOCKER-USER -i {cell.bridge} -j YC-FWD-{cell.bridge}" in jumps
        assert f"-A INPUT -i {cell.bridge} -j YC-IN-{cell.bridge}" in jumps


class TestGateway:
    async def test_a_chat_turn_through_the_container(self, cell):
        await _chat_turn(cell, cell.tenant.spec, cell.tenant.token)

    async def test_the_agent_adopts_it_after_a_restart(self, cell):
        before = inspect(cell.tenant.name)["Id"]

        await cell.stop_agent()
        # The gateway outlives its agent ...
        assert inspect(cell.tenant.name)["State"]["Running"] is True
        cell.start_agent()
        listed = await eventually(
            lambda: _try_list(cell), timeout=60, message="the new agent answers"
        )

        # ... and the new agent adopts the same container, not a new one.
        assert [(c.name, c.state) for c in listed.containers] == [
            (cell.tenant.name, "running")
        ]
        assert inspect(cell.tenant.name)["Id"] == before

    async def test_after_docker_rm_f_it_comes_back_with_its_workspace(self, cell):
        workspace = cell.data_dir / str(cell.tenant.spec.user_id) / "workspace"
        (workspace / "KEEP.md").write_text("still here")

        # Killed from outside: no clean shutdown, its lock files stay behind.
        docker("rm", "-f", cell.tenant.name)
        # What the provisioner's reconcile sends when the heartbeat lacks it.
        created = await _try_create(cell.nc, cell.host_id, cell.tenant.spec)

        assert created is not None
        assert created.ok, created
        await _wait_ready(cell.tenant.spec.port)
        assert inspect(cell.tenant.name)["State"]["Running"] is True
        assert (workspace / "KEEP.md").read_text() == "still here"

        async def healthy() -> bool:  # as the next tests expect it
            return inspect(cell.tenant.name)["State"]["Health"]["Status"] == "healthy"

        await eventually(healthy, timeout=BOOT_TIMEOUT, interval=1)


async def _chat_turn(cell: Cell, spec: ContainerSpec, token: str) -> None:
    """One real turn: the gateway answers, through the LLM proxy, which
    metered the model call for this user."""
    async with httpx.AsyncClient(timeout=120) as client:
        resp = await client.post(
            f"http://127.0.0.1:{spec.port}/v1/chat/completions",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "model": "openclaw/default",
                "user": "containers-test",
                "messages": [{"role": "user", "content": "hello from a container"}],
            },
        )
    assert resp.status_code == 200, resp.text
    answer = resp.json()["choices"][0]["message"]["content"]
    assert "hello from a container" in answer

    async def metered() -> bool:  # recorded once the call is done
        calls = await cell.pool.fetchval(
            "SELECT count(*) FROM llm_calls WHERE user_id = $1", spec.user_id
        )
        return bool(calls)

    await eventually(metered, timeout=30, interval=0.2)


async def _ready_spare(cell: Cell) -> tuple[str, int] | None:
    """A warm spare of the cell's agent, booted from a config the agent has
    seen, whose gateway admits traffic."""
    listed = docker(
        "ps", "--filter", "label=yourclaw.pool-slot",
        "--filter", f"label=yourclaw.data_dir={cell.data_dir}",
        "--format",
        '{{.Names}} {{.Label "yourclaw.port"}} {{.Label "yourclaw.pool-template"}}',
    )  # fmt: skip
    async with httpx.AsyncClient(timeout=3) as client:
        for line in listed.splitlines():
            name, port, template = line.split()
            if not name.startswith("yourclaw-pool-"):
                continue  # claimed: a user's now
            if template == "none":
                continue  # booted before the first create: about to be replaced
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).is_success:
                    return name, int(port)
    return None


def _credentials(config: dict[str, Any]) -> set[str]:
    """The secrets a rendered config holds: the gateway token, the LLM proxy
    credential (one per provider) and the automations' notify secret."""
    providers = config["models"]["providers"].values()
    return {
        config["gateway"]["auth"]["token"],
        config["cron"]["webhookToken"],
        *(p["apiKey"] for p in providers),
    }


def _without_credentials(config: dict[str, Any]) -> dict[str, Any]:
    blank = json.loads(json.dumps(config))
    blank["gateway"]["auth"]["token"] = ""
    blank["cron"]["webhookToken"] = ""
    for provider in blank["models"]["providers"].values():
        provider["apiKey"] = ""
    return dict(blank)


# What must be the same in a claimed spare and a cold tenant container.
_PROFILE = (
    "CapDrop", "CapAdd", "SecurityOpt", "Privileged", "ReadonlyRootfs", "Tmpfs",
    "Memory", "MemorySwap", "NanoCpus", "PidsLimit", "NetworkMode", "ExtraHosts",
    "RestartPolicy", "Init", "LogConfig",
)  # fmt: skip


class TestWarmPool:
    """A new user's container is a spare, hardened and booted before they paid."""

    async def test_a_claimed_spare_serves_is_adopted_and_the_pool_refills(self, cell):
        spare, port = await eventually(
            lambda: _ready_spare(cell), timeout=BOOT_TIMEOUT, interval=1
        )
        spare_id = inspect(spare)["Id"]
        # Nothing of anyone's in a spare: the config the agent last created
        # (the cell's tenant's), each credential in it one nobody knows, and an
        # empty workspace.
        config = inspect(spare)["Mounts"]
        sources = {m["Destination"]: Path(m["Source"]) for m in config}
        state = sources["/home/node/.openclaw"]
        booted_with = (state / "openclaw.json").read_text()
        tenant_config = json.loads(cell.tenant.spec.files[CONFIG_FILE])
        for secret in _credentials(tenant_config):
            assert secret not in booted_with
        assert _credentials(json.loads(booted_with)).isdisjoint(
            _credentials(tenant_config)
        )
        assert _without_credentials(json.loads(booted_with)) == _without_credentials(
            tenant_config
        )
        assert not any(sources["/home/node/.openclaw/workspace"].iterdir())
        user_id, assistant_id, proxy_token = await assistant_with_proxy_credential(
            cell.pool
        )
        token = uuid.uuid4().hex
        spec = build_spec(
            user_id=user_id,
            assistant_id=assistant_id,
            port=port,  # where the provisioner places the next user
            model="openai/gpt-4o",
            secrets=GatewaySecrets(
                gateway_token=token, notify_secret="n" * 32, proxy_token=proxy_token
            ),
            llm_proxy_url=f"http://host.docker.internal:{cell.llm_port}",
            image=IMAGE,
        )

        created = await _try_create(cell.nc, cell.host_id, spec)

        assert created is not None
        assert created.ok, created
        # The spare itself, renamed to the user's name: no cold boot ...
        claimed = inspect(spec.name)
        assert claimed["Id"] == spare_id
        assert claimed["Config"]["Labels"]["yourclaw.pool-slot"]
        user_dir = cell.data_dir / str(user_id)
        assert user_dir.is_symlink()
        assert user_dir.resolve().parent == cell.data_dir / ".slots"
        assert {m["Source"] for m in config} == {m["Source"] for m in claimed["Mounts"]}
        # ... hardened exactly like a cold tenant container ...
        cold = inspect(cell.tenant.name)
        for key in _PROFILE:
            assert claimed["HostConfig"][key] == cold["HostConfig"][key], key
        for key in ("User", "Env", "Image", "Healthcheck", "Hostname"):
            assert claimed["Config"][key] == cold["Config"][key], key
        [binding] = claimed["HostConfig"]["PortBindings"]["18789/tcp"]
        assert binding == {"HostIp": "127.0.0.1", "HostPort": str(port)}
        # ... serving this user's config (their token, their proxy credential),
        # the very files a cold container of theirs would have.
        await _chat_turn(cell, spec, token)
        for rel, content in spec.files.items():
            assert (user_dir / rel).read_text() == content, rel

        # Nobody else gets it: its port is this user's now.
        other, _, _ = await assistant_with_proxy_credential(cell.pool)
        second = await _try_create(
            cell.nc,
            cell.host_id,
            spec.model_copy(
                update={"user_id": other, "name": f"yourclaw-{other}", "files": {}}
            ),
        )
        assert second is not None
        assert second.code == "PORT_IN_USE", second
        assert inspect(spec.name)["Id"] == spare_id

        # A restarted agent adopts it, and knows which spec it runs.
        await cell.stop_agent()
        cell.start_agent()
        listed = await eventually(lambda: _try_list(cell), timeout=60)
        assert (spec.name, "running") in [(c.name, c.state) for c in listed.containers]
        again = await _try_create(cell.nc, cell.host_id, spec)
        assert again is not None
        assert again.ok, again
        assert inspect(spec.name)["Id"] == spare_id

        # The pool refills in the background, on another port.
        async def refilled() -> tuple[str, int] | None:
            found = await _ready_spare(cell)
            return found if found and found[1] != port else None

        await eventually(refilled, timeout=BOOT_TIMEOUT, interval=1)

        # Its next restart re-creates it with the user's own labels, workspace kept.
        (user_dir / "workspace" / "KEEP.md").write_text("kept")
        restarted = await cell.request(HostVerb.RESTART, {"name": spec.name})
        assert restarted.ok, restarted
        labels = inspect(spec.name)["Config"]["Labels"]
        assert labels["yourclaw.user_id"] == str(user_id)
        assert "yourclaw.pool-slot" not in labels
        await _wait_ready(port)
        assert (user_dir / "workspace" / "KEEP.md").read_text() == "kept"
        # Leave the cell with its one tenant (the memory tests restart all).
        removed = await cell.request(
            HostVerb.REMOVE, {"name": spec.name, "purge_workspace": True}
        )
        assert removed.ok, removed
        assert not user_dir.exists()


async def _try_list(cell: Cell) -> HostReply | None:
    try:
        return await cell.request(HostVerb.LIST, {})
    except Exception:  # no responder yet
        return None


class TestMemory:
    """Last in the module: these restart the tenant."""

    async def test_a_gateway_over_its_memory_ceiling_is_restarted_gracefully(
        self, cell
    ):
        before = inspect(cell.tenant.name)["State"]["StartedAt"]
        # A ceiling every gateway is over: 1 % of its limit.
        runtime = DockerRuntime(
            socket_path=SOCKET,
            network=cell.network,
            bridge=cell.bridge,
            rss_ceiling_percent=1,
            restart_grace_seconds=30,
            data_dir=str(cell.data_dir.resolve()),
        )
        try:
            rss, limit = await runtime.memory_of(cell.tenant.name) or (0, 0)
            assert rss > 0
            assert limit == cell.tenant.spec.memory_mb * 1024 * 1024

            await runtime.supervise()
            await asyncio.gather(*runtime._restarting.values())
        finally:
            await runtime.close()

        after = inspect(cell.tenant.name)
        assert after["State"]["StartedAt"] != before
        assert after["State"]["Running"] is True
        # The same container and workspace: it answers again.
        await _wait_ready(cell.tenant.spec.port)

    async def test_an_oom_kill_is_noticed(self, cell):
        runtime = DockerRuntime(
            socket_path=SOCKET,
            rss_ceiling_percent=0,
            data_dir=str(cell.data_dir.resolve()),
        )
        try:
            await runtime.supervise()  # from now on
            # Inside the tenant, as its user: eat memory until the kernel kills.
            cell.tenant.exec(
                "node -e 'const a=[];for(;;)a.push(Buffer.alloc(64*1024*1024,1))'"
            )

            async def noticed() -> bool:
                await runtime.supervise()
                return cell.tenant.name in runtime.oom_kills()

            await eventually(noticed, timeout=60, interval=1)
            # The host's own agent reports it in its heartbeat (the provisioner
            # turns that into the user's one notice).
            beats: list[HostHeartbeat] = []

            async def on_beat(msg) -> None:
                beats.append(HostHeartbeat.model_validate_json(msg.data))

            sub = await cell.nc.subscribe(f"heartbeat.{cell.host_id}", cb=on_beat)
            try:

                async def reported() -> bool:
                    return any(
                        c.name == cell.tenant.name and c.oom_killed_at
                        for beat in beats
                        for c in beat.containers
                    )

                await eventually(reported, timeout=30, interval=0.5)
            finally:
                await sub.unsubscribe()
        finally:
            await runtime.close()
        # The Engine keeps it running (or restarts it).
        await _wait_ready(cell.tenant.spec.port)


class EngineProxy:
    """A unix socket that forwards to the real engine while it is up: an
    engine that stops answering, without touching the shared one."""

    def __init__(self, path: Path):
        self.path = path
        self._server: asyncio.Server | None = None
        self._streams: list[asyncio.StreamWriter] = []

    async def up(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for stream in self._streams:  # pooled connections too
            stream.close()
        self._streams.clear()
        self.path.unlink(missing_ok=True)

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        engine_in, engine_out = await asyncio.open_unix_connection(SOCKET)
        self._streams += [client_out, engine_out]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(client_in, engine_out), pipe(engine_in, client_out))


class TestEngineOutage:
    """Last: it stops the cell's agent, which would be a second host to the
    provisioner it starts."""

    # Up to a minute to fail, then a cold boot (BOOT_TIMEOUT) to heal.
    @pytest.mark.timeout(BOOT_TIMEOUT + 240)
    async def test_an_assistant_failed_by_a_silent_engine_heals_when_it_answers(
        self, cell, clean_db, service_env, tmp_path
    ):
        await cell.stop_agent()
        suffix = uuid.uuid4().hex[:6]
        engine = EngineProxy(tmp_path / "engine.sock")
        host_id, bridge, network = (
            f"eo{suffix}",
            f"yce{suffix}",
            f"yourclaw-eo-{suffix}",
        )
        data_dir = (tmp_path / "host").resolve()
        settings = agent_settings(
            service_env["NATS_URL"],
            host_id,
            data_dir,
            network=network,
            bridge=bridge,
            llm_port=cell.llm_port,
            host_capacity=1,
            host_heartbeat_seconds=0.5,
            docker_host=f"unix://{engine.path}",
        )
        provisioner = ProvisionerSettings(
            _env_file=None,  # type: ignore[call-arg]
            **{k.lower(): v for k, v in service_env.items()},
            service_name="provisioner",
            # The host stays placeable a while after its engine went silent.
            host_heartbeat_timeout_seconds=20,
            host_evacuate_after_seconds=600,
            host_create_timeout_seconds=120,
            gateway_health_timeout_seconds=BOOT_TIMEOUT,
            provision_max_attempts=2,
            provision_retry_base_seconds=0.2,
            provision_poll_interval_seconds=0.2,
            reconcile_interval_seconds=0.5,
            assistant_heal_base_seconds=1,
            openclaw_image=IMAGE,
            llm_proxy_url=f"http://host.docker.internal:{cell.llm_port}",
        )
        stop = asyncio.Event()
        # The engine does not answer when the agent starts.
        agent = asyncio.create_task(run_host_agent(settings, stop))
        tasks = [agent, asyncio.create_task(run_provisioner(provisioner, stop))]
        user_id = await subscribed_user(clean_db, phone="+15557770415")
        name = f"yourclaw-{user_id}"
        try:
            await asyncio.sleep(2)
            assert not await _host_row(clean_db, host_id)  # no heartbeat meanwhile

            # It answers: the agent beats, with its firewall set up first.
            await engine.up()
            await eventually(lambda: _host_row(clean_db, host_id), timeout=30)
            rules = await asyncio.to_thread(
                subprocess.run,
                ["iptables", "-S", f"YC-FWD-{bridge}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert "-d 169.254.0.0/16 " in rules.stdout

            # It stops answering; a subscriber's assistant is asked for.
            await engine.down()
            await publish(
                cell.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
            )

            async def failed() -> str | None:
                row = await _assistant(clean_db, user_id)
                return row["last_error"] if row and row["status"] == "ERROR" else None

            reason = await eventually(failed, timeout=60, interval=0.2)
            assert "try again on our own" in reason  # readable, on the dashboard
            assert "RUNTIME_UNAVAILABLE" not in reason
            assert docker("ps", "-aq", "--filter", f"name={name}") == ""

            # The engine answers again: nobody asks, the assistant heals.
            await engine.up()

            async def ready() -> bool:
                row = await _assistant(clean_db, user_id)
                return bool(row and row["status"] == "READY")

            await eventually(ready, timeout=BOOT_TIMEOUT + 60, interval=0.5)
            labels = inspect(name)["Config"]["Labels"]
            assert labels["yourclaw.user_id"] == str(user_id)
            assert inspect(name)["State"]["Running"] is True
        finally:
            stop.set()
            # Bounded: a service that does not stop within a minute is cut off
            # here (a known shutdown hang, see the issue note) so the cleanup
            # below still runs.
            await asyncio.wait(tasks, timeout=60)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await engine.down()
            docker("rm", "-f", name, check=False)
            await _drop_firewall(bridge)
            docker("network", "rm", network, check=False)


async def _host_row(pool: Any, host_id: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM hosts WHERE id = $1 AND status = 'ACTIVE' "
            "AND last_heartbeat_at > now() - interval '5 seconds'",
            host_id,
        )
    )


async def _assistant(pool: Any, user_id: uuid.UUID) -> Any:
    return await pool.fetchrow(
        "SELECT status, last_error FROM assistants WHERE user_id = $1", user_id
    )
