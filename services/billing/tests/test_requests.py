"""billing.checkout.create / billing.portal.create over real NATS, against the
devsim Stripe stand-in through stripe-python."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from yourclaw_common.embedded import free_port
from yourclaw_common.events import Subject

from .conftest import APP_URL


async def customers(stripe_sim, stripe_auth, user_id) -> list[dict]:
    response = await stripe_sim.get(
        "/v1/customers", params={"limit": 100}, headers=stripe_auth
    )
    return [
        c
        for c in response.json()["data"]
        if c["metadata"].get("user_id") == str(user_id)
    ]


async def set_subscription(pool, user_id, status: str, sub_id: str = "sub_x") -> None:
    await pool.execute(
        "INSERT INTO subscriptions (user_id, stripe_customer_id, stripe_subscription_id,"
        " status, stripe_status, stripe_updated_at) VALUES ($1, 'cus_x', $2, $3, $4, $5)",
        user_id,
        sub_id,
        status,
        status.lower(),
        datetime.now(UTC),
    )


class TestCreateCheckout:
    async def test_returns_a_subscription_checkout_for_the_user(
        self, start_billing, stripe_sim, stripe_auth, make_user, ask, clean_db
    ):
        user_id = await make_user("ada@example.com")
        await start_billing()

        reply = await ask(
            Subject.BILLING_CHECKOUT_CREATE,
            {"user_id": user_id, "email": "ada@example.com"},
        )

        assert reply.ok, reply
        session_id = reply.url.rsplit("/", 1)[1]
        session = (
            await stripe_sim.get(
                f"/v1/checkout/sessions/{session_id}", headers=stripe_auth
            )
        ).json()
        assert session["mode"] == "subscription"
        assert session["client_reference_id"] == str(user_id)
        assert session["success_url"] == (
            f"{APP_URL}/dashboard?session_id={{CHECKOUT_SESSION_ID}}"
        )
        assert session["cancel_url"] == f"{APP_URL}/dashboard"
        (customer,) = await customers(stripe_sim, stripe_auth, user_id)
        assert customer["email"] == "ada@example.com"
        assert session["customer"] == customer["id"]
        assert (
            await clean_db.fetchval(
                "SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                user_id,
            )
            == customer["id"]
        )

    async def test_repeated_requests_reuse_one_customer_and_one_session(
        self, start_billing, stripe_sim, stripe_auth, make_user, ask
    ):
        user_id = await make_user()
        await start_billing()

        replies = [
            await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})
            for _ in range(3)
        ]

        assert all(r.ok for r in replies)
        assert len({r.url for r in replies}) == 1
        assert len(await customers(stripe_sim, stripe_auth, user_id)) == 1

    async def test_after_a_cancellation_a_new_session_reuses_the_customer(
        self, start_billing, stripe_sim, stripe_auth, make_user, ask, clean_db
    ):
        user_id = await make_user()
        await start_billing()
        first = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})
        await set_subscription(clean_db, user_id, "CANCELED", sub_id="sub_old")

        second = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})

        assert first.ok
        assert second.ok
        assert first.url != second.url
        assert len(await customers(stripe_sim, stripe_auth, user_id)) == 1

    async def test_an_active_subscriber_is_told_already_subscribed(
        self, start_billing, stripe_sim, stripe_auth, make_user, ask, clean_db
    ):
        user_id = await make_user()
        await set_subscription(clean_db, user_id, "ACTIVE")
        await start_billing()

        reply = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})

        assert not reply.ok
        assert reply.code == "ALREADY_SUBSCRIBED"
        assert reply.url is None
        assert await customers(stripe_sim, stripe_auth, user_id) == []

    async def test_invalid_request_is_refused(self, start_billing, ask, stripe_sim):
        await start_billing()

        reply = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": "not-a-uuid"})

        assert (reply.ok, reply.code) == (False, "INVALID_REQUEST")

    async def test_unknown_user_is_refused(self, start_billing, ask, stripe_sim):
        await start_billing()

        reply = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": uuid.uuid4()})

        assert (reply.ok, reply.code) == (False, "INVALID_REQUEST")

    async def test_stripe_down_is_a_clear_unavailable_reply(
        self, start_billing, make_user, ask, stripe_sim
    ):
        user_id = await make_user()
        await start_billing(stripe_api_base=f"http://127.0.0.1:{free_port()}")

        reply = await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})

        assert (reply.ok, reply.code) == (False, "STRIPE_UNAVAILABLE")
        assert "sk_" not in (reply.detail or "")


class TestCreatePortal:
    async def test_opens_the_callers_own_customer(
        self, start_billing, stripe_sim, stripe_auth, make_user, ask
    ):
        user_id, other = await make_user(), await make_user()
        await start_billing()
        await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": user_id})
        await ask(Subject.BILLING_CHECKOUT_CREATE, {"user_id": other})

        reply = await ask(Subject.BILLING_PORTAL_CREATE, {"user_id": user_id})

        assert reply.ok, reply
        page = await stripe_sim.get(reply.url.removeprefix(str(stripe_sim.base_url)))
        assert page.status_code == 200
        (mine,) = await customers(stripe_sim, stripe_auth, user_id)
        (theirs,) = await customers(stripe_sim, stripe_auth, other)
        assert reply.url.rsplit("/", 1)[1].startswith("bps_")
        # The portal session is for the caller's customer, nobody else's.
        assert f"<span id='customer'>{mine['id']}</span>" in page.text
        assert theirs["id"] not in page.text
        assert f"{APP_URL}/dashboard" in page.text

    async def test_no_customer_yet(self, start_billing, make_user, ask, stripe_sim):
        user_id = await make_user()
        await start_billing()

        reply = await ask(Subject.BILLING_PORTAL_CREATE, {"user_id": user_id})

        assert (reply.ok, reply.code) == (False, "NO_CUSTOMER")

    async def test_a_customer_missing_at_stripe_is_refused_not_retry_later(
        self, start_billing, make_user, ask, stripe_sim, clean_db
    ):
        user_id = await make_user()
        await clean_db.execute(
            "INSERT INTO billing_customers (user_id, stripe_customer_id) "
            "VALUES ($1, 'cus_deleted')",
            user_id,
        )
        await start_billing()

        reply = await ask(Subject.BILLING_PORTAL_CREATE, {"user_id": user_id})

        assert (reply.ok, reply.code) == (False, "STRIPE_NOT_FOUND")
        assert "retry" not in (reply.detail or "")
