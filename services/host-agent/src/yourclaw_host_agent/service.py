"""The rules of host commands, whatever the runtime: idempotent by container name."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

import httpx
from yourclaw_common.events import ContainerInfo, ContainerSpec
from yourclaw_common.logging import get_logger

from yourclaw_host_agent.errors import ContainerNotFound, NoCapacity, PortInUse
from yourclaw_host_agent.layout import (
    DataLayout,
    remove_tree,
    user_id_of,
    validate_spec,
    write_files,
)
from yourclaw_host_agent.runtimes import ContainerRuntime

__all__ = ["HostService"]

log = get_logger(__name__)

_ALIVE = ("running", "starting")


class HostService:
    """What a host does for each command; commands on one name run one at a time."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        layout: DataLayout,
        http: httpx.AsyncClient,
        *,
        capacity: int,
        on_change: Callable[[], None] = lambda: None,
    ):
        self.runtime = runtime
        self.layout = layout
        self.capacity = capacity
        self._http = http
        self._on_change = on_change
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        validate_spec(spec)
        async with self._locks[spec.name]:
            current = await self.runtime.inspect(spec.name)
            if current.state != "missing" and current.spec_hash == spec.spec_hash:
                if current.state in _ALIVE:
                    log.info("host_agent.create.unchanged", container=spec.name)
                    return current
                # Same spec, but stopped or crashed: bring it back as it was.
                info = await self.runtime.start(spec.name)
                self._on_change()
                return info
            others = [c for c in await self.runtime.list() if c.name != spec.name]
            if current.state == "missing" and len(others) >= self.capacity:
                raise NoCapacity(
                    f"this host runs {len(others)} of {self.capacity} gateways"
                )
            taken = next((c for c in others if c.port == spec.port), None)
            if taken is not None:
                raise PortInUse(
                    f"port {spec.port} belongs to {taken.name} on this host",
                    port=spec.port,
                )
            replacing = current.state != "missing"
            if replacing:
                # Replace: stop, rewrite files and env, start; the workspace and
                # the gateway's state (sessions) stay.
                await self.runtime.stop(spec.name)
            paths = self.layout.user(spec.user_id)
            await self.runtime.prepare(spec, paths)
            await asyncio.to_thread(
                write_files,
                paths,
                dict(spec.files),
                spec.remove_files,
                data_root=self.layout.root,
            )
            info = await self.runtime.run(spec, paths)
            log.info(
                "host_agent.create.done",
                container=spec.name,
                port=spec.port,
                replaced=replacing,
            )
        self._on_change()
        return info

    async def start(self, name: str) -> ContainerInfo:
        user_id_of(name)
        async with self._locks[name]:
            info = await self.runtime.start(name)
        self._on_change()
        return info

    async def stop(self, name: str) -> ContainerInfo:
        user_id_of(name)
        async with self._locks[name]:
            info = await self.runtime.stop(name)
        self._on_change()
        return info

    async def restart(self, name: str) -> ContainerInfo:
        user_id_of(name)
        async with self._locks[name]:
            info = await self.runtime.restart(name)
        self._on_change()
        return info

    async def remove(
        self, name: str, *, purge_workspace: bool = False
    ) -> ContainerInfo:
        paths = self.layout.for_name(name)
        async with self._locks[name]:
            await self.runtime.remove(name)
            # The config holds the gateway token: it goes with the container. The
            # workspace stays unless the account is gone.
            target = paths.root if purge_workspace else paths.config
            await asyncio.to_thread(remove_tree, target, data_root=self.layout.root)
            log.info("host_agent.remove.done", container=name, purged=purge_workspace)
        self._on_change()
        return ContainerInfo(name=name, state="missing")

    async def inspect(self, name: str) -> ContainerInfo:
        user_id_of(name)
        return await self.runtime.inspect(name)

    async def list(self) -> list[ContainerInfo]:
        return await self.runtime.list()

    async def logs(self, name: str, tail: int) -> str:
        user_id_of(name)
        return await self.runtime.logs(name, tail)

    async def health(self, name: str, *, wait_seconds: float = 0) -> ContainerInfo:
        """Probe the gateway's GET /readyz, OpenClaw's traffic admission (startup
        done, agents usable; never a chat completion, which would open a
        session), for up to `wait_seconds` while it is starting."""
        user_id_of(name)
        deadline = time.monotonic() + wait_seconds
        info = await self.runtime.inspect(name)
        while True:
            if info.state == "missing":
                raise ContainerNotFound(f"{name} does not exist on this host")
            healthy = info.state in _ALIVE and await self._probe(info.port)
            if healthy or time.monotonic() >= deadline:
                return info.model_copy(
                    update={
                        "healthy": healthy,
                        "state": "running" if healthy else info.state,
                    }
                )
            await asyncio.sleep(0.1)
            info = await self.runtime.inspect(name)
            if info.state not in _ALIVE and info.state != "missing":
                # Stopped or crashed: waiting longer cannot make it healthy.
                return info.model_copy(update={"healthy": False})

    async def _probe(self, port: int | None) -> bool:
        if port is None:
            return False
        url = f"http://{self.runtime.probe_host}:{port}/readyz"
        try:
            resp = await self._http.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def supervise(self) -> None:
        await self.runtime.supervise()
