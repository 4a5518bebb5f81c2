"""Several replicas: no job runs twice, a dead replica's job is finished by another."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from types import SimpleNamespace

import pytest
from yourclaw_common.db import create_pool
from yourclaw_common.events import AssistantProvisionRequested, container_name
from yourclaw_common.nats import publish
from yourclaw_common.testing import cuttable, eventually
from yourclaw_provisioner.app import run
from yourclaw_provisioner.jobs import JobRunner

from .conftest import jobs_of, settings_from, wait_status
from .test_placement import all_ready


class TestReplicas:
    async def test_two_provisioners_never_double_provision(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1", capacity=100)
        await start_provisioner()
        await start_provisioner()
        users = [await make_user() for _ in range(30)]

        await asyncio.gather(
            *(publish(js, AssistantProvisionRequested(user_id=u)) for u in users)
        )
        await all_ready(clean_db, users)

        creates = Counter(spec.name for spec in host.creates())
        assert creates == {container_name(u): 1 for u in users}
        workers = await clean_db.fetch("SELECT status, attempts FROM provisioning_jobs")
        assert {(r["status"], r["attempts"]) for r in workers} == {("COMPLETED", 1)}

    @pytest.mark.slow
    async def test_killed_provisioner_job_is_finished_by_another(
        self, provisioner_env, start_provisioner, fake_host, make_user, js, clean_db
    ):
        hold = asyncio.Event()
        host = await fake_host("h1", hold_creates=hold)
        user_id = await make_user()
        env = {**os.environ, **provisioner_env, "PROVISION_JOB_LEASE_SECONDS": "2"}
        victim = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "yourclaw_provisioner",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            # The victim is up once it has recorded a heartbeat of the host.
            await eventually(
                lambda: clean_db.fetchval("SELECT 1 FROM hosts WHERE id = 'h1'"),
                timeout=30,
            )
            await publish(js, AssistantProvisionRequested(user_id=user_id))
            # The victim has sent create and waits for the host's answer.
            await asyncio.wait_for(host.create_received.wait(), timeout=30)
            (job,) = await jobs_of(clean_db, user_id)
            assert job["status"] == "RUNNING"
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
        finally:
            if victim.returncode is None:
                victim.kill()
                await victim.wait()
        hold.set()

        await start_provisioner(provision_job_lease_seconds=2)
        await wait_status(clean_db, user_id, "READY")

        (job,) = await jobs_of(clean_db, user_id)
        assert (job["status"], job["attempts"]) == ("COMPLETED", 2)
        assert job["locked_by"] is None
        assert host.running() == {container_name(user_id)}

        async def single_container():
            return len(host.containers) == 1

        assert await eventually(single_container)


class TestShutdown:
    async def test_stopping_after_postgres_restarted_does_not_raise(
        self, provisioner_env, fake_host, clean_db, nats_client
    ):
        # The job runner's LISTEN connection died with the restart; stopping
        # used to raise from it and end the process with a traceback.
        dsn = provisioner_env["DATABASE_URL"]
        async with cuttable(dsn) as postgres:
            stop = asyncio.Event()
            task = asyncio.create_task(
                run(
                    settings_from(provisioner_env, database_url=postgres.url(dsn)), stop
                )
            )
            await asyncio.sleep(1)
            await postgres.cut()
            await asyncio.sleep(1)
            await postgres.start()
            await asyncio.sleep(1.5)
            assert not task.done()

            stop.set()
            await asyncio.wait_for(task, 30)

    async def test_a_cancelled_runner_gives_its_listening_connection_back(
        self, provisioner_env, clean_db
    ):
        # A sibling task's failure cancels the runner while it listens. Its
        # connection used to go back to the pool still listening: asyncpg
        # warns, and where warnings are errors the connection never went back
        # and closing the pool hung until its timeout.
        pool = await create_pool(provisioner_env["DATABASE_URL"], max_size=3)
        try:
            provisioner = SimpleNamespace(replica="r-cancelled", wake=asyncio.Event())
            runner = JobRunner(pool, provisioner, settings_from(provisioner_env))
            task = asyncio.create_task(runner.run(asyncio.Event()))
            await eventually(
                lambda: clean_db.fetchval(
                    "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
                    " AND datname = current_database()"
                ),
                timeout=30,
            )
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            assert pool.get_idle_size() == pool.get_size()
        finally:
            await asyncio.wait_for(pool.close(), timeout=30)
