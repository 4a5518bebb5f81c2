"""Sleeping assistants: SUSPENDED from heartbeats, and waking on request.

A host-agent puts an idle assistant to sleep on its own (frozen, then stopped)
and says so in its heartbeat (`ContainerState.sleeping`); the provisioner only
records it: READY ─► SUSPENDED while the host reports it sleeping, back to
READY once it reports it running. SUSPENDED is healthy: reconcile neither
re-creates nor heals it, and placement weighs it 1/ASSISTANT_SLEEP_OVERCOMMIT.

messaging asks for a wake before a turn (`assistant.wake.request`, core NATS
request/reply, replicas in one queue group): the host verb `wake` unpauses or
starts the container and answers once /readyz does (a thawed one that was
ready when it froze, as soon as it runs). Two refusals are worked
around, on the same host, since the workspace lives on its disk and nothing
moves one across hosts:

- PORT_IN_USE (another process took the port while the gateway was stopped):
  the assistant is re-created on a fresh port of that host, as placement
  allocates ports (a new generation), and the wake answers once it is healthy;
- NO_CAPACITY (no room for one more gateway in memory): the host has
  already stopped another gateway to make room where one could go, so the
  wake fails; nothing moves a workspace to another host.

A failed wake leaves the assistant SUSPENDED with a flag the dashboard shows,
so the next message (or the redelivered one) tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from nats.aio.client import Client as NATS
from pydantic import ValidationError
from yourclaw_common.db import Connection
from yourclaw_common.events import (
    ContainerState,
    HostHeartbeat,
    Subject,
    WakeAssistant,
    WakeReply,
    container_name,
)
from yourclaw_common.logging import get_logger
from yourclaw_common.responder import Responder

from yourclaw_provisioner import metrics, repository
from yourclaw_provisioner.errors import HostCommandFailed, ProvisioningError
from yourclaw_provisioner.repository import Assistant
from yourclaw_provisioner.service import Provisioner

__all__ = ["WAKE_FAILED_FLAG", "Waker", "owner_of", "record_sleep"]

log = get_logger(__name__)

# Shown on the dashboard while a wake fails; cleared once the assistant runs.
WAKE_FAILED_FLAG = (
    "Your assistant is asleep and could not be woken just now. We try again "
    "with your next message; nothing you sent is lost."
)
# A heartbeat sent just before a wake may still report the assistant sleeping.
_WAKE_GRACE_SECONDS = 2.0
_CONTAINER_PREFIX = "yourclaw-"
_INTERNAL = WakeReply(ok=False, code="INTERNAL_ERROR", error="internal error")


def owner_of(name: str) -> UUID | None:
    """The user whose container this is (`yourclaw-<user_id>`), if any."""
    if not name.startswith(_CONTAINER_PREFIX):
        return None
    try:
        return UUID(name.removeprefix(_CONTAINER_PREFIX))
    except ValueError:
        return None


async def record_sleep(conn: Connection, hb: HostHeartbeat) -> tuple[int, int]:
    """READY ⇄ SUSPENDED for the host's assistants, as its heartbeat reports
    them; returns (suspended, woken)."""
    sleeping: list[UUID] = []
    awake: list[UUID] = []
    for container in hb.containers:
        user_id = owner_of(container.name)
        if user_id is None:
            continue
        if container.sleeping is not None:
            sleeping.append(user_id)
        elif container.state == "running":
            awake.append(user_id)
    if not sleeping and not awake:
        return 0, 0
    suspended, woken = await repository.record_sleep(
        conn,
        hb.host_id,
        sleeping=sleeping,
        awake=awake,
        grace_seconds=_WAKE_GRACE_SECONDS,
        flags=[WAKE_FAILED_FLAG],
    )
    if suspended or woken:
        log.info(
            "provisioner.sleep.recorded",
            host_id=hb.host_id,
            suspended=suspended,
            woken=woken,
        )
    return suspended, woken


@dataclass
class Waker:
    """Serves `assistant.wake.request`: one wake per user at a time in this
    replica (a burst of requests shares it)."""

    provisioner: Provisioner
    # What the host's last heartbeat says of a container (its sleep depth).
    container_state: Callable[[str, str], ContainerState | None] = lambda _host, _name: (
        None
    )
    _waking: dict[UUID, asyncio.Task[WakeReply]] = field(default_factory=dict)
    _responder: Responder | None = None

    async def serve(self, nc: NATS) -> None:
        self._responder = Responder(
            nc, queue=self.provisioner.settings.service_name, crashed=_INTERNAL
        )
        await self._responder.serve(Subject.ASSISTANT_WAKE.value, self._handle)

    async def close(self) -> None:
        """Stop taking requests; finish those in flight."""
        if self._responder is not None:
            await self._responder.close()

    async def _handle(self, data: bytes) -> WakeReply:
        try:
            request = WakeAssistant.model_validate_json(data)
        except ValidationError as exc:
            return WakeReply(ok=False, code="INVALID_REQUEST", error=str(exc)[:300])
        return await self.wake(request.user_id)

    async def wake(self, user_id: UUID) -> WakeReply:
        """Wake the user's assistant (or join the wake under way)."""
        task = self._waking.get(user_id)
        if task is None:
            task = asyncio.create_task(self._wake(user_id))
            self._waking[user_id] = task
            task.add_done_callback(lambda _: self._waking.pop(user_id, None))
        return await asyncio.shield(task)

    async def _wake(self, user_id: UUID, *, moves_left: int = 1) -> WakeReply:
        started = time.perf_counter()
        pool = self.provisioner.pool
        async with pool.acquire() as conn:
            assistant = await repository.get_assistant(conn, user_id)
        if (
            assistant is None
            or assistant.host_id is None
            or assistant.port is None
            or assistant.status not in ("READY", "SUSPENDED")
        ):
            metrics.WAKES.labels("NO_ASSISTANT").inc()
            return WakeReply(
                ok=False,
                code="NO_ASSISTANT",
                error="the user has no placed assistant "
                f"({assistant.status if assistant else 'none'})",
            )
        host_id, name = assistant.host_id, container_name(user_id)
        seen = self.container_state(host_id, name)
        from_state = (seen.sleeping if seen else None) or "awake"
        try:
            await self._wake_on_host(assistant)
            outcome = "woken"
        except HostCommandFailed as exc:
            if exc.code != "PORT_IN_USE":
                return await self._failed(user_id, exc.code, exc.detail, from_state)
            # Another process took its port while it slept: the same host (its
            # workspace lives there) on a fresh port.
            try:
                moved = await self.provisioner.move_port(
                    user_id,
                    host_id=host_id,
                    # The port the sleeping container holds, as its host last
                    # reported it (a failed move may have noted another).
                    taken=seen.port if seen and seen.port else assistant.port,
                    generation=assistant.generation,
                )
            except ProvisioningError as moving:
                return await self._failed(
                    user_id,
                    "WAKE_FAILED",
                    f"{exc.detail}; moving it to another port failed: {moving.detail}",
                    from_state,
                )
            if moved is None:
                # Its placement changed meanwhile (another replica moved it):
                # wake it where it is now.
                if moves_left:
                    return await self._wake(user_id, moves_left=moves_left - 1)
                return await self._failed(
                    user_id, "WAKE_FAILED", "its placement kept changing", from_state
                )
            outcome = "moved"
        async with pool.acquire() as conn:
            await repository.mark_awake(
                conn, user_id, host_id=host_id, flags=[WAKE_FAILED_FLAG]
            )
        seconds = time.perf_counter() - started
        metrics.WAKES.labels(outcome).inc()
        metrics.WAKE_SECONDS.labels(from_state).observe(seconds)
        log.info(
            f"provisioner.wake.{outcome}",
            user_id=str(user_id),
            host_id=host_id,
            from_state=from_state,
            seconds=round(seconds, 3),
        )
        return WakeReply(ok=True, seconds=round(seconds, 3))

    async def _wake_on_host(self, assistant: Assistant) -> None:
        """The host's `wake`, answered once the gateway is healthy (else
        HostCommandFailed)."""
        assert assistant.host_id is not None
        host_id, name = assistant.host_id, container_name(assistant.user_id)
        wait = self.provisioner.settings.assistant_wake_wait_seconds
        try:
            info = await self.provisioner.hosts.wake(
                host_id, name, wait_seconds=wait, generation=assistant.generation
            )
        except HostCommandFailed as exc:
            if exc.code != "NO_CAPACITY":
                raise
            # The host stops a sleeper or an idle gateway itself when one may
            # go; another host with room would need the workspace, which lives
            # on this host's disk.
            raise HostCommandFailed(
                f"host {host_id} has no room to wake {name}: every gateway in "
                "its memory is busy or recently active, and its workspace "
                "lives there, so it cannot wake on another host",
                code="WAKE_FAILED",
                host_id=host_id,
            ) from exc
        if info is None or not info.healthy:
            raise HostCommandFailed(
                f"host {host_id} did not get {name} healthy "
                f"({info.state if info else 'no answer'})",
                code="WAKE_FAILED",
                host_id=host_id,
            )

    async def _failed(
        self, user_id: UUID, code: str, detail: str, from_state: str
    ) -> WakeReply:
        metrics.WAKES.labels(code).inc()
        log.warning(
            "provisioner.wake.failed",
            user_id=str(user_id),
            code=code,
            from_state=from_state,
            error=detail,
        )
        async with self.provisioner.pool.acquire() as conn:
            await repository.flag_wake_failed(conn, user_id, flag=WAKE_FAILED_FLAG)
        return WakeReply(ok=False, code=code, error=detail)
