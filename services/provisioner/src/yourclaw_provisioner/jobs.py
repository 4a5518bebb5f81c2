"""The job runner: claim due jobs, run them concurrently, keep their leases.

It wakes when this replica queues a job, when Postgres NOTIFYs that any replica
did (`provisioning_jobs` channel), and otherwise when the next job is due, so a
request starts within milliseconds instead of a polling period.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from yourclaw_common.logging import get_logger

from yourclaw_provisioner import repository
from yourclaw_provisioner.repository import Job
from yourclaw_provisioner.service import Provisioner
from yourclaw_provisioner.settings import ProvisionerSettings

log = get_logger(__name__)

_CHANNEL = "provisioning_jobs"
_DRAIN_SECONDS = 10.0
# What PostgreSQL being down or restarting raises here, besides its own errors:
# a refused connection, or a connection (or the pool) found closed.
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class JobRunner:
    def __init__(
        self,
        pool: asyncpg.Pool,
        provisioner: Provisioner,
        settings: ProvisionerSettings,
    ):
        self._pool = pool
        self._provisioner = provisioner
        self._settings = settings
        self._replica = provisioner.replica
        self._wake = provisioner.wake
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Run jobs until `stop` is set, then finish the ones in flight."""
        listener = asyncio.create_task(self._listen(stop))
        try:
            while not stop.is_set():
                claimed = await self._claim()
                if (
                    claimed
                    and len(self._running) < self._settings.provision_concurrency
                ):
                    continue  # there may be more due right now
                await self._sleep(stop)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._drain()

    async def _drain(self) -> None:
        """Let jobs in flight finish for a while; the rest lose their lease to
        another replica (cancelled here, taken over once the lease runs out)."""
        if not self._running:
            return
        running = set(self._running)
        _, late = await asyncio.wait(running, timeout=_DRAIN_SECONDS)
        for task in late:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _claim(self) -> int:
        free = self._settings.provision_concurrency - len(self._running)
        if free <= 0:
            return 0
        self._wake.clear()
        try:
            async with self._pool.acquire() as conn:
                jobs = await repository.claim_jobs(
                    conn,
                    replica=self._replica,
                    limit=free,
                    lease_seconds=self._settings.provision_job_lease_seconds,
                )
        except _DB_ERRORS as exc:
            log.warning("provisioner.claim_failed", error=str(exc))
            return 0
        for job in jobs:
            task = asyncio.create_task(self._run_one(job))
            self._running.add(task)
            task.add_done_callback(self._done)
        return len(jobs)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        # A slot is free: claim again without waiting for the poll.
        self._wake.set()

    async def _sleep(self, stop: asyncio.Event) -> None:
        timeout = self._settings.provision_poll_interval_seconds
        if len(self._running) < self._settings.provision_concurrency:
            try:
                async with self._pool.acquire() as conn:
                    due_in = await repository.seconds_until_next_job(conn)
            except _DB_ERRORS:
                due_in = None
            if due_in is not None:
                timeout = min(timeout, due_in + 0.01)
        waiters = [
            asyncio.create_task(self._wake.wait()),
            asyncio.create_task(stop.wait()),
        ]
        try:
            await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _run_one(self, job: Job) -> None:
        work = asyncio.create_task(self._provisioner.execute(job))
        keeper = asyncio.create_task(self._keep_lease(job, work))
        try:
            await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                work.cancel()  # shutdown: stop the work too
                raise
            # Otherwise the keeper cancelled the work: the lease was lost.
        finally:
            keeper.cancel()

    async def _keep_lease(self, job: Job, work: asyncio.Task[None]) -> None:
        """Renew the lease at a third of its length; stop the work if it is lost."""
        lease = self._settings.provision_job_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                async with self._pool.acquire() as conn:
                    held = await repository.renew_lease(
                        conn, job.id, replica=self._replica, lease_seconds=lease
                    )
            except _DB_ERRORS as exc:
                log.warning("provisioner.lease_renew_failed", error=str(exc))
                continue
            if not held:
                log.warning("provisioner.job.lease_lost", job_id=str(job.id))
                work.cancel()
                return

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake on NOTIFY from any replica. A lost connection (PostgreSQL
        restarted) is replaced; the poll covers the gap."""

        def on_notify(*_: Any) -> None:
            self._wake.set()

        while not stop.is_set():
            lost = asyncio.Event()

            def on_lost(_conn: object, lost: asyncio.Event = lost) -> None:
                lost.set()

            try:
                async with self._pool.acquire() as conn:
                    conn.add_termination_listener(on_lost)
                    try:
                        await conn.add_listener(_CHANNEL, on_notify)
                        # Jobs queued while it was not listening are due now.
                        self._wake.set()
                        await _first_of(stop, lost)
                    finally:
                        # Also when cancelled (shutdown cancels this task): a
                        # connection given back with a listener on it warns,
                        # and where warnings are errors it is never given back
                        # and the pool cannot close. remove_listener forgets
                        # the callback before it awaits its UNLISTEN.
                        conn.remove_termination_listener(on_lost)
                        if not lost.is_set():
                            with contextlib.suppress(*_DB_ERRORS):
                                await conn.remove_listener(_CHANNEL, on_notify)
            except _DB_ERRORS as exc:
                log.warning("provisioner.listen_failed", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1)
                continue
            if lost.is_set():
                log.warning("provisioner.listen_lost")


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
