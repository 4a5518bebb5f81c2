"""Drift between heartbeats and the database, repaired both ways; host loss."""

from __future__ import annotations

import uuid

from yourclaw_common.events import (
    AssistantProvisionRequested,
    ContainerSpec,
    container_name,
)
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually

from .conftest import assistant, jobs_of, wait_status


class TestReconcile:
    async def test_vanished_container_is_recreated(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1")
        user_id = await make_user()
        await start_provisioner()
        await publish(js, AssistantProvisionRequested(user_id=user_id))
        await wait_status(clean_db, user_id, "READY")

        host.vanish(container_name(user_id))

        async def recreated():
            row = await assistant(clean_db, user_id)
            return row["status"] == "READY" and len(host.creates()) == 2

        await eventually(recreated)
        assert host.running() == {container_name(user_id)}
        assert [j["reason"] for j in await jobs_of(clean_db, user_id)] == [
            "created",
            "reconcile",
        ]
        first, second = host.creates()
        assert second.spec_hash == first.spec_hash

    async def test_container_nobody_owns_is_removed(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        host = await fake_host("h1")
        user_id = await make_user()
        await start_provisioner()
        await publish(js, AssistantProvisionRequested(user_id=user_id))
        await wait_status(clean_db, user_id, "READY")
        stranger = uuid.uuid4()
        host.add_stray(
            ContainerSpec(
                user_id=stranger,
                name=container_name(stranger),
                port=19999,
                spec_hash="x",
            )
        )

        async def removed():
            return container_name(stranger) not in host.containers

        await eventually(removed)
        assert [r.name for r in host.removes()] == [container_name(stranger)]
        assert host.running() == {container_name(user_id)}

    async def test_assistants_of_a_lost_host_are_replaced(
        self, start_provisioner, fake_host, make_user, js, clean_db
    ):
        lost = await fake_host("h-lost")
        user_id = await make_user()
        await start_provisioner(host_evacuate_after_seconds=0.5)
        await publish(js, AssistantProvisionRequested(user_id=user_id))
        first = await wait_status(clean_db, user_id, "READY")
        assert first["host_id"] == "h-lost"
        spare = await fake_host("h-spare")

        lost.partitioned = True

        async def moved():
            row = await assistant(clean_db, user_id)
            return row["status"] == "READY" and row["host_id"] == "h-spare"

        await eventually(moved)
        assert (
            await clean_db.fetchval("SELECT status FROM hosts WHERE id = 'h-lost'")
            == "OFFLINE"
        )
        assert spare.running() == {container_name(user_id)}
        row = await assistant(clean_db, user_id)
        assert row["last_error"] is None
        assert row["base_url"] == f"http://127.0.0.1:{row['port']}"
        assert [j["reason"] for j in await jobs_of(clean_db, user_id)] == [
            "created",
            "host_lost",
        ]

        # The lost host comes back: its copy has no owner any more.
        assert lost.running() == {container_name(user_id)}
        lost.partitioned = False

        async def cleaned():
            status = await clean_db.fetchval(
                "SELECT status FROM hosts WHERE id = 'h-lost'"
            )
            return status == "ACTIVE" and lost.running() == set()

        await eventually(cleaned)
        assert [r.name for r in lost.removes()] == [container_name(user_id)]
        assert spare.running() == {container_name(user_id)}
