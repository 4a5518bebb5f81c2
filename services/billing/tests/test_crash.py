"""Billing killed (SIGKILL) after its Stripe calls and before its commit: the
retry creates no second customer, session or subscription."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import pytest
from yourclaw_common.events import Subject
from yourclaw_common.testing import eventually

from .conftest import outbox_subjects, subscription, wait_for_responders

pytestmark = pytest.mark.slow


async def stripe_list(stripe_sim, stripe_auth, path: str, **params) -> list[dict]:
    response = await stripe_sim.get(
        path, params={"limit": 100, **params}, headers=stripe_auth
    )
    response.raise_for_status()
    return response.json()["data"]


async def blocked_insert(pool) -> bool:
    """billing waits to insert its customer row: it is past its Stripe calls."""
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'INSERT INTO billing_customers%'"
        )
    )


class TestCrashBetweenStripeAndCommit:
    async def test_restart_reuses_the_customer_and_the_session(
        self,
        billing_env,
        start_billing,
        gateway_webhook,
        stripe_sim,
        stripe_auth,
        make_user,
        ask,
        nats_client,
        clean_db,
        tmp_path,
    ):
        user_id = await make_user("crash@example.com")
        log_file = (tmp_path / "billing.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "yourclaw_billing",
            env={**os.environ, **billing_env},
            stdout=log_file,
            stderr=log_file,
        )
        try:
            await wait_for_responders(nats_client)
            async with clean_db.acquire() as locker, locker.transaction():
                # Reads go on; billing's INSERT waits: it will die holding Stripe's
                # answers that it never committed.
                await locker.execute("LOCK TABLE billing_customers IN SHARE MODE")
                pending = asyncio.create_task(
                    ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})
                )
                await eventually(lambda: blocked_insert(clean_db), timeout=20)
                proc.kill()
                await proc.wait()
            # It died without answering.
            assert not pending.done()
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            log_file.close()

        (customer,) = await stripe_list(stripe_sim, stripe_auth, "/v1/customers")
        (session,) = await stripe_list(
            stripe_sim, stripe_auth, "/v1/checkout/sessions", customer=customer["id"]
        )
        assert await clean_db.fetchval("SELECT count(*) FROM billing_customers") == 0

        await start_billing()
        retried = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})

        assert retried.ok, retried
        assert retried.url == session["url"]
        assert [
            c["id"] for c in await stripe_list(stripe_sim, stripe_auth, "/v1/customers")
        ] == [customer["id"]]
        assert (
            await clean_db.fetchval(
                "SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                user_id,
            )
            == customer["id"]
        )

        # The buyer pays (twice: a double click) and gets one subscription.
        for _ in range(2):
            paid = await stripe_sim.post(
                f"/_devsim/stripe/checkout/{session['id']}/pay"
            )
            assert paid.status_code == 303
        row = await eventually(lambda: subscription(clean_db, user_id), timeout=30)
        await eventually(lambda: _status(clean_db, user_id, "ACTIVE"), timeout=30)
        subs = await stripe_list(
            stripe_sim,
            stripe_auth,
            "/v1/subscriptions",
            customer=customer["id"],
            status="all",
        )
        assert [s["id"] for s in subs] == [row["stripe_subscription_id"]]
        assert await outbox_subjects(clean_db, user_id) == [
            Subject.SUBSCRIPTION_ACTIVATED.value
        ]


async def _status(pool, user_id, status) -> bool:
    row = await subscription(pool, user_id)
    return row is not None and row["status"] == status
