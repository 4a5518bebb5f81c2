import orjson
import pytest
from yourclaw_common.events import BillingReply, CreateCheckout, CreatePortal, Subject


@pytest.fixture
async def billing(nats_client):
    """billing's side of the request/reply: answers with `reply` (None: never)."""
    state = {
        "reply": BillingReply(ok=True, url="https://checkout.stripe.test/c/1"),
        "requests": [],
    }

    async def answer(msg):
        state["requests"].append(
            (msg.subject, orjson.loads(msg.data), dict(msg.headers or {}))
        )
        reply = state["reply"]
        if reply is None:
            return
        body = reply if isinstance(reply, bytes) else reply.model_dump_json().encode()
        await msg.respond(body)

    subs = [
        await nats_client.subscribe(subject, cb=answer)
        for subject in (Subject.BILLING_CHECKOUT_CREATE, Subject.BILLING_PORTAL_CREATE)
    ]
    await nats_client.flush()
    yield state
    for sub in subs:
        await sub.unsubscribe()


class TestCheckout:
    async def test_the_checkout_url_comes_from_billing(self, api, sign_in, billing):
        caller = sign_in(email="ada@example.com")

        response = await api.client.post("/api/v1/checkout", headers=caller.headers)

        assert response.status_code == 200, response.text
        assert response.json() == {"checkout_url": "https://checkout.stripe.test/c/1"}
        [(subject, request, headers)] = billing["requests"]
        assert subject == Subject.BILLING_CHECKOUT_CREATE
        assert CreateCheckout.model_validate(request) == CreateCheckout(
            user_id=caller.id, email="ada@example.com"
        )
        assert headers["Yourclaw-Correlation-Id"] == response.headers["x-request-id"]

    async def test_already_subscribed_is_409(self, api, sign_in, billing):
        billing["reply"] = BillingReply(ok=False, code="ALREADY_SUBSCRIBED", detail="x")

        response = await api.client.post("/api/v1/checkout", headers=sign_in().headers)

        assert response.status_code == 409
        assert response.json()["code"] == "ALREADY_SUBSCRIBED"

    async def test_stripe_down_is_503(self, api, sign_in, billing):
        billing["reply"] = BillingReply(ok=False, code="STRIPE_UNAVAILABLE")

        response = await api.client.post("/api/v1/checkout", headers=sign_in().headers)

        assert response.status_code == 503
        assert response.json()["code"] == "STRIPE_UNAVAILABLE"
        assert response.headers["retry-after"] == "5"

    async def test_an_unreadable_reply_is_503(self, api, sign_in, billing):
        billing["reply"] = b"<html>oops</html>"

        response = await api.client.post("/api/v1/checkout", headers=sign_in().headers)

        assert response.status_code == 503
        assert response.json()["code"] == "BILLING_UNAVAILABLE"

    async def test_no_billing_service_is_503(self, api, sign_in):
        response = await api.client.post("/api/v1/checkout", headers=sign_in().headers)

        assert response.status_code == 503
        assert response.json()["code"] == "BILLING_UNAVAILABLE"
        assert response.headers["retry-after"] == "5"

    async def test_billing_too_slow_is_503(
        self, start_gateway, supabase, sign_in, billing, clean_db
    ):
        billing["reply"] = None  # received, never answered
        async with start_gateway(
            supabase_url=supabase.url, billing_request_timeout_seconds=0.2
        ) as gw:
            response = await gw.client.post(
                "/api/v1/checkout", headers=sign_in().headers
            )

        assert response.status_code == 503
        assert response.json()["code"] == "BILLING_UNAVAILABLE"
        assert len(billing["requests"]) == 1

    async def test_needs_a_token(self, api, billing):
        response = await api.client.post("/api/v1/checkout")

        assert response.status_code == 401
        assert billing["requests"] == []


class TestPortal:
    async def test_the_portal_url_comes_from_billing(self, api, sign_in, billing):
        billing["reply"] = BillingReply(ok=True, url="https://billing.stripe.test/p/1")
        caller = sign_in()

        response = await api.client.post(
            "/api/v1/billing/portal", headers=caller.headers
        )

        assert response.status_code == 200
        assert response.json() == {"portal_url": "https://billing.stripe.test/p/1"}
        [(subject, request, _)] = billing["requests"]
        assert subject == Subject.BILLING_PORTAL_CREATE
        assert CreatePortal.model_validate(request).user_id == caller.id

    @pytest.mark.parametrize(
        ("code", "status"), [("STRIPE_NOT_FOUND", 404), ("STRIPE_REJECTED", 409)]
    )
    async def test_a_permanent_stripe_error_is_a_4xx(
        self, api, sign_in, billing, code, status
    ):
        billing["reply"] = BillingReply(ok=False, code=code, detail="x")

        response = await api.client.post(
            "/api/v1/billing/portal", headers=sign_in().headers
        )

        assert response.status_code == status
        assert response.json()["code"] == code
        assert "retry" not in response.json()["detail"]

    async def test_no_customer_is_404(self, api, sign_in, billing):
        billing["reply"] = BillingReply(ok=False, code="NO_CUSTOMER")

        response = await api.client.post(
            "/api/v1/billing/portal", headers=sign_in().headers
        )

        assert response.status_code == 404
        assert response.json()["code"] == "NO_CUSTOMER"


class TestGetSubscription:
    async def test_none_without_a_subscription(self, api, sign_in):
        response = await api.client.get(
            "/api/v1/subscription", headers=sign_in().headers
        )

        assert response.json() == {"status": "NONE", "current_period_end": None}

    async def test_the_users_subscription_only(self, api, sign_in, db, clean_db):
        ada, eve = sign_in(), sign_in()
        await db.subscription(clean_db, ada.id, "ACTIVE")

        ada_sub = (
            await api.client.get("/api/v1/subscription", headers=ada.headers)
        ).json()
        eve_sub = (
            await api.client.get("/api/v1/subscription", headers=eve.headers)
        ).json()

        assert ada_sub["status"] == "ACTIVE"
        assert ada_sub["current_period_end"] is not None
        assert eve_sub["status"] == "NONE"
