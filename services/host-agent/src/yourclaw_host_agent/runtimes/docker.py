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

The create body (that profile) is `docker_api.py`'s, the warm spares
(`WARM_POOL_SIZE`) `docker_pool.py`'s.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import os
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
import psutil
from yourclaw_common.events import ContainerInfo, ContainerSpec
from yourclaw_common.logging import get_logger

from yourclaw_host_agent.errors import (
    ContainerNotFound,
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
from yourclaw_host_agent.layout import UserPaths, remove_tree, user_id_of
from yourclaw_host_agent.metrics import GATEWAY_OOM_KILLS, GATEWAY_RSS_RESTARTS
from yourclaw_host_agent.runtimes.docker_api import (
    CONTAINER_PORT,
    MANAGED_LABEL,
    MIB,
    TENANT_BRIDGE,
    TENANT_NETWORK,
    create_payload,
    engine_message,
)
from yourclaw_host_agent.runtimes.docker_pool import (
    CLAIM_FILE,
    POOL_LABEL,
    POOL_PREFIX,
    WarmPool,
)
from yourclaw_host_agent.sleep import Sockets, gateway_sockets
from yourclaw_host_agent.swap import Swapped, swap_in, swap_out
from yourclaw_host_agent.swap import usage as swap_usage

__all__ = ["DockerRuntime", "FirewallSettings"]

log = get_logger(__name__)

# What the Engine says when a container's port is someone else's.
_PORT_TAKEN = ("port is already allocated", "address already in use")
# What it says to a pause or unpause with nothing to do.
_NOT_PAUSABLE = ("is not paused", "is already paused", "is not running")
# What runc says when the kernel did not freeze every task of the container
# within its wait (one held in uninterruptible sleep: a page read from disk on
# a busy host). runc has thawed it again, so a later try is safe and usually
# succeeds.
_FREEZE_TIMED_OUT = "unable to freeze"
_FREEZE_TRIES = 3
_FREEZE_RETRY_SECONDS = 1.0


_CAP_CHOWN = 0  # its bit in /proc/<pid>/status's capability masks


@functools.cache
def _may_chown() -> bool:
    """Whether this process may give files to another user: root, or an agent
    granted CAP_CHOWN without being root (deploy/host-agent's unit). Read
    once: a process's capabilities do not change under it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_CHOWN & 1)
    return os.geteuid() == 0


@dataclass(frozen=True)
class FirewallSettings:
    """What tenants may reach besides the internet."""

    host_ports: tuple[int, ...] = ()
    egress_allow: tuple[EgressAllow, ...] = ()


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


_State = Literal["running", "starting", "paused", "stopped", "exited", "missing"]


def _state_of(status: str, health: str | None, exit_code: int) -> _State:
    if status in ("running",):
        return "starting" if health == "starting" else "running"
    if status == "restarting":
        return "starting"
    if status == "paused":
        return "paused"
    if status == "created":
        return "stopped"
    return "stopped" if exit_code in (0, 143) else "exited"


def _info(
    name: str,
    state: _State,
    labels: dict[str, str],
) -> ContainerInfo:
    port = labels.get("yourclaw.port")
    return ContainerInfo(
        name=name,
        state=state,
        port=int(port) if port and port.isdigit() else None,
        spec_hash=labels.get("yourclaw.spec_hash"),
    )


def _started_at(pid: int) -> float | None:
    """When the process `pid` started; None when there is none (a pid seen
    again with another start time is another process)."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


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
        # Each container's init process (pid, start time), for reading its
        # sockets twice a second without asking the engine each time; asked
        # again once that process is gone.
        self._inits: dict[str, tuple[int, float]] = {}
        # Container name → when the kernel last OOM-killed it (the Engine
        # restarts it: unless-stopped).
        self._oom_kills: dict[str, int] = {}
        self.probe_host = "127.0.0.1" if publish_ip in ("0.0.0.0", "") else publish_ip  # noqa: S104
        if warm_pool and data_dir is None:
            raise ValueError("a warm pool needs the host's data dir")
        # Without a data dir there are no spares, not even ones to retire.
        self._pool = (
            WarmPool(
                self,
                data_dir,
                size=warm_pool,
                port_grid=port_grid,
                image=pool_image,
                takeover_timeout=takeover_timeout,
            )
            if data_dir is not None
            else None
        )

    @property
    def file_owner(self) -> tuple[int, int] | None:
        # Only root (or the systemd unit's agent, granted CAP_CHOWN) can give
        # files away; otherwise they stay the agent's.
        return self._chown_to if _may_chown() else None

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
                f"{resp.status_code} {engine_message(resp)}"
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
        if self._pool is not None:
            await self._pool.close()
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
                "Labels": {MANAGED_LABEL: "true"},
                "Options": {
                    "com.docker.network.bridge.enable_icc": "false",
                    "com.docker.network.bridge.name": self._bridge,
                },
            }
            if self._subnet:
                body["IPAM"] = {"Config": [{"Subnet": self._subnet}]}
            resp = await self._call("POST", "/networks/create", json=body)
            if resp.status_code not in (200, 201, 409):
                raise RuntimeFailure(
                    f"cannot create network {net}: {engine_message(resp)}"
                )
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
        if self.file_owner is None:
            return
        uid, gid = self.file_owner
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
            raise RuntimeFailure(f"cannot pull {image}: {engine_message(resp)}")

    async def prepare(self, spec: ContainerSpec, paths: UserPaths) -> None:
        """Before anything is written: hand a new user the spare on their
        port, or retire a spare in the way of their container."""
        if self._pool is not None:
            await self._pool.prepare(spec, paths)

    async def run(self, spec: ContainerSpec, paths: UserPaths) -> ContainerInfo:
        if self._pool is None:
            return await self._run(spec, paths)
        try:
            info = await self._pool.take_over(spec, paths)
            return info if info is not None else await self._run(spec, paths)
        finally:
            self._pool.release(spec)

    def _data_root(self, paths: UserPaths) -> Path:
        return Path(self._data_dir) if self._data_dir else paths.root.parent

    async def _run(self, spec: ContainerSpec, paths: UserPaths) -> ContainerInfo:
        name = spec.name
        await self._delete(name)
        # A claim record belongs to the container that was a spare, not this one.
        (paths.run / CLAIM_FILE).unlink(missing_ok=True)
        # No gateway of this user runs now. One that was killed (docker rm -f,
        # a lost host) left its lock files in its scratch folder, which a new
        # container (another host name) takes for a live gateway's lease and
        # refuses to start: the folder goes with the old gateway.
        await asyncio.to_thread(
            remove_tree, paths.config / "tmp", data_root=self._data_root(paths)
        )
        await self._ensure_ready()
        await asyncio.to_thread(self._own_mounts, paths)
        resp = await self._create(spec, paths)
        if resp.status_code == 404 and "image" in engine_message(resp).lower():
            if not self._pull_missing:
                raise RuntimeFailure(
                    f"the assistant image {spec.image} is not on this host "
                    "(build it with `make images`, or load it on the host)"
                )
            await self._pull(spec.image)
            resp = await self._create(spec, paths)
        if resp.status_code != 201:
            raise RuntimeFailure(
                f"cannot create {name}: {resp.status_code} {engine_message(resp)}"
            )
        await self._start(name)
        return await self.inspect(name)

    async def _create(
        self,
        spec: ContainerSpec,
        paths: UserPaths,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """`POST /containers/create` of the spec's container (see `create_payload`)."""
        payload = create_payload(
            spec,
            paths,
            publish_ip=self._publish_ip,
            network=self._network,
            labels=labels,
        )
        return await self._call(
            "POST", f"/containers/create?name={quote(spec.name)}", json=payload
        )

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
            message = engine_message(resp)
            if any(m in message for m in _PORT_TAKEN):
                raise PortInUse(message)
            raise RuntimeFailure(f"cannot start {name}: {resp.status_code} {message}")

    async def start(self, name: str) -> ContainerInfo:
        await self._unpause(name)
        if (relabelled := await self._relabel(name)) is not None:
            return relabelled
        await self._start(name)
        return await self.inspect(name)

    async def _unpause(self, name: str) -> bool:
        """Resume a paused container; whether it was paused. (A stop or kill
        of a paused one would only be delivered at its resume.)"""
        try:
            resp = await self._call("POST", f"/containers/{name}/unpause")
        except RuntimeFailure as exc:
            # Engines before 23 answer 500, newer 409, when there is nothing
            # to resume.
            if any(m in str(exc) for m in _NOT_PAUSABLE):
                return False
            raise
        return resp.status_code == 204

    async def freeze(self, name: str) -> ContainerInfo:
        for attempt in range(1, _FREEZE_TRIES + 1):
            try:
                resp = await self._call("POST", f"/containers/{name}/pause")
                break
            except RuntimeFailure as exc:
                if any(m in str(exc) for m in _NOT_PAUSABLE):
                    return await self.inspect(name)
                if _FREEZE_TIMED_OUT not in str(exc) or attempt == _FREEZE_TRIES:
                    raise
                log.warning("host_agent.freeze.retry", container=name, attempt=attempt)
                await asyncio.sleep(_FREEZE_RETRY_SECONDS)
        if resp.status_code == 404:
            raise ContainerNotFound(f"{name} does not exist on this host")
        if resp.status_code not in (204, 409):
            raise RuntimeFailure(
                f"cannot pause {name}: {resp.status_code} {engine_message(resp)}"
            )
        return await self.inspect(name)

    async def unfreeze(self, name: str) -> ContainerInfo:
        await self._unpause(name)
        return await self.inspect(name)

    async def _init_pid(self, name: str) -> int | None:
        """The container's init process on this host (frozen or not), cached
        by its start time, so that reading it twice a second asks the engine
        only after it changed."""
        init = self._inits.get(name)
        if (
            init is not None
            and await asyncio.to_thread(_started_at, init[0]) == init[1]
        ):
            return init[0]
        self._inits.pop(name, None)
        resp = await self._call("GET", f"/containers/{name}/json")
        if resp.status_code != 200:
            return None
        pid = int((resp.json().get("State") or {}).get("Pid") or 0)
        started = await asyncio.to_thread(_started_at, pid) if pid else None
        if started is None:
            return None
        self._inits[name] = (pid, started)
        return pid

    async def sockets(self, name: str) -> Sockets:
        # The gateway's port inside the container's network namespace, seen
        # through its init process.
        pid = await self._init_pid(name)
        if pid is None:
            return Sockets()
        return await asyncio.to_thread(gateway_sockets, pid, CONTAINER_PORT)

    async def swap_out(self, name: str, *, keep_free: int) -> Swapped | None:
        pid = await self._init_pid(name)
        if pid is None:
            return None
        return await asyncio.to_thread(swap_out, pid, keep_free=keep_free)

    async def swap_usage(self, name: str) -> Swapped | None:
        pid = await self._init_pid(name)
        return None if pid is None else await asyncio.to_thread(swap_usage, pid)

    async def swap_in(self, name: str) -> None:
        pid = await self._init_pid(name)
        if pid is not None:
            await asyncio.to_thread(swap_in, pid)

    async def _relabel(self, name: str) -> ContainerInfo | None:
        """A container that was a warm spare, stopped (gracefully) and
        re-created from its claim with the user's own labels; None for any
        other container."""
        claim = self._pool.claim_of(name) if self._pool is not None else None
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
        return POOL_LABEL in labels

    async def stop(self, name: str) -> ContainerInfo:
        # Thawed first: OpenClaw gets its SIGTERM and saves its state.
        await self._unpause(name)
        resp = await self._call(
            "POST", f"/containers/{name}/stop?t={self._stop_timeout}"
        )
        if resp.status_code not in (204, 304, 404):
            raise RuntimeFailure(
                f"cannot stop {name}: {resp.status_code} {engine_message(resp)}"
            )
        return await self.inspect(name)

    async def restart(self, name: str) -> ContainerInfo:
        await self._unpause(name)
        if (relabelled := await self._relabel(name)) is not None:
            return relabelled
        resp = await self._call(
            "POST", f"/containers/{name}/restart?t={self._stop_timeout}"
        )
        if resp.status_code == 404:
            raise ContainerNotFound(f"{name} does not exist on this host")
        if resp.status_code != 204:
            raise RuntimeFailure(
                f"cannot restart {name}: {resp.status_code} {engine_message(resp)}"
            )
        return await self.inspect(name)

    async def _delete(self, name: str) -> None:
        resp = await self._call("DELETE", f"/containers/{name}?force=true&v=true")
        if resp.status_code not in (204, 404):
            raise RuntimeFailure(
                f"cannot remove {name}: {resp.status_code} {engine_message(resp)}"
            )

    async def remove(self, name: str) -> None:
        await self._unpause(name)
        await self._delete(name)
        if self._data_dir is not None:
            run = Path(self._data_dir) / str(user_id_of(name)) / "run"
            (run / CLAIM_FILE).unlink(missing_ok=True)

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
        state: _State,
        labels: dict[str, str],
    ) -> ContainerInfo:
        info = _info(name, state, labels)
        if POOL_LABEL not in labels:
            return info
        # A claimed spare: its spec hash label is the pool's; the claim says
        # which spec runs (none recorded: any create replaces it).
        claim = self._pool.claim_of(name) if self._pool is not None else None
        return info.model_copy(
            update={"spec_hash": claim.spec_hash if claim is not None else None}
        )

    def _labels(self, data_dir: str | None = None) -> list[str]:
        labels = [f"{MANAGED_LABEL}=true"]
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
            raise RuntimeFailure(f"cannot list containers: {engine_message(resp)}")
        return resp.json()

    async def list(self, *, data_dir: str | None = None) -> list[ContainerInfo]:
        found = []
        for item in await self._containers(self._labels(data_dir)):
            names = item.get("Names") or []
            if not names or str(names[0]).lstrip("/").startswith(POOL_PREFIX):
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
            raise RuntimeFailure(f"cannot read logs of {name}: {engine_message(resp)}")
        return _demux(resp.content)

    async def supervise(self) -> None:
        # The Engine restarts crashed and OOM-killed containers itself
        # (unless-stopped); we notice the OOM kills and restart, between turns,
        # a gateway whose memory grew past the ceiling (OpenClaw leaks).
        await self._note_oom_kills()
        # The engine answers (again): an agent that started without it sets
        # up the network and firewall now, before anything is created.
        await self._ensure_ready()
        if self._pool is not None:
            self._pool.refill()
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
            if name.startswith("yourclaw-") and not name.startswith(POOL_PREFIX):
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
                rss_mb=rss // MIB,
                limit_mb=limit // MIB,
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
                    error=engine_message(resp),
                )
        except (RuntimeUnavailable, RuntimeFailure) as exc:
            log.warning(
                "host_agent.gateway.restart_failed", container=name, error=str(exc)
            )
        finally:
            self._restarting.pop(name, None)

    async def retire_pool(self) -> int:
        """Remove every unclaimed spare of this data dir (the sweep)."""
        return await self._pool.retire_all() if self._pool is not None else 0
