"""The `docker` runtime: the Docker Engine API over its unix socket (no CLI).

Every tenant container gets the hardened profile of OpenClaw's multi-tenant
"fleet" cells: all capabilities dropped, no-new-privileges, pids/memory/cpu
limits, the non-root `node` user (1000:1000), a read-only root filesystem with
a tmpfs /tmp, its port published on one host IP (loopback by default) and only
the user's config and workspace mounted. The Docker socket is never mounted: it
is root on the host.

All tenants share one bridge network with inter-container traffic off (one
network per tenant would exhaust Docker's address pools after a few dozen
users); the host firewall (`firewall.py`) keeps that bridge from everything but
the internet and the LLM proxy.

Warm pool (`WARM_POOL_SIZE`): the runtime keeps that many spare containers
booted, created by the same `create_payload` as a user's (same flags, network
and firewall), each on the next free port of the provisioner's port grid, with
its own slot folder `<data>/.slots/<slot>/{config,workspace}` mounted and
the config of the agent's last create (`<data>/.slots/template.json`) with
every credential replaced by a random value nobody knows (no user file); so a
claim changes only those values, which OpenClaw hot-applies in about a second.
Before the first create there is no such config: spares boot with the gateway
block alone, and are replaced once one is seen.
A create for a new user on a spare's port claims it: the Engine renames the
container to the user's name (once: the spare's name is gone after, so no
second user can claim it), `<data>/<user_id>` becomes a link to the slot (the
mounts keep their sources, so an Engine restart of the container still finds
them), the spec's files land there and OpenClaw hot-reloads them. Labels are
fixed at create: a claimed container carries `yourclaw.pool-slot` instead of
`yourclaw.user_id`, and the agent's record of the claim
(`<data>/<user_id>/run/claim.json`: the spec without its files) says whose it
is; its next start or restart re-creates it with the user's labels.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import os
import shutil
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from yourclaw_common.events import GATEWAY_CONFIG_PORT, ContainerInfo, ContainerSpec
from yourclaw_common.logging import get_logger

from yourclaw_host_agent.errors import (
    ContainerNotFound,
    InvalidRequest,
    InvalidSpec,
    PortInUse,
    RuntimeFailure,
    RuntimeUnavailable,
)
from yourclaw_host_agent.firewall import (
    EgressAllow,
    Firewall,
    TenantFirewallPlan,
    local_networks,
    resolvers,
)
from yourclaw_host_agent.layout import (
    UserPaths,
    remove_tree,
    user_id_of,
    write_files,
)
from yourclaw_host_agent.metrics import (
    GATEWAY_OOM_KILLS,
    GATEWAY_RSS_RESTARTS,
    WARM_CLAIMS,
    WARM_GATEWAYS,
)
from yourclaw_host_agent.runtimes.warm import (
    CONFIG_FILE,
    admits_traffic,
    port_free,
    spare_config,
    spare_template,
    took_config,
)

__all__ = [
    "CONTAINER_PORT",
    "PROXY_HOSTNAME",
    "TENANT_BRIDGE",
    "TENANT_NETWORK",
    "DockerRuntime",
    "create_payload",
]

log = get_logger(__name__)

CONTAINER_PORT = GATEWAY_CONFIG_PORT
_HOME = "/home/node"
_STATE = f"{_HOME}/.openclaw"
_HOSTNAME = "assistant"
_USER = "1000:1000"
_LABEL = "yourclaw.managed"
_TMPFS_TMP = "rw,noexec,nosuid,nodev,size=256m"
_MIB = 1024 * 1024
# Folders that hold (or are) the Engine's socket: never a tenant's mount source.
_SOCKET_DIRS = ("", "/var/run", "/run", "/run/docker", "/var/run/docker")
TENANT_NETWORK = "yourclaw-tenants"
# The Linux interface of that network, which the firewall rules name.
TENANT_BRIDGE = "yc-tenants"
# The name tenants reach the host by (the LLM proxy listens there): Docker maps
# it to the host's bridge address (`host-gateway`).
PROXY_HOSTNAME = "host.docker.internal"
# Warm spares: their slot folders under the data dir, their label and names.
_SLOTS = ".slots"
_POOL_LABEL = "yourclaw.pool-slot"
_POOL_PREFIX = "yourclaw-pool-"
_CLAIM_FILE = "claim.json"
# The last create's config without its credentials (`<data>/.slots/<file>`),
# and the label that says which one a spare booted with.
_TEMPLATE_FILE = "template.json"
_TEMPLATE_LABEL = "yourclaw.pool-template"
_NO_TEMPLATE = "none"
# What the Engine says when a container's port is someone else's.
_PORT_TAKEN = ("port is already allocated", "address already in use")
# How long a port stays reserved for a create between `prepare` and `run`.
_RESERVE_SECONDS = 120.0


def _refuse_socket_mounts(mounts: list[dict[str, Any]]) -> None:
    for mount in mounts:
        source = str(mount.get("Source", ""))
        target = str(mount.get("Target", ""))
        if (
            source.rstrip("/") in _SOCKET_DIRS
            or any(p.endswith(".sock") for p in (source, target))
            or "docker.sock" in source
        ):
            raise InvalidSpec("refusing to mount a runtime socket into a tenant")


@dataclass(frozen=True)
class FirewallSettings:
    """What tenants may reach besides the internet."""

    host_ports: tuple[int, ...] = ()
    egress_allow: tuple[EgressAllow, ...] = ()


def create_payload(
    spec: ContainerSpec,
    paths: UserPaths,
    *,
    publish_ip: str,
    network: str = TENANT_NETWORK,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The body of `POST /containers/create` for one tenant (or, with the
    pool's `labels`, for a warm spare: everything else is the same)."""
    env = dict(spec.env)
    # Fleet's container paths: these win over anything in the spec.
    env.update(
        {
            "HOME": _HOME,
            "OPENCLAW_HOME": _HOME,
            "OPENCLAW_STATE_DIR": _STATE,
            "OPENCLAW_CONFIG_PATH": f"{_STATE}/openclaw.json",
            "OPENCLAW_WORKSPACE_DIR": f"{_STATE}/workspace",
            "XDG_CACHE_HOME": f"{_STATE}/cache",
            "TMPDIR": "/tmp",  # noqa: S108 - the container's own tmpfs
            "OPENCLAW_NO_RESPAWN": "1",
            "OPENCLAW_DISABLE_BONJOUR": "1",
        }
    )
    mounts: list[dict[str, Any]] = [
        {"Type": "bind", "Source": str(paths.config), "Target": _STATE},
        {
            "Type": "bind",
            "Source": str(paths.workspace),
            "Target": f"{_STATE}/workspace",
        },
    ]
    _refuse_socket_mounts(mounts)
    port_key = f"{CONTAINER_PORT}/tcp"
    return {
        "Image": spec.image,
        # Inside the container the gateway listens on the container network
        # (`lan`), so the loopback-only host mapping can reach it.
        "Cmd": [
            "node",
            "dist/index.js",
            "gateway",
            "--bind",
            "lan",
            "--port",
            str(CONTAINER_PORT),
        ],
        "User": _USER,
        # The same host name in every container of this user: OpenClaw's state
        # lease names its owner by host and pid, and reclaims a dead owner's
        # lease only on the same host. With Docker's default (the container
        # id) a gateway re-created after a kill would wait out the lease.
        "Hostname": _HOSTNAME,
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "WorkingDir": "/app",
        "ExposedPorts": {port_key: {}},
        "Labels": dict(labels)
        if labels is not None
        else {
            _LABEL: "true",
            "yourclaw.user_id": str(spec.user_id),
            # The host data dir the user's files are in: `make clean` of one
            # checkout removes its own containers only.
            "yourclaw.data_dir": os.path.abspath(paths.root.parent),
            "yourclaw.spec_hash": spec.spec_hash,
            "yourclaw.port": str(spec.port),
        },
        "Healthcheck": {
            "Test": [
                "CMD",
                "node",
                "-e",
                f"fetch('http://127.0.0.1:{CONTAINER_PORT}/healthz')"
                ".then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))",
            ],
            "Interval": 5_000_000_000,
            "Timeout": 3_000_000_000,
            "Retries": 3,
            "StartPeriod": 60_000_000_000,
            "StartInterval": 500_000_000,
        },
        "HostConfig": {
            "CapDrop": ["ALL"],
            "CapAdd": [],
            "SecurityOpt": ["no-new-privileges:true"],
            "Privileged": False,
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": _TMPFS_TMP},  # noqa: S108 - the container's own tmpfs
            "PidsLimit": spec.pids_limit,
            "Memory": spec.memory_mb * _MIB,
            # Same as Memory: no swap on top of the limit.
            "MemorySwap": spec.memory_mb * _MIB,
            "NanoCpus": int(spec.cpus * 1e9),
            # The image's entrypoint is tini: it reaps the gateway's helpers.
            "Init": False,
            "RestartPolicy": {"Name": "unless-stopped"},
            "NetworkMode": network,
            "ExtraHosts": [f"{PROXY_HOSTNAME}:host-gateway"],
            "PortBindings": {
                port_key: [{"HostIp": publish_ip, "HostPort": str(spec.port)}]
            },
            "Mounts": mounts,
            "LogConfig": {
                "Type": "json-file",
                "Config": {"max-size": "10m", "max-file": "3"},
            },
        },
    }


def _demux(raw: bytes) -> str:
    # Without a TTY the Engine multiplexes stdout/stderr in frames:
    # 1 byte stream, 3 zero bytes, 4 bytes big-endian length, payload.
    out: list[bytes] = []
    pos = 0
    while (
        pos + 8 <= len(raw)
        and raw[pos] in (0, 1, 2)
        and raw[pos + 1 : pos + 4] == b"\0\0\0"
    ):
        (length,) = struct.unpack(">I", raw[pos + 4 : pos + 8])
        out.append(raw[pos + 8 : pos + 8 + length])
        pos += 8 + length
    if pos == 0:
        return raw.decode("utf-8", errors="replace")
    return b"".join(out).decode("utf-8", errors="replace")


def _state_of(
    status: str, health: str | None, exit_code: int
) -> Literal["running", "starting", "stopped", "exited"]:
    if status in ("running",):
        return "starting" if health == "starting" else "running"
    if status == "restarting":
        return "starting"
    if status in ("created", "paused"):
        return "stopped"
    return "stopped" if exit_code in (0, 143) else "exited"


def _info(
    name: str,
    state: Literal["running", "starting", "stopped", "exited", "missing"],
    labels: dict[str, str],
) -> ContainerInfo:
    port = labels.get("yourclaw.port")
    return ContainerInfo(
        name=name,
        state=state,
        port=int(port) if port and port.isdigit() else None,
        spec_hash=labels.get("yourclaw.spec_hash"),
    )


class DockerRuntime:
    """Hardened tenant containers through the Engine API."""

    kind: Literal["docker"] = "docker"

    def __init__(
        self,
        *,
        socket_path: str,
        publish_ip: str = "127.0.0.1",
        stop_timeout: float = 20.0,
        chown_to: tuple[int, int] | None = (1000, 1000),
        client: httpx.AsyncClient | None = None,
        network: str = TENANT_NETWORK,
        bridge: str = TENANT_BRIDGE,
        subnet: str | None = None,
        firewall: FirewallSettings | None = None,
        pull_missing: bool = False,
        rss_ceiling_percent: int = 85,
        rss_check_seconds: float = 60.0,
        restart_grace_seconds: float = 300.0,
        data_dir: str | None = None,
        warm_pool: int = 0,
        port_grid: range = range(19100, 30000, 120),
        pool_image: str = "yourclaw-openclaw:latest",
        takeover_timeout: float = 30.0,
    ):
        # The host data dir this agent serves: it lists, adopts and watches
        # only the containers labelled with it, never another agent's on the
        # same engine.
        self._data_dir = data_dir
        self._socket_path = socket_path
        self._publish_ip = publish_ip
        self._stop_timeout = int(stop_timeout)
        self._chown_to = chown_to
        self._client = client
        self._owns_client = client is None
        self._network = network
        self._bridge = bridge
        self._subnet = subnet
        self._firewall_settings = firewall
        self._pull_missing = pull_missing
        self.firewall: Firewall | None = None
        self._network_ready = False
        self._rss_ceiling_percent = rss_ceiling_percent
        self._rss_check_seconds = rss_check_seconds
        self._restart_grace = int(restart_grace_seconds)
        self._last_rss_check = 0.0
        self._events_since = int(time.time())
        self._restarting: dict[str, asyncio.Task[None]] = {}
        # Container name → when the kernel last OOM-killed it (the Engine
        # restarts it: unless-stopped).
        self._oom_kills: dict[str, int] = {}
        self.probe_host = "127.0.0.1" if publish_ip in ("0.0.0.0", "") else publish_ip  # noqa: S104
        if warm_pool and data_dir is None:
            raise ValueError("a warm pool needs the host's data dir")
        self._warm_pool = warm_pool
        self._port_grid = port_grid
        self._pool_image = pool_image
        self._takeover_timeout = takeover_timeout
        # Spares are spawned, claimed and retired under this lock, so a spare
        # never goes to two users and a port never gets two spares.
        self._pool_lock = asyncio.Lock()
        # Ports a create is about to use (between `prepare` and `run`), with
        # when: the pool must not boot a spare there meanwhile.
        self._reserved: dict[int, float] = {}
        # Container name → the slot `prepare` claimed for it, until `run`.
        self._claims: dict[str, str] = {}
        self._fill_task: asyncio.Task[None] | None = None

    @property
    def file_owner(self) -> tuple[int, int] | None:
        # Only root can give files away; otherwise they stay the agent's.
        return self._chown_to if os.geteuid() == 0 else None

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=self._socket_path),
                base_url="http://docker",
                # Stopping waits for the container's own grace period.
                timeout=httpx.Timeout(10.0, read=self._stop_timeout + 30.0),
            )
        return self._client

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RuntimeUnavailable(f"Docker Engine unreachable: {exc}") from exc
        if resp.status_code >= 500:
            raise RuntimeFailure(
                f"Docker Engine {method} {path.split('?')[0]}: "
                f"{resp.status_code} {_message(resp)}"
            )
        return resp

    # -- the interface ---------------------------------------------------------

    async def open(self) -> None:
        if not await self.ping():
            # Serve anyway: commands answer RUNTIME_UNAVAILABLE, no heartbeat
            # goes out, and the network and firewall come at the first call
            # that reaches the engine.
            log.warning("host_agent.docker.unreachable", socket=self._socket_path)
            return
        await self._ensure_ready()

    async def _ensure_ready(self) -> None:
        """The tenant network and its firewall, before any tenant runs."""
        await self._ensure_network()
        if self._firewall_settings is not None and self.firewall is None:
            await self._apply_firewall(self._firewall_settings)

    async def close(self) -> None:
        # Spares keep running: the next agent on this data dir adopts them
        # (`make clean` and the sweep remove them).
        if self._fill_task is not None:
            self._fill_task.cancel()
            await asyncio.gather(self._fill_task, return_exceptions=True)
            self._fill_task = None
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ping(self) -> bool:
        try:
            return (await self._call("GET", "/_ping")).status_code == 200
        except (RuntimeUnavailable, RuntimeFailure):
            return False

    async def _ensure_network(self) -> None:
        if self._network_ready:
            return
        net = self._network
        if (await self._call("GET", f"/networks/{net}")).status_code != 200:
            body: dict[str, Any] = {
                "Name": net,
                "Driver": "bridge",
                "CheckDuplicate": True,
                # Egress stays open for the internet; the firewall drops the rest.
                "Internal": False,
                "Labels": {_LABEL: "true"},
                "Options": {
                    "com.docker.network.bridge.enable_icc": "false",
                    "com.docker.network.bridge.name": self._bridge,
                },
            }
            if self._subnet:
                body["IPAM"] = {"Config": [{"Subnet": self._subnet}]}
            resp = await self._call("POST", "/networks/create", json=body)
            if resp.status_code not in (200, 201, 409):
                raise RuntimeFailure(f"cannot create network {net}: {_message(resp)}")
        self._network_ready = True

    async def _apply_firewall(self, settings: FirewallSettings) -> None:
        if not Firewall.available():
            raise RuntimeFailure(
                "iptables is missing: tenant containers would reach the host's "
                "services and private networks (install the iptables package)"
            )
        self.firewall = Firewall(
            TenantFirewallPlan(
                bridge=self._bridge,
                host_ports=tuple(settings.host_ports),
                egress_allow=tuple(settings.egress_allow),
                host_networks=await asyncio.to_thread(local_networks, self._bridge),
                dns_servers=await asyncio.to_thread(resolvers),
            )
        )
        await self.firewall.apply()

    def _own_mounts(self, paths: UserPaths) -> None:
        # The container runs as 1000:1000; its two mounts must be writable by it.
        if self._chown_to is None or os.geteuid() != 0:
            return
        uid, gid = self._chown_to
        for top in (paths.config, paths.workspace):
            for root, dirs, files in os.walk(top):
                for item in [
                    root,
                    *(os.path.join(root, d) for d in dirs),
                    *(os.path.join(root, f) for f in files),
                ]:
                    os.lchown(item, uid, gid)

    async def _pull(self, image: str) -> None:
        if "@" in image:  # pinned by digest
            repo, tag = image, ""
        elif ":" in image.rsplit("/", 1)[-1]:
            repo, _, tag = image.rpartition(":")
        else:
            repo, tag = image, "latest"
        log.info("host_agent.docker.pulling", image=image)
        resp = await self._call(
            "POST",
            f"/images/create?fromImage={quote(repo, safe='')}&tag={quote(tag, safe='')}",
            timeout=httpx.Timeout(10.0, read=600.0),
        )
        if resp.status_code != 200 or b'"error"' in resp.content:
            raise RuntimeFailure(f"cannot pull {image}: {_message(resp)}")

    async def prepare(self, spec: ContainerSpec, paths: UserPaths) -> None:
        """Before anything is written: hand a new user the spare on their
        port, or retire a spare in the way of their container."""
        if self._data_dir is None:
            return  # no pool without a data dir
        if self._warm_pool:
            await asyncio.to_thread(self._learn_template, spec)
        # Even with the pool off: a spare left from a larger WARM_POOL_SIZE
        # may hold the port.
        async with self._pool_lock:
            self._reserved[spec.port] = time.monotonic()
            spare = next((s for s in await self._spares() if s.port == spec.port), None)
            if spare is None:
                return
            if await self._claim(spare, spec, paths):
                self._claims[spec.name] = spare.slot
                WARM_CLAIMS.labels("taken").inc()
                log.info(
                    "host_agent.warm.claimed", container=spec.name, slot=spare.slot
                )
                return
            # Someone with files or keys of their own, another profile, or a
            # spare still booting: the port is theirs, the spare goes.
            WARM_CLAIMS.labels("retired").inc()
            await self._retire(spare)

    @property
    def _template_path(self) -> Path:
        assert self._data_dir is not None
        return Path(self._data_dir) / _SLOTS / _TEMPLATE_FILE

    def _learn_template(self, spec: ContainerSpec) -> None:
        """Keep the spec's config, credentials replaced, for the next spares."""
        template = spare_template(spec.files.get(CONFIG_FILE, ""))
        if template is None or template == self._template():
            return
        path = self._template_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(template)
        tmp.chmod(0o600)
        tmp.replace(path)

    def _template(self) -> str | None:
        try:
            return self._template_path.read_text()
        except OSError:
            return None

    async def _claim(
        self, spare: _Spare, spec: ContainerSpec, paths: UserPaths
    ) -> bool:
        fresh = not paths.root.exists() and not paths.root.is_symlink()
        if not fresh or spec.env or spare.state != "running":
            return False
        if not await self._fits(spare.name, spec):
            return False
        if not await admits_traffic(self.probe_host, spec.port):
            return False
        resp = await self._call(
            "POST", f"/containers/{spare.name}/rename?name={quote(spec.name)}"
        )
        if resp.status_code != 204:
            log.warning(
                "host_agent.warm.rename_failed",
                container=spec.name,
                error=_message(resp),
            )
            return False
        await asyncio.to_thread(self._link_slot, paths, spare.slot)
        return True

    def _link_slot(self, paths: UserPaths, slot: str) -> None:
        paths.root.parent.mkdir(parents=True, exist_ok=True)
        paths.root.symlink_to(Path(_SLOTS) / slot)

    async def _fits(self, name: str, spec: ContainerSpec) -> bool:
        """Whether the spare was created with the profile `spec` asks for."""
        resp = await self._call("GET", f"/containers/{name}/json")
        if resp.status_code != 200:
            return False
        data = resp.json()
        host = data.get("HostConfig") or {}
        return bool(
            (data.get("Config") or {}).get("Image") == spec.image
            and host.get("Memory") == spec.memory_mb * _MIB
            and host.get("NanoCpus") == int(spec.cpus * 1e9)
            and host.get("PidsLimit") == spec.pids_limit
        )

    async def run(self, spec: ContainerSpec, paths: UserPaths) -> ContainerInfo:
        try:
            if spec.name in self._claims:
                info = await self._take_over(spec, paths)
                if info is not None:
                    return info
            return await self._run(spec, paths)
        finally:
            self._claims.pop(spec.name, None)
            self._reserved.pop(spec.port, None)

    async def _take_over(
        self, spec: ContainerSpec, paths: UserPaths
    ) -> ContainerInfo | None:
        """The claimed spare, once it runs the spec's config; None if it did
        not take it in time (then it is replaced by a cold container)."""
        await asyncio.to_thread(self._save_claim, paths, spec)
        if await took_config(self.probe_host, spec, self._takeover_timeout):
            log.info("host_agent.warm.taken", container=spec.name, port=spec.port)
            return await self.inspect(spec.name)
        log.warning("host_agent.warm.reload_timeout", container=spec.name)
        return None

    def _save_claim(self, paths: UserPaths, spec: ContainerSpec) -> None:
        # The spec without its files (config and workspace are on disk): what
        # a start or restart re-creates the container from.
        write_files(
            paths,
            {
                f"run/{_CLAIM_FILE}": spec.model_copy(
                    update={"files": {}}
                ).model_dump_json()
            },
            data_root=self._data_root(paths),
        )

    def _claim_of(self, name: str) -> ContainerSpec | None:
        """The recorded claim of a container that was a warm spare."""
        if self._data_dir is None:
            return None
        try:
            user_id = user_id_of(name)
        except InvalidRequest:
            return None
        path = Path(self._data_dir) / str(user_id) / "run" / _CLAIM_FILE
        try:
            spec = ContainerSpec.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None
        return spec if spec.name == name else None

    def _data_root(self, paths: UserPaths) -> Path:
        return Path(self._data_dir) if self._data_dir else paths.root.parent

    async def _run(self, spec: ContainerSpec, paths: UserPaths) -> ContainerInfo:
        name = spec.name
        await self._delete(name)
        # A claim record belongs to the container that was a spare, not this one.
        (paths.run / _CLAIM_FILE).unlink(missing_ok=True)
        # No gateway of this user runs now. One that was killed (docker rm -f,
        # a lost host) left its lock files in its scratch folder, which a new
        # container (another host name) takes for a live gateway's lease and
        # refuses to start: the folder goes with the old gateway.
        await asyncio.to_thread(
            remove_tree, paths.config / "tmp", data_root=self._data_root(paths)
        )
        await self._ensure_ready()
        await asyncio.to_thread(self._own_mounts, paths)
        payload = create_payload(
            spec, paths, publish_ip=self._publish_ip, network=self._network
        )
        path = f"/containers/create?name={quote(name)}"
        resp = await self._call("POST", path, json=payload)
        if resp.status_code == 404 and "image" in _message(resp).lower():
            if not self._pull_missing:
                raise RuntimeFailure(
                    f"the assistant image {spec.image} is not on this host "
                    "(build it with `make images`, or load it on the host)"
                )
            await self._pull(spec.image)
            resp = await self._call("POST", path, json=payload)
        if resp.status_code != 201:
            raise RuntimeFailure(
                f"cannot create {name}: {resp.status_code} {_message(resp)}"
            )
        await self._start(name)
        return await self.inspect(name)

    async def _start(self, name: str) -> None:
        try:
            resp = await self._call("POST", f"/containers/{name}/start")
        except RuntimeFailure as exc:
            # The Engine answers 500 when its port proxy cannot bind.
            if any(m in str(exc) for m in _PORT_TAKEN):
                raise PortInUse(str(exc)) from None
            raise
        if resp.status_code == 404:
            raise ContainerNotFound(f"{name} does not exist on this host")
        if resp.status_code not in (204, 304):
            message = _message(resp)
            if any(m in message for m in _PORT_TAKEN):
                raise PortInUse(message)
            raise RuntimeFailure(f"cannot start {name}: {resp.status_code} {message}")

    async def start(self, name: str) -> ContainerInfo:
        if (relabelled := await self._relabel(name)) is not None:
            return relabelled
        await self._start(name)
        return await self.inspect(name)

    async def _relabel(self, name: str) -> ContainerInfo | None:
        """A container that was a warm spare, stopped (gracefully) and
        re-created from its claim with the user's own labels; None for any
        other container."""
        claim = self._claim_of(name)
        if claim is None or not await self._was_spare(name):
            return None
        await self._call("POST", f"/containers/{name}/stop?t={self._stop_timeout}")
        assert self._data_dir is not None  # a claim was found in it
        paths = UserPaths(Path(self._data_dir) / str(claim.user_id))
        log.info("host_agent.warm.relabelled", container=name)
        return await self._run(claim, paths)

    async def _was_spare(self, name: str) -> bool:
        resp = await self._call("GET", f"/containers/{name}/json")
        if resp.status_code != 200:
            return False
        labels = (resp.json().get("Config") or {}).get("Labels") or {}
        return _POOL_LABEL in labels

    async def stop(self, name: str) -> ContainerInfo:
        resp = await self._call(
            "POST", f"/containers/{name}/stop?t={self._stop_timeout}"
        )
        if resp.status_code not in (204, 304, 404):
            raise RuntimeFailure(
                f"cannot stop {name}: {resp.status_code} {_message(resp)}"
            )
        return await self.inspect(name)

    async def restart(self, name: str) -> ContainerInfo:
        if (relabelled := await self._relabel(name)) is not None:
            return relabelled
        resp = await self._call(
            "POST", f"/containers/{name}/restart?t={self._stop_timeout}"
        )
        if resp.status_code == 404:
            raise ContainerNotFound(f"{name} does not exist on this host")
        if resp.status_code != 204:
            raise RuntimeFailure(
                f"cannot restart {name}: {resp.status_code} {_message(resp)}"
            )
        return await self.inspect(name)

    async def _delete(self, name: str) -> None:
        resp = await self._call("DELETE", f"/containers/{name}?force=true&v=true")
        if resp.status_code not in (204, 404):
            raise RuntimeFailure(
                f"cannot remove {name}: {resp.status_code} {_message(resp)}"
            )

    async def remove(self, name: str) -> None:
        await self._delete(name)
        if self._data_dir is not None:
            run = Path(self._data_dir) / str(user_id_of(name)) / "run"
            (run / _CLAIM_FILE).unlink(missing_ok=True)

    async def inspect(self, name: str) -> ContainerInfo:
        resp = await self._call("GET", f"/containers/{name}/json")
        if resp.status_code == 404:
            return ContainerInfo(name=name, state="missing")
        data = resp.json()
        state = data.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        labels = (data.get("Config") or {}).get("Labels") or {}
        return self._describe(
            name,
            _state_of(
                str(state.get("Status", "")), health, int(state.get("ExitCode") or 0)
            ),
            labels,
        )

    def _describe(
        self,
        name: str,
        state: Literal["running", "starting", "stopped", "exited", "missing"],
        labels: dict[str, str],
    ) -> ContainerInfo:
        info = _info(name, state, labels)
        if _POOL_LABEL not in labels:
            return info
        # A claimed spare: its spec hash label is the pool's; the claim says
        # which spec runs (none recorded: any create replaces it).
        claim = self._claim_of(name)
        return info.model_copy(
            update={"spec_hash": claim.spec_hash if claim is not None else None}
        )

    def _labels(self, data_dir: str | None = None) -> list[str]:
        labels = [f"{_LABEL}=true"]
        scope = data_dir or self._data_dir
        if scope is not None:
            labels.append(f"yourclaw.data_dir={scope}")
        return labels

    async def _containers(self, labels: builtins.list[str]) -> Any:
        """The Engine's summaries of the containers with all these labels."""
        filters = json.dumps({"label": labels})
        resp = await self._call(
            "GET", f"/containers/json?all=true&filters={quote(filters)}"
        )
        if resp.status_code != 200:
            raise RuntimeFailure(f"cannot list containers: {_message(resp)}")
        return resp.json()

    async def list(self, *, data_dir: str | None = None) -> list[ContainerInfo]:
        found = []
        for item in await self._containers(self._labels(data_dir)):
            names = item.get("Names") or []
            if not names or str(names[0]).lstrip("/").startswith(_POOL_PREFIX):
                continue  # nobody's yet: a warm spare
            status_text = str(item.get("Status", ""))
            health = "starting" if "health: starting" in status_text else None
            state = str(item.get("State", ""))
            exit_code = 0
            if state == "exited" and "Exited (" in status_text:
                code = status_text.split("Exited (", 1)[1].split(")", 1)[0]
                exit_code = int(code) if code.lstrip("-").isdigit() else 1
            found.append(
                self._describe(
                    str(names[0]).lstrip("/"),
                    _state_of(state, health, exit_code),
                    item.get("Labels") or {},
                )
            )
        return found

    async def logs(self, name: str, tail: int) -> str:
        resp = await self._call(
            "GET", f"/containers/{name}/logs?stdout=true&stderr=true&tail={tail}"
        )
        if resp.status_code == 404:
            raise ContainerNotFound(f"{name} does not exist on this host")
        if resp.status_code != 200:
            raise RuntimeFailure(f"cannot read logs of {name}: {_message(resp)}")
        return _demux(resp.content)

    async def supervise(self) -> None:
        # The Engine restarts crashed and OOM-killed containers itself
        # (unless-stopped); we notice the OOM kills and restart, between turns,
        # a gateway whose memory grew past the ceiling (OpenClaw leaks).
        await self._note_oom_kills()
        # The engine answers (again): an agent that started without it sets
        # up the network and firewall now, before anything is created.
        await self._ensure_ready()
        if self._data_dir is not None and (
            self._fill_task is None or self._fill_task.done()
        ):
            # In the background: a spare's create must not hold up the heartbeat.
            self._fill_task = asyncio.create_task(self._fill_pool())
        now = time.monotonic()
        if self._rss_ceiling_percent and now - self._last_rss_check >= (
            self._rss_check_seconds
        ):
            self._last_rss_check = now
            await self._restart_over_ceiling()

    async def _note_oom_kills(self) -> None:
        until = int(time.time())
        filters = json.dumps(
            {"type": ["container"], "event": ["oom"], "label": self._labels()}
        )
        resp = await self._call(
            "GET",
            f"/events?since={self._events_since}&until={until}"
            f"&filters={quote(filters)}",
        )
        if resp.status_code != 200:
            return
        self._events_since = until
        for line in resp.text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = str((event.get("Actor") or {}).get("Attributes", {}).get("name", ""))
            if name.startswith("yourclaw-") and not name.startswith(_POOL_PREFIX):
                GATEWAY_OOM_KILLS.inc()
                log.warning("host_agent.gateway.oom_killed", container=name)
                self._oom_kills[name] = int(event.get("time") or until)

    def oom_kills(self) -> Mapping[str, int]:
        return dict(self._oom_kills)

    async def memory_of(self, name: str) -> tuple[int, int] | None:
        """(resident bytes, limit bytes) of a running container, or None."""
        resp = await self._call(
            "GET", f"/containers/{name}/stats?stream=false&one-shot=true"
        )
        if resp.status_code != 200:
            return None
        mem = resp.json().get("memory_stats") or {}
        inner = mem.get("stats") or {}
        # cgroup v1 names anonymous memory rss (total_rss with hierarchy), v2 anon.
        rss = inner.get("total_rss", inner.get("rss", inner.get("anon")))
        limit = mem.get("limit")
        if rss is None or not limit:
            return None
        return int(rss), int(limit)

    async def _restart_over_ceiling(self) -> None:
        for info in await self.list():
            if info.state != "running" or info.name in self._restarting:
                continue
            usage = await self.memory_of(info.name)
            if usage is None:
                continue
            rss, limit = usage
            if rss * 100 < limit * self._rss_ceiling_percent:
                continue
            log.warning(
                "host_agent.gateway.rss_ceiling",
                container=info.name,
                rss_mb=rss // _MIB,
                limit_mb=limit // _MIB,
                ceiling_percent=self._rss_ceiling_percent,
            )
            GATEWAY_RSS_RESTARTS.inc()
            task = asyncio.create_task(self._graceful_restart(info.name))
            self._restarting[info.name] = task

    async def _graceful_restart(self, name: str) -> None:
        # SIGTERM closes OpenClaw's admission and waits for running turns to
        # finish before it exits (a turn is never cut); new turns meanwhile are
        # refused and messaging retries them. The grace bounds a stuck turn.
        try:
            resp = await self._call(
                "POST",
                f"/containers/{name}/restart?t={self._restart_grace}",
                timeout=httpx.Timeout(10.0, read=self._restart_grace + 60.0),
            )
            if resp.status_code not in (204, 404):
                log.warning(
                    "host_agent.gateway.restart_failed",
                    container=name,
                    error=_message(resp),
                )
        except (RuntimeUnavailable, RuntimeFailure) as exc:
            log.warning(
                "host_agent.gateway.restart_failed", container=name, error=str(exc)
            )
        finally:
            self._restarting.pop(name, None)

    # -- warm pool -------------------------------------------------------------

    async def _spares(self) -> builtins.list[_Spare]:
        """The unclaimed spares of this data dir, whatever their state."""
        found = []
        for item in await self._containers([_POOL_LABEL, *self._labels()]):
            name = str((item.get("Names") or [""])[0]).lstrip("/")
            labels = item.get("Labels") or {}
            port = str(labels.get("yourclaw.port", ""))
            if name.startswith(_POOL_PREFIX) and port.isdigit():
                found.append(
                    _Spare(
                        name,
                        str(labels[_POOL_LABEL]),
                        int(port),
                        str(item.get("State", "")),
                        str(labels.get(_TEMPLATE_LABEL, _NO_TEMPLATE)),
                    )
                )
        return found

    async def _retire(self, spare: _Spare) -> None:
        await self._delete(spare.name)
        assert self._data_dir is not None
        await asyncio.to_thread(
            shutil.rmtree, Path(self._data_dir) / _SLOTS / spare.slot, True
        )
        log.info("host_agent.warm.retired", port=spare.port, slot=spare.slot)

    async def retire_pool(self) -> int:
        """Remove every unclaimed spare of this data dir (the sweep)."""
        async with self._pool_lock:
            spares = await self._spares()
            for spare in spares:
                await self._retire(spare)
        return len(spares)

    async def _fill_pool(self) -> None:
        try:
            async with self._pool_lock:
                await self._fill()
        except (RuntimeUnavailable, RuntimeFailure, PortInUse, OSError) as exc:
            log.warning("host_agent.warm.fill_failed", error=str(exc)[:300])

    async def _fill(self) -> None:
        alive = 0
        templated = self._template() is not None
        for spare in await self._spares():
            if (
                spare.state in ("running", "restarting")
                and alive < self._warm_pool
                # One booted before any config was seen would restart on its
                # claim: replaced as soon as there is a template. One from an
                # older template stays (what differs, a model say, hot-applies).
                and not (templated and spare.template == _NO_TEMPLATE)
            ):
                alive += 1
            else:  # exited, never started, one too many, or without a template
                await self._retire(spare)
        now = time.monotonic()
        self._reserved = {
            p: at for p, at in self._reserved.items() if now - at < _RESERVE_SECONDS
        }
        taken = set(self._reserved)
        for item in await self._containers(self._labels()):
            label = str((item.get("Labels") or {}).get("yourclaw.port", ""))
            if label.isdigit():
                taken.add(int(label))
        for port in self._port_grid:
            if alive >= self._warm_pool:
                break
            if port in taken or not port_free(port, self.probe_host):
                continue
            await self._spawn_spare(port)
            alive += 1
        WARM_GATEWAYS.set(alive)

    async def _spawn_spare(self, port: int) -> None:
        assert self._data_dir is not None
        slot = uuid.uuid4().hex
        paths = UserPaths(Path(self._data_dir) / _SLOTS / slot)
        # The last user's config with credentials nobody knows, and an empty
        # workspace.
        template = await asyncio.to_thread(self._template)
        template_id = (
            hashlib.sha256(template.encode()).hexdigest()[:16]
            if template is not None
            else _NO_TEMPLATE
        )
        await asyncio.to_thread(
            write_files,
            paths,
            {CONFIG_FILE: json.dumps(spare_config(template), indent=2)},
            data_root=Path(self._data_dir),
            owner=self.file_owner,
        )
        # Nobody's: the user's profile but no user, no LLM credential, no env.
        spec = ContainerSpec(
            user_id=uuid.UUID(int=0),
            name=f"{_POOL_PREFIX}{slot}",
            port=port,
            image=self._pool_image,
            spec_hash="pool",
        )
        await self._ensure_ready()
        payload = create_payload(
            spec,
            paths,
            publish_ip=self._publish_ip,
            network=self._network,
            labels={
                _LABEL: "true",
                _POOL_LABEL: slot,
                _TEMPLATE_LABEL: template_id,
                "yourclaw.data_dir": self._data_dir,
                "yourclaw.spec_hash": spec.spec_hash,
                "yourclaw.port": str(port),
            },
        )
        resp = await self._call(
            "POST", f"/containers/create?name={quote(spec.name)}", json=payload
        )
        spare = _Spare(spec.name, slot, port, "created", template_id)
        if resp.status_code != 201:
            await self._retire(spare)
            raise RuntimeFailure(f"cannot create a spare: {_message(resp)}")
        try:
            await self._start(spec.name)
        except (PortInUse, RuntimeFailure):
            await self._retire(spare)  # someone else's port, say: try later
            raise
        log.info("host_agent.warm.spawned", port=port, slot=slot)


@dataclass(frozen=True)
class _Spare:
    name: str
    slot: str
    port: int
    state: str
    template: str


def _message(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("message", ""))[:500]
    except ValueError:
        return resp.text[:500]
