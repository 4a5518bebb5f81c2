"""Which host and port an assistant gets, under concurrency and host trouble."""

from __future__ import annotations

import asyncio
from collections import Counter

from yourclaw_common.events import AssistantProvisionRequested
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually
from yourclaw_provisioner.app import set_host_status

from .conftest import assistant, hosts_known, provision, settings_from, wait_status


async def all_ready(pool, user_ids, *, timeout=30.0):
    async def probe():
        n = await pool.fetchval(
            "SELECT count(*) FROM assistants WHERE status = 'READY' "
            "AND user_id = ANY($1::uuid[])",
            user_ids,
        )
        return n == len(user_ids)

    await eventually(probe, timeout=timeout, message="all assistants READY")


class TestPlace:
    async def test_draining_host_takes_nothing_new(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        draining = await fake_host("h-draining")
        await start_provisioner()
        await eventually(
            lambda: clean_db.fetchval("SELECT 1 FROM hosts WHERE id = 'h-draining'")
        )
        await clean_db.execute("UPDATE hosts SET status = 'DRAINING'")
        active = await fake_host("h-active")
        await hosts_known(clean_db, "h-active")
        user_id = await make_user()

        row = await provision(js, clean_db, user_id)

        assert row["host_id"] == "h-active"
        assert draining.creates() == []
        assert len(active.creates()) == 1
        # Its heartbeats keep it DRAINING: an operator's decision.
        await draining.heartbeat()
        await active.heartbeat()
        await eventually(
            lambda: clean_db.fetchval(
                "SELECT last_heartbeat_at > now() - interval '1 second' FROM hosts "
                "WHERE id = 'h-draining'"
            )
        )
        assert (
            await clean_db.fetchval("SELECT status FROM hosts WHERE id = 'h-draining'")
            == "DRAINING"
        )

    async def test_silent_host_takes_nothing_new(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        silent = await fake_host("h-silent", heartbeats_paused=True)
        await start_provisioner()
        # It beat once, long ago.
        await silent.heartbeat()
        await eventually(
            lambda: clean_db.fetchval("SELECT 1 FROM hosts WHERE id = 'h-silent'")
        )
        await clean_db.execute(
            "UPDATE hosts SET last_heartbeat_at = now() - interval '1 hour'"
        )
        await fake_host("h-live")
        await hosts_known(clean_db, "h-live")
        user_id = await make_user()

        row = await provision(js, clean_db, user_id)

        assert row["host_id"] == "h-live"
        assert silent.creates() == []

    async def test_full_hosts_spill_over_until_none_has_room(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        small = await fake_host("h-small", capacity=1)
        big = await fake_host("h-big", capacity=2)
        await start_provisioner()
        users = [await make_user() for _ in range(3)]

        for user_id in users:
            await publish(js, AssistantProvisionRequested(user_id=user_id))
        await all_ready(clean_db, users)

        hosts = Counter([(await assistant(clean_db, u))["host_id"] for u in users])
        assert hosts == {"h-small": 1, "h-big": 2}
        assert len(small.creates()) == 1
        assert len(big.creates()) == 2

        late = await make_user()
        await publish(js, AssistantProvisionRequested(user_id=late))
        row = await wait_status(clean_db, late, "ERROR")
        assert "servers are full" in row["last_error"]
        assert len(small.creates()) + len(big.creates()) == 3

    async def test_ports_never_collide_under_concurrency(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1", capacity=100)
        await start_provisioner()
        await start_provisioner()
        await hosts_known(clean_db, "h1")
        users = [await make_user() for _ in range(40)]

        await asyncio.gather(
            *(publish(js, AssistantProvisionRequested(user_id=u)) for u in users)
        )
        await all_ready(clean_db, users)

        ports = await clean_db.fetch("SELECT port FROM assistants WHERE host_id = 'h1'")
        assert sorted(r["port"] for r in ports) == list(
            range(19100, 19100 + 40 * 120, 120)
        )
        assert len({s.port for s in host.creates()}) == 40


class TestSetHostStatus:
    async def test_drain_then_activate(self, provisioner_env, clean_db):
        await clean_db.execute(
            "INSERT INTO hosts (id, address, runtime) VALUES ('h-op', '10.0.0.5', 'process')"
        )
        settings = settings_from(provisioner_env)

        assert await set_host_status(settings, "h-op", "DRAINING")
        assert await clean_db.fetchval("SELECT status FROM hosts") == "DRAINING"
        assert await set_host_status(settings, "h-op", "ACTIVE")
        assert await clean_db.fetchval("SELECT status FROM hosts") == "ACTIVE"

    async def test_unknown_host_is_reported(self, provisioner_env, clean_db):
        settings = settings_from(provisioner_env)
        assert not await set_host_status(settings, "h-nope", "DRAINING")
