"""Compatibility with a third-party Stripe fake: localstripe (PyPI), run as a
process on a free loopback port. The real `stripe` library creates a customer and
a subscription there; localstripe signs and delivers its own webhooks to a real
gateway-api; billing (pointed at localstripe through STRIPE_API_BASE) follows."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import stripe
from yourclaw_common.embedded import free_port
from yourclaw_common.events import Subject
from yourclaw_common.testing import eventually

from .conftest import outbox_subjects, running_gateway, subscription

pytestmark = pytest.mark.slow

LOCALSTRIPE_KEY = "sk_test_localstripe"
WEBHOOK_SECRET = "whsec_localstripe_0123456789"


@pytest_asyncio.fixture(loop_scope="session")
async def localstripe(tmp_path) -> AsyncIterator[str]:
    """localstripe on a free port (a fresh one if another process took it first)."""
    log_path = tmp_path / "localstripe.log"
    for _ in range(3):
        port = free_port()
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "localstripe",
                "--port",
                str(port),
                "--from-scratch",
                stdout=log_file,
                stderr=log_file,
                cwd=tmp_path,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        url = f"http://127.0.0.1:{port}"
        try:
            if await _serving(proc, url):
                yield url
                return
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
    raise AssertionError(f"localstripe did not start: {log_path.read_text()[-2000:]}")


async def _serving(proc: asyncio.subprocess.Process, url: str) -> bool:
    """True once localstripe answers on `url`; False if it exited (port taken)."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:

        async def answer() -> str | None:
            if proc.returncode is not None:
                return "exited"
            try:
                response = await client.get("/v1/customers", auth=(LOCALSTRIPE_KEY, ""))
            except httpx.TransportError:
                return None
            # Another server that took the port would not answer a Stripe list.
            if response.status_code == 200 and response.json().get("object") == "list":
                return "up"
            return "exited"

        return await eventually(answer, timeout=30) == "up"


def stripe_client(api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(LOCALSTRIPE_KEY, base_addresses={"api": api_base})


async def in_thread(call: Any, *args: Any) -> Any:
    # The library's synchronous client, off the loop that serves the gateway.
    return await asyncio.to_thread(call, *args)


async def status_is(pool, user_id, status) -> bool:
    row = await subscription(pool, user_id)
    return row is not None and row["status"] == status


class TestLocalstripe:
    async def test_subscription_state_follows_localstripes_webhooks(
        self, localstripe, service_env, start_billing, make_user, clean_db, js
    ):
        user_id = await make_user("local@example.com")
        async with running_gateway(service_env, secret=WEBHOOK_SECRET) as webhook_url:
            async with httpx.AsyncClient(base_url=localstripe) as config:
                registered = await config.post(
                    "/_config/webhooks/yourclaw",
                    data={"url": webhook_url, "secret": WEBHOOK_SECRET},
                )
                assert registered.status_code == 200
            await start_billing(
                stripe_api_base=localstripe, stripe_secret_key=LOCALSTRIPE_KEY
            )
            client = stripe_client(localstripe)
            plan = await in_thread(
                client.v1.plans.create,
                {
                    "id": "yourclaw-pro-monthly",
                    "amount": 2000,
                    "currency": "usd",
                    "interval": "month",
                    "product": {"name": "YourClaw Pro"},
                },
            )
            card = await in_thread(
                client.v1.payment_methods.create,
                {
                    "type": "card",
                    "card": {
                        "number": "4242424242424242",
                        "exp_month": 12,
                        "exp_year": 2034,
                        "cvc": "123",
                    },
                },
            )
            customer = await in_thread(
                client.v1.customers.create,
                {
                    "email": "local@example.com",
                    "metadata": {"user_id": str(user_id)},
                    "payment_method": card.id,
                    "invoice_settings": {"default_payment_method": card.id},
                },
            )
            created = await in_thread(
                client.v1.subscriptions.create,
                {
                    "customer": customer.id,
                    "items": [{"plan": plan.id}],
                    "metadata": {"user_id": str(user_id)},
                },
            )
            assert created.status == "active"

            await eventually(lambda: status_is(clean_db, user_id, "ACTIVE"), timeout=30)
            row = await subscription(clean_db, user_id)
            assert row["stripe_subscription_id"] == created.id
            assert row["stripe_customer_id"] == customer.id
            assert row["current_period_end"] is not None

            await in_thread(client.v1.subscriptions.cancel, created.id)

            await eventually(
                lambda: status_is(clean_db, user_id, "CANCELED"), timeout=30
            )
            assert (await subscription(clean_db, user_id))[
                "stripe_status"
            ] == "canceled"
            assert await outbox_subjects(clean_db, user_id) == [
                Subject.SUBSCRIPTION_ACTIVATED.value,
                Subject.SUBSCRIPTION_CANCELED.value,
            ]
            received = await clean_db.fetch("SELECT type FROM stripe_events")
            assert "customer.subscription.deleted" in {r["type"] for r in received}
