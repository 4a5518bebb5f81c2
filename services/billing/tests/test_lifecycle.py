"""The whole loop over loopback: billing ↔ devsim's Stripe (stripe-python), the
hosted checkout page's Pay button → Stripe-signed webhooks → a real gateway-api →
JetStream → billing → subscriptions row + subscription.* events."""

from __future__ import annotations

from yourclaw_common.events import (
    STRIPE_EVENT_SUBJECTS,
    Stream,
    Subject,
    SubscriptionActivated,
)
from yourclaw_common.testing import eventually

from .conftest import APP_URL, outbox_subjects, subscription

ACTIVATED = Subject.SUBSCRIPTION_ACTIVATED.value
PAST_DUE = Subject.SUBSCRIPTION_PAST_DUE.value
CANCELED = Subject.SUBSCRIPTION_CANCELED.value


async def status_is(pool, user_id, status):
    row = await subscription(pool, user_id)
    return row if row is not None and row["status"] == status else None


async def all_applied(stripe_sim, pool) -> bool:
    """Every delivered event of a handled type is in stripe_events."""
    deliveries = (
        await stripe_sim.get("/_devsim/stripe/webhooks", params={"idle": "true"})
    ).json()["deliveries"]
    assert all(d["delivered"] for d in deliveries), deliveries
    handled = {d["event_id"] for d in deliveries if d["type"] in STRIPE_EVENT_SUBJECTS}
    recorded = {r["id"] for r in await pool.fetch("SELECT id FROM stripe_events")}
    return handled <= recorded


class TestSubscriptionLifecycle:
    async def test_pay_fail_renew_cancel_through_the_stand_in(
        self,
        start_billing,
        gateway_webhook,
        stripe_sim,
        make_user,
        ask,
        clean_db,
        js,
    ):
        user_id = await make_user("grace@example.com")
        await start_billing()

        reply = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})
        assert reply.ok, reply
        page = await stripe_sim.get(reply.url.removeprefix(str(stripe_sim.base_url)))
        assert "Pay $20.00" in page.text
        session_id = reply.url.rsplit("/", 1)[1]

        paid = await stripe_sim.post(f"/_devsim/stripe/checkout/{session_id}/pay")

        assert paid.status_code == 303
        assert paid.headers["location"] == (
            f"{APP_URL}/dashboard?session_id={session_id}"
        )
        row = await eventually(
            lambda: status_is(clean_db, user_id, "ACTIVE"), timeout=30
        )
        assert row["stripe_status"] == "active"
        assert row["current_period_end"] is not None
        sub_id = row["stripe_subscription_id"]
        # The relay publishes the domain event after the commit.
        msg = await eventually(
            lambda: _last(js, Stream.SUBSCRIPTIONS, ACTIVATED), timeout=10
        )
        activated = SubscriptionActivated.model_validate_json(msg.data)
        assert (activated.user_id, activated.stripe_subscription_id) == (
            user_id,
            sub_id,
        )
        again = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})
        assert (again.ok, again.code) == (False, "ALREADY_SUBSCRIBED")

        failed = await stripe_sim.post(
            f"/_devsim/stripe/subscriptions/{sub_id}/fail_renewal"
        )
        assert failed.status_code == 200
        row = await eventually(
            lambda: status_is(clean_db, user_id, "PAST_DUE"), timeout=30
        )
        assert row["past_due_since"] is not None

        await stripe_sim.post(f"/_devsim/stripe/subscriptions/{sub_id}/renew")
        row = await eventually(
            lambda: status_is(clean_db, user_id, "ACTIVE"), timeout=30
        )
        assert row["past_due_since"] is None

        portal = await ask(Subject.BILLING_PORTAL_CREATE, {"user_id": user_id})
        portal_id = portal.url.rsplit("/", 1)[1]
        portal_page = await stripe_sim.get(f"/_devsim/stripe/portal/{portal_id}")
        assert "Cancel subscription" in portal_page.text
        canceled = await stripe_sim.post(
            f"/_devsim/stripe/subscriptions/{sub_id}/cancel",
            params={"portal": portal_id},
        )
        assert canceled.status_code == 303

        row = await eventually(
            lambda: status_is(clean_db, user_id, "CANCELED"), timeout=30
        )
        assert row["stripe_status"] == "canceled"
        await eventually(lambda: all_applied(stripe_sim, clean_db), timeout=30)
        # One domain event per transition, none for events that changed nothing.
        assert await outbox_subjects(clean_db, user_id) == [
            ACTIVATED,
            PAST_DUE,
            ACTIVATED,
            CANCELED,
        ]


async def _last(js, stream, subject):
    try:
        return await js.get_last_msg(stream, subject)
    except Exception:
        return None
