"""`yourclaw-dev pay`: billing, the Stripe stand-in and a real gateway-api over
loopback, paid from the terminal as the hosted checkout page's Pay button does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from yourclaw_devkit.cli import main
from yourclaw_devkit.defaults import DEV_STRIPE_WEBHOOK_SECRET
from yourclaw_devkit.serving import running_app
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.stripe import STRIPE_WEBHOOK_PATH

from .conftest import subscription


@pytest_asyncio.fixture(loop_scope="session")
async def api_url(service_env, stripe_sim, js) -> AsyncIterator[str]:
    """gateway-api with dev sign-in, receiving the stand-in's Stripe webhooks."""
    settings = GatewaySettings(
        _env_file=None,
        database_url=service_env["DATABASE_URL"],
        nats_url=service_env["NATS_URL"],
        yourclaw_env="dev",
        dev_login_enabled=True,
        dev_login_secret="x" * 32,
        stripe_webhook_secret=DEV_STRIPE_WEBHOOK_SECRET,
        db_pool_max_size=2,
    )
    async with running_app(create_app(settings)) as url:
        await stripe_sim.post(
            "/_devsim/stripe/webhook_endpoint", json={"url": url + STRIPE_WEBHOOK_PATH}
        )
        yield url


@pytest.fixture
def cli_env(monkeypatch, service_env, api_url):
    for name in ("DATABASE_URL", "NATS_URL"):
        monkeypatch.setenv(name, service_env[name])
    monkeypatch.setenv("API_URL", api_url)
    return monkeypatch


class TestPayCommand:
    async def test_email_signs_in_pays_and_waits_for_active(
        self, start_billing, cli_env, clean_db, capsys
    ):
        await start_billing()

        code = await asyncio.to_thread(main, ["pay", "--email", "Pat@example.com"])

        out = capsys.readouterr().out
        assert code == 0, out
        assert "pressed Pay" in out
        assert "subscription ACTIVE" in out
        user_id = await clean_db.fetchval(
            "SELECT id FROM users WHERE email = 'pat@example.com'"
        )
        assert (await subscription(clean_db, user_id))["status"] == "ACTIVE"

        again = await asyncio.to_thread(main, ["pay", "--email", "pat@example.com"])

        assert again == 0
        assert "nothing to pay: you already have an active subscription" in (
            capsys.readouterr().out
        )

    async def test_user_id_pays_through_billing_on_nats(
        self, start_billing, cli_env, make_user, clean_db, capsys
    ):
        user_id = await make_user("sam@example.com")
        await start_billing()

        code = await asyncio.to_thread(main, ["pay", "--user", str(user_id)])

        out = capsys.readouterr().out
        assert code == 0, out
        assert "subscription ACTIVE" in out
        assert (await subscription(clean_db, user_id))["status"] == "ACTIVE"

    async def test_unknown_user_fails_with_billings_reason(
        self, start_billing, cli_env, capsys
    ):
        await start_billing()

        code = await asyncio.to_thread(
            main, ["pay", "--user", "00000000-0000-4000-8000-000000000000"]
        )

        assert code == 1
        assert "unknown user" in capsys.readouterr().err
