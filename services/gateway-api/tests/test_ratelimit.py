"""/api/v1's rate limits: by client IP at the edge, by user once the token is
verified, and far tighter on the sensitive routes; 429 `{"detail","code"}` with
Retry-After, the same answer whichever budget ran out."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from yourclaw_common.crypto import SecretBox

LIMITED = {"detail": "too many requests, retry later", "code": "RATE_LIMITED"}
# Budgets the tests run out of quickly; refilled at 1 a minute, i.e. not at all.
SLOW = 1.0
NOTIFY_SECRET = "notify-secret-0123456789"


@pytest.fixture
def start_api(start_gateway, supabase, clean_db, js):
    """A gateway on the test's Supabase in which one budget ("ip", "user",
    "sensitive_ip" or "sensitive_user") holds `burst` requests, refilled too
    slowly to matter within a test."""

    def start(budget: str, burst: int, **settings: Any):
        # "sensitive_ip": api_sensitive_rate_limit_ip_per_minute and _burst
        kind, _, whose = budget.rpartition("_")
        name = f"api_{kind}_rate_limit_{whose}" if kind else f"api_rate_limit_{whose}"
        limits = {f"{name}_per_minute": SLOW, f"{name}_burst": burst}
        return start_gateway(supabase_url=supabase.url, **limits, **settings)

    return start


def assert_limited(response):
    assert response.status_code == 429, response.text
    assert response.json() == LIMITED
    assert int(response.headers["retry-after"]) >= 1


class TestPerIp:
    async def test_every_api_request_spends_from_the_ip(self, start_api):
        async with start_api("ip", 3) as gw:
            codes = [
                (await gw.client.get("/api/v1/models")).status_code for _ in range(3)
            ]
            # Unauthenticated requests count too: the edge runs before the token.
            limited = await gw.client.get("/api/v1/users/me")

        assert codes == [200, 200, 200]
        assert_limited(limited)

    async def test_the_client_behind_a_trusted_proxy_is_the_key(self, start_api):
        async with start_api("ip", 1, trusted_proxy_ips="127.0.0.1") as gw:
            first = await gw.client.get(
                "/api/v1/models", headers={"x-forwarded-for": "198.51.100.1"}
            )
            again = await gw.client.get(
                "/api/v1/models", headers={"x-forwarded-for": "198.51.100.1"}
            )
            other = await gw.client.get(
                "/api/v1/models", headers={"x-forwarded-for": "198.51.100.2"}
            )

        assert first.status_code == 200
        assert_limited(again)
        assert other.status_code == 200

    async def test_probes_and_webhooks_are_not_spent_from_it(self, start_api, twilio):
        async with start_api("ip", 1) as gw:
            probes = {(await gw.client.get("/healthz")).status_code for _ in range(3)}
            hooks = [
                (
                    await gw.post_twilio(twilio.inbound_params(sid=f"SM{n:032d}"))
                ).status_code
                for n in range(3)
            ]

        assert probes == {200}
        assert hooks == [200] * 3

    async def test_the_assistants_notify_route_spends_only_when_refused(
        self, start_api, clean_db, db, encryption_key
    ):
        # A container host's tenants share its address: their notifications are
        # not limited by it, their failures are (as the webhooks').
        user_id = uuid.uuid4()
        secret = SecretBox(encryption_key).encrypt(NOTIFY_SECRET, owner=str(user_id))
        assistant_id = await db.assistant(
            clean_db, user_id, notify_secret_encrypted=secret
        )
        path = f"/api/v1/internal/assistants/{assistant_id}/notify"
        async with start_api(
            "ip", 1, webhook_rate_limit_per_second=0.001, webhook_rate_limit_burst=2
        ) as gw:
            accepted = [
                (
                    await gw.client.post(
                        path,
                        json={"text": f"reminder {n}"},
                        headers={"authorization": f"Bearer {NOTIFY_SECRET}"},
                    )
                ).status_code
                for n in range(4)
            ]
            guessed = [
                (
                    await gw.client.post(
                        path, json={"text": "x"}, headers={"authorization": "Bearer no"}
                    )
                ).status_code
                for _ in range(3)
            ]

        assert accepted == [202] * 4
        assert guessed == [401, 401, 429]

    async def test_a_browser_can_read_the_429(self, start_api):
        origin = "http://127.0.0.1:3000"
        async with start_api("ip", 1) as gw:
            await gw.client.get("/api/v1/models", headers={"origin": origin})
            limited = await gw.client.get("/api/v1/models", headers={"origin": origin})

        assert_limited(limited)
        assert limited.headers["access-control-allow-origin"] == origin
        assert "retry-after" in limited.headers["access-control-expose-headers"].lower()


class TestPerUser:
    async def test_each_user_has_a_budget(self, start_api, sign_in):
        ada, bob = sign_in(), sign_in()
        async with start_api("user", 2) as gw:
            ada_codes = [
                (
                    await gw.client.get("/api/v1/users/me", headers=ada.headers)
                ).status_code
                for _ in range(2)
            ]
            limited = await gw.client.get("/api/v1/users/me", headers=ada.headers)
            bob_me = await gw.client.get("/api/v1/users/me", headers=bob.headers)

        assert ada_codes == [200, 200]
        assert_limited(limited)
        assert bob_me.status_code == 200

    async def test_a_bad_token_is_401_not_spent(self, start_api, sign_in):
        async with start_api("user", 1) as gw:
            codes = [
                (
                    await gw.client.get(
                        "/api/v1/users/me", headers={"Authorization": "Bearer nope"}
                    )
                ).status_code
                for _ in range(3)
            ]

        assert codes == [401] * 3


class TestSensitiveRoutes:
    async def test_phone_changes_have_a_tight_budget(self, start_api, sign_in):
        caller = sign_in()
        async with start_api("sensitive_user", 2) as gw:
            codes = [
                (
                    await gw.client.post(
                        "/api/v1/users/me/phone",
                        json={"phone": f"+1555123456{n}"},
                        headers=caller.headers,
                    )
                ).status_code
                for n in range(2)
            ]
            limited = await gw.client.post(
                "/api/v1/users/me/phone",
                json={"phone": "+15551234569"},
                headers=caller.headers,
            )
            # Reading is not sensitive: the general budget is untouched.
            me = await gw.client.get("/api/v1/users/me", headers=caller.headers)

        assert codes == [200, 200]
        assert_limited(limited)
        assert me.status_code == 200

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("POST", "/api/v1/users/me/phone", {"phone": "+15551230000"}),
            (
                "POST",
                "/api/v1/api-keys",
                {"provider": "openai", "key": "sk-" + "a" * 40},
            ),
            ("DELETE", "/api/v1/api-keys/openai", None),
            ("POST", "/api/v1/checkout", None),
            ("POST", "/api/v1/billing/portal", None),
        ],
    )
    async def test_every_sensitive_route_shares_the_budget(
        self, start_api, sign_in, method, path, body
    ):
        caller = sign_in()
        async with start_api("sensitive_user", 1) as gw:
            # The budget is spent on another sensitive route first.
            await gw.client.post(
                "/api/v1/users/me/phone",
                json={"phone": "+15551239999"},
                headers=caller.headers,
            )
            response = await gw.client.request(
                method, path, json=body, headers=caller.headers
            )

        assert_limited(response)

    async def test_many_accounts_from_one_ip_are_limited_too(self, start_api, sign_in):
        # Probing which numbers are linked takes many tries: new accounts do not
        # buy new ones from the same address.
        async with start_api("sensitive_ip", 2) as gw:
            codes = []
            for n in range(3):
                response = await gw.client.post(
                    "/api/v1/users/me/phone",
                    json={"phone": f"+1555000000{n}"},
                    headers=sign_in().headers,
                )
                codes.append(response.status_code)

        assert codes == [200, 200, 429]

    async def test_dev_sign_in_is_limited_by_ip(self, start_api, dev_login):
        async with start_api("sensitive_ip", 2, **dev_login) as gw:
            codes = [
                (
                    await gw.client.post(
                        "/api/v1/dev/login", json={"email": f"u{n}@example.com"}
                    )
                ).status_code
                for n in range(3)
            ]

        assert codes == [200, 200, 429]


class TestDefaults:
    def test_on_by_default_and_tighter_on_sensitive_routes(self):
        from yourclaw_gateway_api.settings import GatewaySettings

        settings = GatewaySettings(_env_file=None)

        assert settings.api_rate_limit_ip_per_minute > 0
        assert settings.api_rate_limit_user_per_minute > 0
        assert (
            0
            < settings.api_sensitive_rate_limit_user_per_minute
            < settings.api_rate_limit_user_per_minute / 10
        )
        assert (
            0
            < settings.api_sensitive_rate_limit_ip_per_minute
            < settings.api_rate_limit_ip_per_minute / 10
        )
