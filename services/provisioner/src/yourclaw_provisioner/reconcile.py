"""Heartbeats and the reconcile loop: the database and the hosts agree again.

Every replica records every heartbeat (`hosts` row + the container list in
memory); one replica at a time (advisory lock) repairs drift, every
RECONCILE_INTERVAL_SECONDS and at once when a heartbeat lacks a container the
host's previous one had or a host comes back:

- a READY or SUSPENDED assistant whose container is not in its host's
  heartbeat (running, or asleep: see lifecycle.py) → re-created;
- a `yourclaw-<user_id>` container that no READY/SUSPENDED/PROVISIONING
  assistant on that host owns → removed, fenced by generation: the remove names the generations
  it may take (older than the assistant's current placement, or all when it
  has none), and a host keeps a copy of the current generation;
- host-loss policy, fencing instead of guessing. A host silent for
  HOST_HEARTBEAT_TIMEOUT_SECONDS is suspect (`OFFLINE`): it takes nothing new,
  its READY and SUSPENDED assistants are flagged (`last_error`) and keep their place, since
  their workspace lives on that host's disk. Only a host silent for another
  HOST_EVACUATE_AFTER_SECONDS (minutes) is lost, and only then are its
  assistants re-placed on live hosts; one with nowhere to go stays where it
  is, flagged, and is tried again after as long. Silence counts only while the control
  plane demonstrably works — this replica connected to NATS without a break
  and some host heard from — so when every host goes silent at once (NATS is
  down) or this replica lost NATS, nothing is re-placed, and after such a break
  a host must stay silent the whole time again. A host that comes back is
  ACTIVE again and the flags clear; the copies it still runs of moved
  assistants are superseded, removed as above.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from nats.aio.msg import Msg
from pydantic import ValidationError
from yourclaw_common import outbox
from yourclaw_common.db import Connection
from yourclaw_common.events import (
    AssistantRestarted,
    ContainerState,
    HostHeartbeat,
    provider_event_id,
)
from yourclaw_common.logging import get_logger
from yourclaw_common.sealing import key_id

from yourclaw_provisioner import metrics, repository
from yourclaw_provisioner.errors import HEALABLE_CODES, HostCommandFailed
from yourclaw_provisioner.lifecycle import owner_of, record_sleep
from yourclaw_provisioner.service import (
    HOST_LOST_FLAG,
    HOST_LOST_REASON,
    Provisioner,
)
from yourclaw_provisioner.settings import ProvisionerSettings

log = get_logger(__name__)

_CONTAINER_PREFIX = "yourclaw-"
_PRESENT = frozenset({"running", "starting"})
# A container started just before a heartbeat was sent may be missing from it.
_HEARTBEAT_GRACE = timedelta(seconds=2)


@dataclass(frozen=True)
class Seen:
    """The last heartbeat of a host, stamped with the database's clock."""

    received_at: datetime
    containers: tuple[ContainerState, ...]


@dataclass
class Fleet:
    """Heartbeats → `hosts` rows, and the containers each host says it runs."""

    pool: asyncpg.Pool
    wake: asyncio.Event
    seen: dict[str, Seen] = field(default_factory=dict)
    # Names this service's outbox rows.
    service: str = "provisioner"
    # Set when a heartbeat lacks a container the host's last one had, or a
    # host is back: the reconcile pass runs now, not at its next interval.
    drifted: asyncio.Event = field(default_factory=asyncio.Event)

    def container(self, host_id: str, name: str) -> ContainerState | None:
        """What the host's last heartbeat says of one container."""
        seen = self.seen.get(host_id)
        if seen is None:
            return None
        return next((c for c in seen.containers if c.name == name), None)

    async def on_message(self, msg: Msg) -> None:
        try:
            hb = HostHeartbeat.model_validate_json(msg.data)
        except ValidationError as exc:
            log.warning("provisioner.heartbeat.invalid", error=str(exc)[:300])
            return
        if msg.subject != hb.publish_subject():
            # Each host's NATS user may publish only its own subject: a beat
            # naming another host is forged (or from a misconfigured agent).
            log.warning(
                "provisioner.heartbeat.forged",
                subject=msg.subject,
                claimed_host_id=hb.host_id,
            )
            return
        try:
            await self.record(hb)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning(
                "provisioner.heartbeat.not_recorded", host_id=hb.host_id, error=str(exc)
            )

    async def record(self, hb: HostHeartbeat) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            previous, received, previous_key = await repository.record_heartbeat(
                conn, hb
            )
            if previous == "OFFLINE":
                await repository.clear_host_flags(conn, hb.host_id, flag=HOST_LOST_FLAG)
            if previous in ("NEW", "OFFLINE"):
                await repository.hurry_jobs_waiting_for_a_host(conn)
            await self._tell_of_oom_kills(conn, hb)
            await record_sleep(conn, hb)
        before = self.seen.get(hb.host_id)
        self.seen[hb.host_id] = Seen(received, hb.containers)
        metrics.HEARTBEATS.inc()
        # At 0 from the first heartbeat, so a first change counts as an increase.
        metrics.HOST_KEY_CHANGES.labels(hb.host_id)
        if previous_key != hb.public_key or previous == "NEW":
            self._tell_of_key(hb, previous_key)
        if previous in ("NEW", "OFFLINE") or (
            before is not None and _present(before.containers) - _present(hb.containers)
        ):
            self.drifted.set()
        if previous in ("NEW", "OFFLINE"):
            log.info(
                "provisioner.host.up",
                host_id=hb.host_id,
                previous=previous,
                capacity=hb.capacity,
            )
            # Jobs waiting for room may fit now.
            self.wake.set()

    @staticmethod
    def _tell_of_key(hb: HostHeartbeat, previous_key: str | None) -> None:
        """A host's key is trusted because only that host's NATS user may
        publish its heartbeat subject; a change is accepted (a lost or rotated
        key must not stop the host for good) and said loudly."""
        new = key_id(hb.public_key) if hb.public_key else None
        if hb.public_key is None:
            log.warning(
                "provisioner.host.no_public_key",
                host_id=hb.host_id,
                message="an agent older than sealing: it gets no new placements",
            )
        elif previous_key is None:
            log.info("provisioner.host.key_learned", host_id=hb.host_id, key_id=new)
        else:
            metrics.HOST_KEY_CHANGES.labels(hb.host_id).inc()
            log.warning(
                "provisioner.host.key_changed",
                host_id=hb.host_id,
                previous_key_id=key_id(previous_key),
                key_id=new,
                message="specs are sealed to the new key from now on",
            )

    async def _tell_of_oom_kills(self, conn: Connection, hb: HostHeartbeat) -> None:
        """An OOM kill the host reports for the first time → `assistant.restarted`
        (its user may have lost a turn). The event id is the kill's, so replicas
        and repeated heartbeats queue it once (the outbox keeps one per id)."""
        before = self.seen.get(hb.host_id)
        known = {c.name: c.oom_killed_at for c in before.containers} if before else {}
        for container in hb.containers:
            killed_at = container.oom_killed_at
            if killed_at is None or known.get(container.name) == killed_at:
                continue
            try:
                user_id = UUID(container.name.removeprefix(_CONTAINER_PREFIX))
            except ValueError:
                continue
            event = AssistantRestarted(
                event_id=provider_event_id(f"oom:{container.name}:{killed_at}"),
                user_id=user_id,
                killed_at=killed_at,
            )
            await outbox.add(conn, event, service=self.service)
            log.warning(
                "provisioner.assistant.oom_killed",
                host_id=hb.host_id,
                user_id=str(user_id),
                killed_at=killed_at,
            )


class Reconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        fleet: Fleet,
        provisioner: Provisioner,
        settings: ProvisionerSettings,
    ):
        self._pool = pool
        self._fleet = fleet
        self._provisioner = provisioner
        self._settings = settings
        # Since when (monotonic) this replica has seen the control plane work:
        # connected to NATS without a break and some host heard from. None: not
        # yet, or it just broke. A start counts as a break (while no replica
        # ran, heartbeats went unrecorded).
        self._steady_since: float | None = None
        self._reconnects = 0
        # Why host loss was last not judged (logged once per reason).
        self._fenced: str | None = None
        # A missing container was too new to judge: the next pass comes soon.
        self._recheck = False

    async def run(self, stop: asyncio.Event) -> None:
        drifted = self._fleet.drifted
        while not stop.is_set():
            drifted.clear()
            self._recheck = False
            try:
                await self.reconcile_once()
            except Exception as exc:  # the loop must outlive any one pass
                log.exception("provisioner.reconcile.failed", error=str(exc))
            interval = self._settings.reconcile_interval_seconds
            if self._recheck:
                interval = min(interval, _HEARTBEAT_GRACE.total_seconds())
            waits = [
                asyncio.create_task(stop.wait()),
                asyncio.create_task(drifted.wait()),
            ]
            await asyncio.wait(
                waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waits:
                waiter.cancel()

    async def reconcile_once(self) -> bool:
        """One pass, if no other replica is in one; returns whether it ran."""
        async with self._pool.acquire() as conn:
            if not await repository.try_reconcile_lock(conn):
                return False
            try:
                await self._hosts_lost(conn)
                await self._drift(conn)
                await self._heal(conn)
                await self._gauges(conn)
            finally:
                await repository.release_reconcile_lock(conn)
        return True

    async def _hosts_lost(self, conn: Connection) -> None:
        timeout = self._settings.host_heartbeat_timeout_seconds
        for host_id in await repository.mark_lost_hosts_offline(
            conn, timeout_seconds=timeout
        ):
            metrics.HEARTBEATS_MISSED.labels(host_id).inc()
            log.warning("provisioner.host.suspect", host_id=host_id, timeout_s=timeout)
        flagged = await repository.flag_assistants_on_lost_hosts(
            conn, timeout_seconds=timeout, flag=HOST_LOST_FLAG
        )
        if flagged:
            metrics.RECONCILE_ACTIONS.labels("flagged").inc(flagged)
        silent_for = timeout + self._settings.host_evacuate_after_seconds
        evacuate = await repository.assistants_to_evacuate(
            conn, silent_for_seconds=silent_for
        )
        fenced = await self._why_not_judge_loss(conn, silent_for=silent_for)
        if not evacuate:
            return
        if fenced is not None:
            if fenced != self._fenced:
                log.warning(
                    "provisioner.host_loss.fenced",
                    reason=fenced,
                    assistants=len(evacuate),
                )
            self._fenced = fenced
            metrics.RECONCILE_ACTIONS.labels("fenced").inc()
            return
        self._fenced = None
        for user_id in evacuate:
            log.warning(
                "provisioner.host.lost.assistant_replaced",
                user_id=str(user_id),
                silent_for_s=silent_for,
            )
            await self._reprovision(conn, user_id, reason=HOST_LOST_REASON)
            metrics.RECONCILE_ACTIONS.labels("evacuated").inc()

    async def _why_not_judge_loss(
        self, conn: Connection, *, silent_for: float
    ) -> str | None:
        """Why a long silence cannot be blamed on the hosts right now, if so.

        A host's silence counts only while the control plane demonstrably
        worked: this replica connected to NATS without a break and some host
        heard from. After any break the clock starts again, so a host must
        stay silent a whole `silent_for` of working control plane to be lost.
        """
        nc = self._provisioner.hosts.nc
        now = time.monotonic()
        reconnects = int(nc.stats.get("reconnects", 0))
        if reconnects != self._reconnects:
            # Heartbeats sent while we were away were lost, not missed.
            self._reconnects = reconnects
            self._steady_since = None
        if not nc.is_connected:
            self._steady_since = None
            return "provisioner_disconnected_from_nats"
        heard = await repository.hosts_heard_from(
            conn, within_seconds=self._settings.host_heartbeat_timeout_seconds
        )
        if heard == 0:
            # Every host silent at once: NATS, not the hosts.
            self._steady_since = None
            return "no_host_heard_from"
        if self._steady_since is None:
            self._steady_since = now
        if now - self._steady_since < silent_for:
            return "control_plane_recovering"
        return None

    async def _drift(self, conn: Connection) -> None:
        now = await conn.fetchval("SELECT now()")
        fresh = timedelta(seconds=self._settings.host_heartbeat_timeout_seconds)
        for host_id, seen in list(self._fleet.seen.items()):
            if now - seen.received_at > fresh:
                continue  # silent host: handled by the host-loss policy
            running = _present(seen.containers)
            for user_id, changed_at in await repository.ready_on_host(conn, host_id):
                name = f"{_CONTAINER_PREFIX}{user_id}"
                if name in running:
                    continue
                if changed_at > seen.received_at - _HEARTBEAT_GRACE:
                    # Maybe just placed: judged again after the grace.
                    self._recheck = True
                    continue
                log.warning(
                    "provisioner.reconcile.vanished",
                    host_id=host_id,
                    user_id=str(user_id),
                )
                await self._reprovision(conn, user_id, reason="reconcile")
                metrics.RECONCILE_ACTIONS.labels("recreated").inc()
            owners = await repository.owners_on_host(conn, host_id)
            strays = {
                owner: container.name
                for container in seen.containers
                if (owner := owner_of(container.name)) is not None
                and owner not in owners
            }
            changed = await repository.last_changes(conn, list(strays))
            placed = await repository.placements(conn, list(strays))
            for owner, name in strays.items():
                if owner in changed and (
                    changed[owner] > seen.received_at - _HEARTBEAT_GRACE
                ):
                    continue  # the heartbeat predates the last change
                log.warning(
                    "provisioner.reconcile.orphan", host_id=host_id, container=name
                )
                # A copy of a placed assistant goes only if older than its
                # placement (the host keeps a current one); one of an unplaced
                # assistant (ERROR, NONE, deleted) goes whatever it is.
                placed_on, current = placed.get(owner, (None, 0))
                up_to = None if placed_on is None else current - 1
                try:
                    await self._provisioner.hosts.remove(
                        host_id, name, generation=up_to
                    )
                except HostCommandFailed as exc:
                    log.warning(
                        "provisioner.reconcile.remove_failed",
                        host_id=host_id,
                        error=exc.detail,
                    )
                    continue
                metrics.RECONCILE_ACTIONS.labels("orphan_removed").inc()

    async def _heal(self, conn: Connection) -> None:
        """Provision again the assistants that failed only because a host or
        its container engine did not answer, once some host heart-beats (a
        host-agent beats only while its engine answers)."""
        if not await repository.any_live_host(
            conn, timeout_seconds=self._settings.host_heartbeat_timeout_seconds
        ):
            return
        for user_id in await repository.assistants_to_heal(
            conn,
            codes=list(HEALABLE_CODES),
            base_seconds=self._settings.assistant_heal_base_seconds,
        ):
            log.warning("provisioner.reconcile.healing", user_id=str(user_id))
            await self._reprovision(conn, user_id, reason="heal")
            metrics.RECONCILE_ACTIONS.labels("healed").inc()

    async def _reprovision(
        self, conn: Connection, user_id: UUID, *, reason: str
    ) -> None:
        async with conn.transaction():
            await self._provisioner.request_provision(
                conn, user_id, reason=reason, model=None
            )
        self._provisioner.wake.set()

    async def _gauges(self, conn: Connection) -> None:
        counts = await repository.assistant_counts(conn)
        for status in ("NONE", "PROVISIONING", "READY", "SUSPENDED", "ERROR"):
            metrics.ASSISTANTS.labels(status).set(counts.get(status, 0))
        hosts = await repository.host_rows(conn)
        for status in ("ACTIVE", "DRAINING", "OFFLINE"):
            metrics.HOSTS.labels(status).set(
                sum(1 for row in hosts if row["status"] == status)
            )
        for row in hosts:
            metrics.HOST_UP.labels(row["id"]).set(
                0 if row["status"] == "OFFLINE" else 1
            )
            metrics.HOST_CAPACITY.labels(row["id"]).set(row["capacity"])
            metrics.HOST_USED.labels(row["id"]).set(row["used"])
            metrics.HOST_ASSIGNED.labels(row["id"]).set(row["assigned"])


def _present(containers: tuple[ContainerState, ...]) -> set[str]:
    """Containers the host runs or keeps asleep (paused or stopped on purpose)."""
    return {c.name for c in containers if c.state in _PRESENT or c.sleeping is not None}
