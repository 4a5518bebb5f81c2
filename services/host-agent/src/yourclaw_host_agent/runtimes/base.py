"""The interface every runtime implements; tests may swap in their own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from yourclaw_common.events import ContainerInfo, ContainerSpec

from yourclaw_host_agent.layout import UserPaths
from yourclaw_host_agent.sleep import Sockets
from yourclaw_host_agent.swap import Swapped

RuntimeKind = Literal["process", "docker"]


class ContainerRuntime(Protocol):
    """Runs users' gateways on this host, one per container name.

    The host service serialises calls per name and writes the spec's files
    before `run`; a runtime only starts, stops and reports. Every method takes a
    validated name (`yourclaw-<uuid>`). `inspect` of an unknown name answers
    `state="missing"`; `start`/`restart`/`logs` of one raise ContainerNotFound;
    `stop` and `remove` of one do nothing. A frozen container (`freeze`)
    reports `state="paused"`; `stop`, `restart`, `start` and `remove` work on
    it as on a running one.
    """

    @property
    def kind(self) -> RuntimeKind: ...

    @property
    def probe_host(self) -> str:
        """Where /readyz of a running gateway answers on this host."""

    @property
    def file_owner(self) -> tuple[int, int] | None:
        """(uid, gid) the user's files are written as, or None: the agent's own."""

    async def open(self) -> None:
        """Get ready; adopt what already runs (the agent may have restarted)."""

    async def close(self) -> None:
        """Release clients; gateways keep running."""

    async def ping(self) -> bool:
        """Whether the runtime can take commands right now."""

    async def prepare(self, spec: ContainerSpec, paths: UserPaths) -> None:
        """Before the spec's files are written: a runtime with pre-booted gateways
        may hand one to this user here (their files then land in its folders)."""

    async def run(self, spec: ContainerSpec, paths: UserPaths) -> ContainerInfo:
        """Start `spec` under its name, replacing whatever ran under it."""

    async def start(self, name: str) -> ContainerInfo: ...

    async def stop(self, name: str) -> ContainerInfo: ...

    async def restart(self, name: str) -> ContainerInfo: ...

    async def freeze(self, name: str) -> ContainerInfo:
        """Pause every process of a running container (no CPU; memory kept);
        a no-op on one that is not running."""

    async def unfreeze(self, name: str) -> ContainerInfo:
        """Resume a frozen container; a no-op on any other."""

    async def swap_out(self, name: str, *, keep_free: int) -> Swapped | None:
        """Move a frozen gateway's memory to the host's swap, leaving at least
        `keep_free` bytes of swap free (docs/sleep.md, "Deep sleep: swapped");
        None when the runtime or the host cannot."""

    async def swap_usage(self, name: str) -> Swapped | None:
        """A gateway's memory in swap and in RAM now; None where the runtime
        cannot tell."""

    async def swap_in(self, name: str) -> None:
        """Read back in bulk what a frozen gateway has in swap (as it thaws);
        nothing when it has none or the runtime cannot."""

    async def sockets(self, name: str) -> Sockets:
        """The gateway's sockets on its port (docs/sleep.md, "A request to a
        frozen gateway"); none when it has no process."""

    async def remove(self, name: str) -> None:
        """Stop and forget the container; the user's files stay."""

    async def inspect(self, name: str) -> ContainerInfo: ...

    async def list(self) -> list[ContainerInfo]: ...

    async def logs(self, name: str, tail: int) -> str: ...

    async def supervise(self) -> None:
        """Called every heartbeat: restart gateways that died on their own."""

    def oom_kills(self) -> Mapping[str, int]:
        """Container name → when (Unix seconds) it was last killed for memory
        and restarted, since this runtime opened."""
