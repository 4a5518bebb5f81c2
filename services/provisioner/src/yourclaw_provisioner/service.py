"""The assistant state machine and the work of one provisioning job.

Requests (events) only record intent: the assistant row changes at once (the
dashboard polls it) and a job is queued in the same transaction. Jobs do the
slow part — place, render, create on the host, wait for /healthz — in short
transactions around the host calls, each fenced by the job's lease, so a
replica that lost its lease can never overwrite the one that took over.

    assistant:  NONE ─► PROVISIONING ─► READY ◄──► SUSPENDED  (heartbeats: the
                 ▲          │  ▲          │         host put it to sleep or
                 │          ▼  └──────────┘         woke it; see lifecycle.py)
                 └───────  ERROR  (after PROVISION_MAX_ATTEMPTS; retry = new request)
                 (model change, keys, reconcile: READY or SUSPENDED ─► PROVISIONING)
    job:        PENDING ─► RUNNING ─► COMPLETED | FAILED  (RUNNING ─► PENDING: retry)
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from yourclaw_common import outbox
from yourclaw_common.crypto import SecretBox, SecretBoxError
from yourclaw_common.db import Connection
from yourclaw_common.events import (
    AssistantFailed,
    AssistantReady,
    ContainerInfo,
    ContainerSpec,
    container_name,
)
from yourclaw_common.logging import get_logger

from yourclaw_provisioner import metrics, repository
from yourclaw_provisioner.errors import (
    GatewayUnhealthy,
    HostCommandFailed,
    NoHostAvailable,
    NoLiveHost,
    ProvisioningError,
)
from yourclaw_provisioner.hosts import HostClient
from yourclaw_provisioner.render import GatewaySecrets, build_spec
from yourclaw_provisioner.repository import Assistant, FinishedJob, Job, Placement
from yourclaw_provisioner.settings import ProvisionerSettings

log = get_logger(__name__)

PROVISION = "PROVISION"
DEPROVISION = "DEPROVISION"
# Set on READY assistants whose host went silent (shown on the dashboard).
# The reason of the job that moves an assistant off a lost host.
HOST_LOST_REASON = "host_lost"
HOST_LOST_FLAG = (
    "The server your assistant runs on is not responding. If it does not come "
    "back soon, your assistant is moved to another one."
)
_PLACEMENT_ATTEMPTS = 5
# Ports of a host a create may find taken by a stray process before giving up.
_PORT_RETRIES = 5


class LeaseLost(Exception):
    """Another replica took the job over; this one stops without writing."""


@dataclass
class Provisioner:
    pool: asyncpg.Pool
    hosts: HostClient
    secrets: SecretBox
    settings: ProvisionerSettings
    replica: str
    # Set whenever a job is queued, so this replica's runner starts it at once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    # Requests: called inside the handler's transaction.

    async def request_provision(
        self, conn: Connection, user_id: UUID, *, reason: str, model: str | None
    ) -> None:
        await repository.set_provisioning(conn, user_id, model=model)
        await repository.enqueue_job(conn, user_id, kind=PROVISION, reason=reason)
        log.info("provisioner.requested", user_id=str(user_id), reason=reason)

    async def request_provision_if_absent(
        self, conn: Connection, user_id: UUID, *, reason: str
    ) -> bool:
        """Provision unless the assistant is READY (or asleep) or on its way
        (re-activation)."""
        current = await repository.get_assistant(conn, user_id, for_update=True)
        if current is not None and current.status in (
            "READY",
            "SUSPENDED",
            "PROVISIONING",
        ):
            return False
        await self.request_provision(conn, user_id, reason=reason, model=None)
        return True

    async def request_deprovision(
        self, conn: Connection, user_id: UUID, *, reason: str
    ) -> bool:
        """NONE at once (messaging stops using it); the job removes the container."""
        current = await repository.get_assistant(conn, user_id, for_update=True)
        if current is None:
            return False
        await repository.mark_none_until_removed(conn, user_id)
        await repository.enqueue_job(conn, user_id, kind=DEPROVISION, reason=reason)
        log.info(
            "provisioner.deprovision_requested", user_id=str(user_id), reason=reason
        )
        return True

    # Jobs.

    async def execute(self, job: Job) -> None:
        """One attempt of a job this replica holds; failures are retried or final."""
        started = time.perf_counter()
        try:
            if job.attempts > self.settings.provision_max_attempts:
                # A replica died during the last allowed attempt.
                raise ProvisioningError(
                    "attempts exhausted by replicas that stopped mid-job",
                    code="ATTEMPTS_EXHAUSTED",
                )
            if job.kind == DEPROVISION:
                outcome = await self._deprovision(job)
            else:
                outcome = await self._provision(job)
        except LeaseLost:
            outcome = "lost_lease"
            log.warning("provisioner.job.lease_lost", job_id=str(job.id))
        except Exception as exc:
            outcome = await self._failed(job, exc)
        metrics.JOBS.labels(job.kind, outcome).inc()
        metrics.JOB_SECONDS.labels(job.kind, outcome).observe(
            time.perf_counter() - started
        )

    async def _provision(self, job: Job) -> str:
        user_id = job.user_id
        async with self.pool.acquire() as conn:
            before = await repository.get_assistant(conn, user_id)
        # A move off a draining or lost host leaves a copy there to remove.
        previous_host = before.host_id if before else None

        async def prepare(
            conn: Connection, refused: set[tuple[str, int]]
        ) -> tuple[Assistant, Placement] | None:
            assistant = await repository.get_assistant(conn, user_id, for_update=True)
            if assistant is None:
                await self._complete(conn, job)
                return None
            return assistant, await self._place(conn, assistant, refused=refused)

        created = await self._create(
            user_id, prepare, job_id=str(job.id), attempt=job.attempts
        )
        if created is None:
            return "completed"
        placement, spec = created
        info = await self._wait_healthy(placement.host_id, spec.name)

        async with self.pool.acquire() as conn, conn.transaction():
            finished = await self._complete(conn, job)
            if finished.requeued:
                return "superseded"
            assistant_id = await repository.mark_ready(
                conn,
                user_id,
                base_url=f"http://{placement.address}:{placement.port}",
                container_id=info.name if info else spec.name,
                spec_hash=spec.spec_hash,
            )
            if assistant_id is not None:
                await outbox.add(
                    conn,
                    AssistantReady(user_id=user_id, assistant_id=assistant_id),
                    service=self.settings.service_name,
                )
        metrics.READY_SECONDS.observe(
            max(0.0, time.time() - finished.created_at.timestamp())
        )
        log.info(
            "provisioner.ready",
            job_id=str(job.id),
            user_id=str(user_id),
            host_id=placement.host_id,
            port=placement.port,
        )
        if previous_host and previous_host != placement.host_id:
            # Moved off a draining or lost host; reconcile catches what this
            # misses. Only superseded copies: the host keeps a newer one.
            await self._remove_quietly(
                previous_host, user_id, generation=placement.generation - 1
            )
        return "completed"

    async def _deprovision(self, job: Job) -> str:
        user_id = job.user_id
        async with self.pool.acquire() as conn:
            assistant = await repository.get_assistant(conn, user_id)
            live = bool(
                assistant
                and assistant.host_id
                and await repository.host_is_live(
                    conn,
                    assistant.host_id,
                    timeout_seconds=self.settings.host_heartbeat_timeout_seconds,
                )
            )
        if assistant and assistant.host_id and live:
            await self.hosts.remove(
                assistant.host_id,
                container_name(user_id),
                generation=assistant.generation,
            )
        elif assistant and assistant.host_id:
            # A silent host: when it comes back, reconcile removes what nobody owns.
            log.warning(
                "provisioner.deprovision.host_silent",
                user_id=str(user_id),
                host_id=assistant.host_id,
            )
        async with self.pool.acquire() as conn, conn.transaction():
            if (await self._complete(conn, job)).requeued:
                return "superseded"
            await repository.mark_none(conn, user_id)
        log.info("provisioner.deprovisioned", job_id=str(job.id), user_id=str(user_id))
        return "completed"

    async def _complete(self, conn: Connection, job: Job) -> FinishedJob:
        """COMPLETED, while this replica holds the job (LeaseLost otherwise).
        When a newer request (another model, a deprovision) was queued behind
        it, the loop is woken for that one."""
        finished = await repository.complete_job(conn, job.id, replica=self.replica)
        if finished is None:
            raise LeaseLost
        if finished.requeued:
            self.wake.set()
        return finished

    async def _failed(self, job: Job, exc: Exception) -> str:
        error = f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"[:1000]
        final = job.attempts >= self.settings.provision_max_attempts
        log.warning(
            "provisioner.job.attempt_failed",
            job_id=str(job.id),
            user_id=str(job.user_id),
            kind=job.kind,
            attempt=job.attempts,
            final=final,
            error=error,
        )
        if not final:
            delay = self.settings.provision_retry_base_seconds * 2 ** (job.attempts - 1)
            async with self.pool.acquire() as conn:
                taken = not await repository.retry_job(
                    conn,
                    job.id,
                    replica=self.replica,
                    error=error,
                    delay_seconds=delay,
                )
            if taken:
                return "lost_lease"
            self.wake.set()
            return "retried"

        # Moving off a lost host found nowhere to go: the assistant stays where
        # it is (its workspace is there, and the host may come back) instead of
        # ERROR and its gateway removed; the move is tried again later.
        stay = (
            job.kind == PROVISION
            and job.reason == HOST_LOST_REASON
            and isinstance(exc, NoHostAvailable | NoLiveHost)
        )
        if job.kind == PROVISION and not stay:
            # Clean up before the host and port are forgotten.
            async with self.pool.acquire() as conn:
                assistant = await repository.get_assistant(conn, job.user_id)
            if assistant and assistant.host_id:
                await self._remove_quietly(
                    assistant.host_id, job.user_id, generation=assistant.generation
                )
        reason = (
            exc.reason
            if isinstance(exc, ProvisioningError)
            else ProvisioningError.reason
        )
        async with self.pool.acquire() as conn, conn.transaction():
            finished = await repository.fail_job(
                conn, job.id, replica=self.replica, error=error
            )
            if finished is None:
                return "lost_lease"
            if finished.requeued:
                self.wake.set()
                return "superseded"
            if stay and await repository.keep_placement_on_silent_host(
                conn,
                job.user_id,
                flag=HOST_LOST_FLAG,
                timeout_seconds=self.settings.host_heartbeat_timeout_seconds,
            ):
                log.warning(
                    "provisioner.host_lost.kept",
                    job_id=str(job.id),
                    user_id=str(job.user_id),
                    error=error,
                )
                return "failed"
            if job.kind == PROVISION:
                assistant_id = await repository.mark_error(
                    conn, job.user_id, reason=reason
                )
                if assistant_id is not None:
                    await outbox.add(
                        conn,
                        AssistantFailed(
                            user_id=job.user_id,
                            assistant_id=assistant_id,
                            reason=reason,
                        ),
                        service=self.settings.service_name,
                    )
            else:
                # The container may survive on a silent host; reconcile removes it.
                await repository.mark_none(conn, job.user_id)
        log.error(
            "provisioner.job.failed",
            job_id=str(job.id),
            user_id=str(job.user_id),
            kind=job.kind,
            error=error,
        )
        return "failed"

    async def move_port(
        self, user_id: UUID, *, host_id: str, taken: int, generation: int
    ) -> Placement | None:
        """Re-create a placed assistant on another port of the same host (its
        workspace lives there), once another process took `taken` while it
        slept; returns once it is healthy there. None when the placement
        changed meanwhile (another wake moved it, a job took over)."""
        first = True

        async def prepare(
            conn: Connection, refused: set[tuple[str, int]]
        ) -> tuple[Assistant, Placement] | None:
            nonlocal first
            assistant = await repository.get_assistant(conn, user_id, for_update=True)
            if (
                assistant is None
                or assistant.status not in ("READY", "SUSPENDED")
                or assistant.host_id != host_id
                or (first and assistant.generation != generation)
            ):
                return None
            first = False
            address = await repository.host_address(conn, host_id)
            if address is None or assistant.port is None:
                return None
            if (host_id, assistant.port) not in refused:
                # A port a move gave it already: this one, before a reseal, or
                # an earlier one whose create failed.
                return assistant, Placement(
                    host_id, address, assistant.port, assistant.generation
                )
            placement = await self._assign_port(
                conn, user_id, host_id, address, refused
            )
            if placement is None:
                raise NoHostAvailable(
                    f"host {host_id} has no free port left", excluded=[host_id]
                )
            return assistant, placement

        created = await self._create(
            user_id, prepare, refused={(host_id, taken)}, moved_from=taken
        )
        if created is None:
            return None
        placement, spec = created
        info = await self._wait_healthy(placement.host_id, spec.name)
        async with self.pool.acquire() as conn:
            recorded = await repository.record_moved_container(
                conn,
                user_id,
                generation=placement.generation,
                base_url=f"http://{placement.address}:{placement.port}",
                container_id=info.name if info else spec.name,
                spec_hash=spec.spec_hash,
            )
        if not recorded:
            return None
        log.info(
            "provisioner.port_moved",
            user_id=str(user_id),
            host_id=host_id,
            taken=taken,
            port=placement.port,
            generation=placement.generation,
        )
        return placement

    async def _create(
        self,
        user_id: UUID,
        prepare: Callable[
            [Connection, set[tuple[str, int]]],
            Awaitable[tuple[Assistant, Placement] | None],
        ],
        *,
        refused: set[tuple[str, int]] | None = None,
        **context: object,
    ) -> tuple[Placement, ContainerSpec] | None:
        """Create the user's gateway where `prepare` places it (in a
        transaction holding the assistant's row; None: nothing to do).
        A port the host finds taken (a stray process) is `refused` and
        `prepare` asked again, up to _PORT_RETRIES ports; a spec sealed to a
        key the host no longer holds is sealed again once."""
        # Ports the host refused because something else listens there.
        refused = set(refused or ())
        resealed = False
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                prepared = await prepare(conn, refused)
                if prepared is None:
                    return None
                assistant, placement = prepared
                host_key = await repository.host_public_key(conn, placement.host_id)
                gateway_secrets = await self._gateway_secrets(conn, assistant)
            spec = build_spec(
                user_id=user_id,
                assistant_id=assistant.id,
                port=placement.port,
                model=assistant.model,
                secrets=gateway_secrets,
                llm_proxy_url=self.settings.llm_proxy_url,
                image=self.settings.openclaw_image,
                mcp_idle_ttl_seconds=self.settings.mcp_idle_ttl_seconds,
            )
            log.info(
                "provisioner.create",
                user_id=str(user_id),
                host_id=placement.host_id,
                port=placement.port,
                **context,
            )
            try:
                await self.hosts.create(
                    placement.host_id,
                    spec,
                    host_key=host_key,
                    generation=placement.generation,
                )
            except HostCommandFailed as exc:
                if exc.code == "SEALED_FOR_ANOTHER_KEY" and not resealed:
                    # The host's key changed (rotated, or lost with its disk)
                    # since the heartbeat read above: seal again to the newest.
                    log.warning(
                        "provisioner.create.resealing",
                        host_id=placement.host_id,
                        error=exc.detail,
                    )
                    resealed = True
                    continue
                if exc.code != "PORT_IN_USE" or len(refused) >= _PORT_RETRIES:
                    raise
                # Not one of ours on that port (a stray process): take the next.
                log.warning(
                    "provisioner.port_in_use",
                    host_id=placement.host_id,
                    port=placement.port,
                )
                refused.add((placement.host_id, placement.port))
                continue
            return placement, spec

    # Steps.

    async def _place(
        self,
        conn: Connection,
        assistant: Assistant,
        *,
        refused: set[tuple[str, int]] | None = None,
    ) -> Placement:
        """Keep a usable current host; else the least-filled live ACTIVE host.
        A port in `refused` (the host found it taken) is not chosen again."""
        timeout = self.settings.host_heartbeat_timeout_seconds
        refused = refused or set()
        if assistant.host_id and assistant.port:
            host_id = assistant.host_id
            address = await repository.host_if_usable(
                conn, host_id, timeout_seconds=timeout
            )
            if address is not None:
                if (host_id, assistant.port) not in refused:
                    return Placement(
                        host_id, address, assistant.port, assistant.generation
                    )
                moved = await self._assign_port(
                    conn, assistant.user_id, host_id, address, refused
                )
                if moved is not None:
                    return moved
        excluded: list[str] = []
        for _ in range(_PLACEMENT_ATTEMPTS):
            candidate = await repository.lock_candidate_host(
                conn,
                timeout_seconds=timeout,
                exclude=excluded,
                overcommit=self.settings.assistant_sleep_overcommit,
            )
            if candidate is None:
                break
            host_id, address = candidate
            placement = None
            if await repository.host_has_room(
                conn, host_id, overcommit=self.settings.assistant_sleep_overcommit
            ):
                placement = await self._assign_port(
                    conn, assistant.user_id, host_id, address, refused
                )
            if placement is None:
                excluded.append(host_id)
                continue
            return placement
        if not excluded and not await repository.any_live_host(
            conn, timeout_seconds=timeout
        ):
            # Nothing heart-beats: unreachable (or none yet), which is not full.
            raise NoLiveHost("no host is heart-beating")
        raise NoHostAvailable("no live host with room", excluded=excluded)

    async def _assign_port(
        self,
        conn: Connection,
        user_id: UUID,
        host_id: str,
        address: str,
        refused: set[tuple[str, int]],
    ) -> Placement | None:
        """Hold the host's lowest free port for the user (None: the host is full)."""
        port = await repository.free_port(
            conn,
            host_id,
            start=self.settings.host_port_range_start,
            end=self.settings.host_port_range_end,
            stride=self.settings.host_port_stride,
            avoid=[p for h, p in refused if h == host_id],
        )
        if port is None:
            return None
        generation = await repository.assign_placement(
            conn,
            user_id,
            host_id=host_id,
            port=port,
            base_url=f"http://{address}:{port}",
        )
        return Placement(host_id, address, port, generation)

    async def _gateway_secrets(
        self, conn: Connection, assistant: Assistant
    ) -> GatewaySecrets:
        """The assistant's token, notify secret and LLM proxy credential; minted
        on first use and kept across re-creates, so messaging's stored token
        stays valid and an unchanged assistant renders the same spec. The proxy
        credential is revoked on deprovision, so the next provision mints a
        new one; only its sha256 goes where the proxy reads it."""
        owner = str(assistant.user_id)
        token = self._open(assistant.gateway_token_encrypted, owner)
        notify = self._open(assistant.notify_secret_encrypted, owner)
        if token is None or notify is None:
            token = token or secrets.token_urlsafe(32)
            notify = notify or secrets.token_urlsafe(32)
            await repository.store_secrets(
                conn,
                assistant.user_id,
                gateway_token_encrypted=self.secrets.encrypt(token, owner=owner),
                notify_secret_encrypted=self.secrets.encrypt(notify, owner=owner),
            )
        proxy_token = self._open(assistant.proxy_token_encrypted, owner)
        if proxy_token is None:
            proxy_token = "ycp_" + secrets.token_urlsafe(32)
            await repository.store_proxy_token(
                conn,
                assistant.user_id,
                proxy_token_encrypted=self.secrets.encrypt(proxy_token, owner=owner),
            )
        await repository.put_proxy_credential(
            conn,
            assistant.id,
            assistant.user_id,
            token_sha256=hashlib.sha256(proxy_token.encode()).hexdigest(),
        )
        return GatewaySecrets(
            gateway_token=token, notify_secret=notify, proxy_token=proxy_token
        )

    def _open(self, ciphertext: str | None, owner: str) -> str | None:
        if not ciphertext:
            return None
        try:
            return self.secrets.decrypt(ciphertext, owner=owner)
        except SecretBoxError as exc:
            # Unreadable (a key rotation gone wrong): a fresh one replaces it.
            log.error("provisioner.secret_unreadable", user_id=owner, error=exc.detail)
            return None

    async def _wait_healthy(self, host_id: str, name: str) -> ContainerInfo | None:
        """Wait for /healthz: the host probes it and answers as soon as it does
        (`wait_seconds`); a short backoff covers answers that come back early."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.gateway_health_timeout_seconds
        delay = 0.05
        last = "no answer"
        while True:
            remaining = deadline - loop.time()
            try:
                info = await self.hosts.health(
                    host_id, name, wait_seconds=round(max(0.0, min(remaining, 30.0)), 3)
                )
            except HostCommandFailed as exc:
                info, last = None, exc.detail
            if info is not None:
                if info.healthy:
                    return info
                last = f"state {info.state}"
                if info.state in ("exited", "missing"):
                    raise GatewayUnhealthy(
                        f"gateway {name} is {info.state} on host {host_id}",
                        host_id=host_id,
                    )
            if loop.time() + delay > deadline:
                raise GatewayUnhealthy(
                    f"gateway {name} on host {host_id} not healthy within "
                    f"{self.settings.gateway_health_timeout_seconds:g}s ({last})",
                    host_id=host_id,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _remove_quietly(
        self, host_id: str, user_id: UUID, *, generation: int | None = None
    ) -> None:
        try:
            await self.hosts.remove(
                host_id, container_name(user_id), generation=generation
            )
        except HostCommandFailed as exc:
            log.warning(
                "provisioner.remove_failed",
                host_id=host_id,
                user_id=str(user_id),
                error=exc.detail,
            )
