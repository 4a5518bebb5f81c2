from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from yourclaw_billing.app import run
from yourclaw_billing.settings import BillingSettings
from yourclaw_common.events import BillingReply, Subject
from yourclaw_devkit.defaults import (
    DEV_STRIPE_SECRET_KEY,
    DEV_STRIPE_WEBHOOK_SECRET,
    dev_stripe_env,
)
from yourclaw_devkit.serving import InProcess, running_app, settings_of
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.stripe import STRIPE_WEBHOOK_PATH

APP_URL = "https://app.yourclaw.test"


@pytest.fixture
def billing_env(service_env, devsim_url) -> dict[str, str]:
    return {
        **service_env,
        "SERVICE_NAME": "billing",
        **dev_stripe_env(devsim_url),
        "APP_URL": APP_URL,
        "BILLING_GRACE_CHECK_INTERVAL_SECONDS": "3600",
    }


@pytest_asyncio.fixture(loop_scope="session")
async def start_billing(
    billing_env, clean_db, nats_client
) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """Start billing in-process (settings overridable); stopped after the test."""
    services = InProcess()

    async def start(**overrides: Any) -> None:
        settings = settings_of(BillingSettings, billing_env, **overrides)
        task = services.start(run, settings)
        await wait_for_responders(nats_client, task)

    yield start
    await services.stop()


async def wait_for_responders(nc, task: asyncio.Task[None] | None = None) -> None:
    """Until billing answers requests (an invalid one gets INVALID_REQUEST)."""
    for _ in range(200):
        if task is not None and task.done():
            task.result()
        try:
            await nc.request(Subject.BILLING_PORTAL_CREATE.value, b"{}", timeout=0.2)
            return
        except Exception:  # no responders yet
            await asyncio.sleep(0.05)
    raise AssertionError("billing never answered")


@pytest.fixture
def ask(nats_client) -> Callable[..., Awaitable[BillingReply]]:
    """Send a request to billing and parse its reply."""

    async def request(subject: Subject, body: dict[str, Any]) -> BillingReply:
        msg = await nats_client.request(
            subject.value, orjson.dumps(body, default=str), timeout=15
        )
        return BillingReply.model_validate_json(msg.data)

    return request


@pytest_asyncio.fixture(loop_scope="session")
async def stripe_sim(devsim_url) -> AsyncIterator[httpx.AsyncClient]:
    """A client on devsim with an empty Stripe account; webhooks go nowhere
    unless a test points them at a gateway."""
    async with httpx.AsyncClient(base_url=devsim_url, timeout=15) as client:
        (await client.delete("/_devsim/stripe")).raise_for_status()
        await client.post("/_devsim/stripe/webhook_endpoint", json={"url": ""})
        yield client
        await client.post("/_devsim/stripe/webhook_endpoint", json={"url": ""})


@pytest.fixture
def stripe_auth() -> dict[str, str]:
    return {"authorization": f"Bearer {DEV_STRIPE_SECRET_KEY}"}


@pytest_asyncio.fixture(loop_scope="session")
async def make_user(clean_db) -> Callable[..., Awaitable[uuid.UUID]]:
    async def make(email: str | None = None) -> uuid.UUID:
        user_id = uuid.uuid4()
        await clean_db.execute(
            "INSERT INTO users (id, email) VALUES ($1, $2)",
            user_id,
            email or f"{user_id.hex[:8]}@example.com",
        )
        return user_id

    return make


@contextlib.asynccontextmanager
async def running_gateway(
    service_env: dict[str, str], *, secret: str = DEV_STRIPE_WEBHOOK_SECRET
) -> AsyncIterator[str]:
    """A real gateway-api on a free loopback port; yields its Stripe webhook URL."""
    settings = GatewaySettings(
        _env_file=None,
        database_url=service_env["DATABASE_URL"],
        nats_url=service_env["NATS_URL"],
        stripe_webhook_secret=secret,
        db_pool_max_size=2,
    )
    async with running_app(create_app(settings)) as url:
        yield url + STRIPE_WEBHOOK_PATH


@pytest_asyncio.fixture(loop_scope="session")
async def gateway_webhook(service_env, stripe_sim, js) -> AsyncIterator[str]:
    """A gateway receiving devsim's signed Stripe webhooks."""
    async with running_gateway(service_env) as webhook_url:
        await stripe_sim.post(
            "/_devsim/stripe/webhook_endpoint", json={"url": webhook_url}
        )
        yield webhook_url


async def subscription(pool, user_id: uuid.UUID):
    return await pool.fetchrow(
        "SELECT * FROM subscriptions WHERE user_id = $1", user_id
    )


async def outbox_subjects(pool, user_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch(
        "SELECT subject FROM outbox WHERE payload->>'user_id' = $1 ORDER BY id",
        str(user_id),
    )
    return [r["subject"] for r in rows]
