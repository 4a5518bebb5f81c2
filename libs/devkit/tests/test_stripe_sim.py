from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest_asyncio
from fastapi import FastAPI, Request
from yourclaw_common.testing import eventually
from yourclaw_devkit.defaults import DEV_STRIPE_SECRET_KEY, DEV_STRIPE_WEBHOOK_SECRET
from yourclaw_devkit.devsim import DevsimSettings, running_devsim
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.stripe_sim import parse_stripe_form
from yourclaw_gateway_api.webhooks.stripe import StripeSignature

AUTH = {"authorization": f"Bearer {DEV_STRIPE_SECRET_KEY}"}


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook endpoint recording what it receives, and whether it verified."""
    received: list[dict[str, Any]] = []
    app = FastAPI()
    check = StripeSignature(DEV_STRIPE_WEBHOOK_SECRET)

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        body = await request.body()
        check.verify(body, request.headers.get("stripe-signature"), now=time.time())
        received.append(orjson.loads(body))
        return {"received": True}

    async with running_app(app) as url:
        yield url + "/hook", received


@pytest_asyncio.fixture(loop_scope="session")
async def stripe(receiver) -> AsyncIterator[httpx.AsyncClient]:
    settings = DevsimSettings(_env_file=None, devsim_stripe_webhook_url=receiver[0])
    async with (
        running_devsim(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client


async def checkout(stripe: httpx.AsyncClient, **extra: str) -> dict[str, Any]:
    customer = (
        await stripe.post(
            "/v1/customers",
            data={"email": "a@example.com", "metadata[user_id]": "u1"},
            headers=AUTH,
        )
    ).json()
    response = await stripe.post(
        "/v1/checkout/sessions",
        data={
            "mode": "subscription",
            "customer": customer["id"],
            "line_items[0][price]": "price_x",
            "line_items[0][quantity]": "1",
            "subscription_data[metadata][user_id]": "u1",
            "success_url": "https://app.test/ok?s={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app.test/",
            **extra,
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


class TestParseStripeForm:
    def test_nested_keys_and_lists(self):
        assert parse_stripe_form(
            [
                ("metadata[user_id]", "u"),
                ("line_items[0][price]", "p"),
                ("line_items[1][price]", "q"),
                ("types[]", "a"),
                ("types[]", "b"),
            ]
        ) == {
            "metadata": {"user_id": "u"},
            "line_items": [{"price": "p"}, {"price": "q"}],
            "types": ["a", "b"],
        }


class TestStripeApi:
    async def test_requires_the_secret_key(self, stripe):
        response = await stripe.post("/v1/customers", data={}, headers={})

        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_request_error"

    async def test_idempotency_key_replays_the_first_result(self, stripe):
        headers = {**AUTH, "idempotency-key": "k-replay"}
        first = await stripe.post(
            "/v1/customers", data={"email": "x@y.z"}, headers=headers
        )
        second = await stripe.post(
            "/v1/customers", data={"email": "x@y.z"}, headers=headers
        )
        other = await stripe.post(
            "/v1/customers", data={"email": "o@y.z"}, headers=headers
        )

        assert first.json()["id"] == second.json()["id"]
        assert second.headers["idempotent-replayed"] == "true"
        assert other.status_code == 400
        assert other.json()["error"]["type"] == "idempotency_error"

    async def test_unknown_customer_is_resource_missing(self, stripe):
        response = await stripe.get("/v1/customers/cus_nope", headers=AUTH)

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "resource_missing"


class TestHostedCheckout:
    async def test_pay_completes_the_session_and_sends_signed_webhooks(
        self, stripe, receiver
    ):
        _, received = receiver
        received.clear()
        session = await checkout(stripe)
        page = await stripe.get(session["url"].removeprefix(str(stripe.base_url)))
        assert "Pay $20.00" in page.text

        paid = await stripe.post(f"/_devsim/stripe/checkout/{session['id']}/pay")

        assert paid.status_code == 303
        assert paid.headers["location"] == f"https://app.test/ok?s={session['id']}"
        await eventually(lambda: _at_least(received, 4))
        types = [
            e["type"] for e in received if not e["type"].startswith("customer.created")
        ]
        assert types == [
            "checkout.session.completed",
            "customer.subscription.created",
            "invoice.paid",
            "invoice.payment_succeeded",
        ]
        completed = next(
            e for e in received if e["type"] == "checkout.session.completed"
        )
        sub_id = completed["data"]["object"]["subscription"]
        sub = (await stripe.get(f"/v1/subscriptions/{sub_id}", headers=AUTH)).json()
        assert sub["status"] == "active"
        assert sub["metadata"] == {"user_id": "u1"}
        assert sub["items"]["data"][0]["current_period_end"] > time.time()

    async def test_cancel_sends_subscription_deleted(self, stripe, receiver):
        _, received = receiver
        session = await checkout(stripe)
        await stripe.post(f"/_devsim/stripe/checkout/{session['id']}/pay")
        sub_id = (
            await stripe.get(f"/v1/checkout/sessions/{session['id']}", headers=AUTH)
        ).json()["subscription"]
        received.clear()

        response = await stripe.post(f"/_devsim/stripe/subscriptions/{sub_id}/cancel")

        assert response.json()["status"] == "canceled"
        await eventually(lambda: _has_type(received, "customer.subscription.deleted"))

    async def test_events_are_listed_newest_first_with_filters(self, stripe):
        session = await checkout(stripe)
        await stripe.post(f"/_devsim/stripe/checkout/{session['id']}/pay")

        page = await stripe.get(
            "/v1/events",
            params={
                "types[0]": "invoice.paid",
                "types[1]": "checkout.session.completed",
                "limit": 1,
            },
            headers=AUTH,
        )
        body = page.json()
        (newest,) = body["data"]
        rest = await stripe.get(
            "/v1/events",
            params={
                "types[0]": "invoice.paid",
                "types[1]": "checkout.session.completed",
                "starting_after": newest["id"],
                "created[gte]": str(int(time.time()) - 60),
            },
            headers=AUTH,
        )

        assert body["object"] == "list"
        assert body["has_more"] is True
        assert newest["type"] == "invoice.paid"
        assert rest.json()["data"][0]["type"] == "checkout.session.completed"


async def _at_least(received: list[dict[str, Any]], count: int) -> bool:
    return len([e for e in received if e["type"] != "customer.created"]) >= count


async def _has_type(received: list[dict[str, Any]], type_: str) -> bool:
    return any(e["type"] == type_ for e in received)
