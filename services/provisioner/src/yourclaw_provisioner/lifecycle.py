"""Sleeping assistants: SUSPENDED from heartbeats, and waking on request.

A host-agent puts an idle assistant to sleep on its own (frozen, then stopped)
and says so in its heartbeat (`ContainerState.sleeping`); the provisioner only
records it: READY ─► SUSPENDED while the host reports it sleeping, back to
READY once it reports it running. SUSPENDED is healthy: reconcile neither
re-creates nor heals it, and placement weighs it 1/ASSISTANT_SLEEP_OVERCOMMIT.

messaging asks for a wake before a turn (`assistant.wake.request`, core NATS
request/reply, replicas in one queue group): the host verb `wake` unpauses or
starts the container and answers once /healthz does. A failed wake leaves the
assistant SUSPENDED with a flag the dashboard shows, so the next message (or
the redelivered one) tries again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
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
from yourclaw_common.logging import bind_correlation_id, get_logger
from yourclaw_common.nats import CORRELATION_HEADER

from yourclaw_provisioner import metrics, repository
from yourclaw_provisioner.errors import HostCommandFailed
from yourclaw_provisioner.hosts import HostClient
from yourclaw_provisioner.settings import ProvisionerSettings

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

    pool: asyncpg.Pool
    hosts: HostClient
    settings: ProvisionerSettings
    # What the host's last heartbeat says of a container (its sleep depth).
    container_state: Callable[[str, str], ContainerState | None] = lambda _host, _name: (
        None
    )
    _waking: dict[UUID, asyncio.Task[WakeReply]] = field(default_factory=dict)
    _answers: set[asyncio.Task[None]] = field(default_factory=set)
    _sub: Subscription | None = None

    async def serve(self, nc: NATS) -> None:
        async def on_message(msg: Msg) -> None:
            task = asyncio.create_task(self._answer(msg))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)

        self._sub = await nc.subscribe(
            Subject.ASSISTANT_WAKE.value,
            queue=self.settings.service_name,
            cb=on_message,
        )
        log.info("provisioner.wake.serving", subject=Subject.ASSISTANT_WAKE.value)

    async def close(self) -> None:
        """Stop taking requests; finish those in flight."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # NATS is closing anyway
                log.debug("provisioner.wake.unsubscribe_failed", error=str(exc))
        if self._answers:
            await asyncio.gather(*self._answers, return_exceptions=True)

    async def _answer(self, msg: Msg) -> None:
        cid = (msg.headers or {}).get(CORRELATION_HEADER) or uuid.uuid4().hex
        with bind_correlation_id(cid):
            try:
                request = WakeAssistant.model_validate_json(msg.data)
            except ValidationError as exc:
                reply = WakeReply(
                    ok=False, code="INVALID_REQUEST", error=str(exc)[:300]
                )
            else:
                try:
                    reply = await self.wake(request.user_id)
                except Exception:
                    log.exception("provisioner.wake.crashed")
                    reply = _INTERNAL
            if not msg.reply:
                return
            try:
                await msg.respond(reply.model_dump_json().encode())
            except Exception as exc:  # the requester is gone or NATS reconnects
                log.warning("provisioner.wake.reply_failed", error=str(exc))

    async def wake(self, user_id: UUID) -> WakeReply:
        """Wake the user's assistant (or join the wake under way)."""
        task = self._waking.get(user_id)
        if task is None:
            task = asyncio.create_task(self._wake(user_id))
            self._waking[user_id] = task
            task.add_done_callback(lambda _: self._waking.pop(user_id, None))
        return await asyncio.shield(task)

    async def _wake(self, user_id: UUID) -> WakeReply:
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            assistant = await repository.get_assistant(conn, user_id)
        if (
            assistant is None
            or assistant.host_id is None
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
            info = await self.hosts.wake(
                host_id,
                name,
                wait_seconds=self.settings.assistant_wake_wait_seconds,
                generation=assistant.generation,
            )
        except HostCommandFailed as exc:
            return await self._failed(user_id, exc.code, exc.detail, from_state)
        if info is None or not info.healthy:
            state = info.state if info else "no answer"
            return await self._failed(
                user_id,
                "WAKE_FAILED",
                f"host {host_id} did not get {name} healthy ({state})",
                from_state,
            )
        async with self.pool.acquire() as conn:
            await repository.mark_awake(
                conn, user_id, host_id=host_id, flags=[WAKE_FAILED_FLAG]
            )
        seconds = time.perf_counter() - started
        metrics.WAKES.labels("woken").inc()
        metrics.WAKE_SECONDS.labels(from_state).observe(seconds)
        log.info(
            "provisioner.wake.woken",
            user_id=str(user_id),
            host_id=host_id,
            from_state=from_state,
            seconds=round(seconds, 3),
        )
        return WakeReply(ok=True, seconds=round(seconds, 3))

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
        async with self.pool.acquire() as conn:
            await repository.flag_wake_failed(conn, user_id, flag=WAKE_FAILED_FLAG)
        return WakeReply(ok=False, code=code, error=detail)
