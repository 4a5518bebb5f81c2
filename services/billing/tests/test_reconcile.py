"""Webhooks that never arrived: the reconcile command lists recent events from the
Stripe API and feeds those missing from stripe_events."""

from __future__ import annotations

import pytest
from yourclaw_billing.app import cli, run_reconcile
from yourclaw_billing.settings import BillingSettings
from yourclaw_common.events import STRIPE_EVENT_SUBJECTS, Subject
from yourclaw_common.testing import eventually
from yourclaw_devkit.serving import settings_of

from .conftest import outbox_subjects, subscription


async def active(pool, user_id) -> bool:
    row = await subscription(pool, user_id)
    return row is not None and row["status"] == "ACTIVE"


class TestReconcile:
    async def test_feeds_missed_events_once(
        self, billing_env, start_billing, stripe_sim, make_user, ask, clean_db, js
    ):
        user_id = await make_user()
        await start_billing()
        # Webhooks go nowhere (the stripe_sim fixture): the gateway was down.
        reply = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})
        session_id = reply.url.rsplit("/", 1)[1]
        await stripe_sim.post(f"/_devsim/stripe/checkout/{session_id}/pay")
        deliveries = (
            await stripe_sim.get("/_devsim/stripe/webhooks", params={"idle": "true"})
        ).json()["deliveries"]
        assert deliveries
        assert not any(d["delivered"] for d in deliveries)
        assert await subscription(clean_db, user_id) is None

        result = await run_reconcile(settings_of(BillingSettings, billing_env), days=1)

        missed = [
            d["event_id"] for d in deliveries if d["type"] in STRIPE_EVENT_SUBJECTS
        ]
        assert sorted(result.fed) == sorted(missed)
        assert len(missed) == 4  # checkout, subscription, invoice.paid, …succeeded
        await eventually(lambda: active(clean_db, user_id), timeout=30)
        await eventually(lambda: _all_recorded(clean_db, missed), timeout=30)
        assert await outbox_subjects(clean_db, user_id) == [
            Subject.SUBSCRIPTION_ACTIVATED.value
        ]

        again = await run_reconcile(settings_of(BillingSettings, billing_env), days=1)

        assert again.fed == []
        assert again.listed == result.listed


async def _all_recorded(pool, event_ids) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM stripe_events WHERE id = ANY($1::text[])", event_ids
    )
    return count == len(event_ids)


class TestCli:
    @pytest.mark.parametrize("days", ["0", "31", "-1"])
    def test_reconcile_window_is_bounded(self, days, capsys):
        with pytest.raises(SystemExit) as exited:
            cli(["reconcile", "--days", days])
        assert exited.value.code == 2
        assert "--days" in capsys.readouterr().err
