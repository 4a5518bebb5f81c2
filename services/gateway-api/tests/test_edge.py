import json
import uuid

import pytest
from yourclaw_devkit.pytest_plugin import ManualClock
from yourclaw_gateway_api.ratelimit import ClientIp, RateLimiter

APP_URL = "https://app.yourclaw.test"


class TestCors:
    async def test_the_app_origin_may_call(self, start_gateway, clean_db):
        async with start_gateway(app_url=APP_URL) as gw:
            response = await gw.client.get(
                "/api/v1/models", headers={"Origin": APP_URL}
            )

        assert response.headers["access-control-allow-origin"] == APP_URL
        assert (
            "x-request-id" in response.headers["access-control-expose-headers"].lower()
        )

    # The dashboard's calls that need a preflight: model change, spending cap.
    @pytest.mark.parametrize(
        ("path", "method"),
        [("/api/v1/assistants", "PATCH"), ("/api/v1/usage/cap", "PUT")],
    )
    async def test_the_preflight_of_the_app_origin_passes(
        self, start_gateway, clean_db, path, method
    ):
        async with start_gateway(app_url=APP_URL) as gw:
            response = await gw.client.options(
                path,
                headers={
                    "Origin": APP_URL,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )

        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == APP_URL
        assert method in response.headers["access-control-allow-methods"]

    async def test_another_origin_gets_no_cors_headers(self, start_gateway, clean_db):
        async with start_gateway(app_url=APP_URL) as gw:
            simple = await gw.client.get(
                "/api/v1/models", headers={"Origin": "https://evil.test"}
            )
            preflight = await gw.client.options(
                "/api/v1/assistants",
                headers={
                    "Origin": "https://evil.test",
                    "Access-Control-Request-Method": "DELETE",
                },
            )

        assert "access-control-allow-origin" not in simple.headers
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers

    async def test_a_local_dashboard_may_use_either_loopback_name(
        self, start_gateway, clean_db
    ):
        async with start_gateway(app_url="http://127.0.0.1:3000") as gw:
            allowed = {
                origin: (
                    await gw.client.get("/api/v1/models", headers={"Origin": origin})
                ).headers.get("access-control-allow-origin")
                for origin in (
                    "http://localhost:3000",
                    "http://127.0.0.1:3000",
                    "http://localhost:3001",
                )
            }

        assert allowed == {
            "http://localhost:3000": "http://localhost:3000",
            "http://127.0.0.1:3000": "http://127.0.0.1:3000",
            "http://localhost:3001": None,
        }


class TestBodyLimit:
    async def test_a_declared_large_body_is_413(self, api, sign_in):
        body = json.dumps({"phone": "+15551234567", "pad": "x" * 20_000})

        response = await api.client.post(
            "/api/v1/users/me/phone",
            content=body,
            headers={**sign_in().headers, "content-type": "application/json"},
        )

        assert response.status_code == 413
        assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
        assert "x-request-id" in response.headers

    async def test_a_streamed_large_body_is_413(self, api, sign_in):
        async def chunks():
            for _ in range(40):
                yield b"x" * 1024

        response = await api.client.post(
            "/api/v1/users/me/phone",
            content=chunks(),
            headers={**sign_in().headers, "content-type": "application/json"},
        )

        assert response.status_code == 413

    async def test_a_huge_body_closes_the_connection(self, api, sign_in):
        response = await api.client.post(
            "/api/v1/dev/login",
            content=b"x" * (3 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )

        assert response.status_code == 413
        assert response.headers["connection"] == "close"

    async def test_a_body_within_the_limit_passes(self, api, sign_in):
        response = await api.client.post(
            "/api/v1/users/me/phone",
            json={"phone": "+15551234567"},
            headers=sign_in().headers,
        )

        assert response.status_code == 200

    async def test_the_limit_is_a_setting(
        self, start_gateway, supabase, sign_in, clean_db
    ):
        async with start_gateway(
            supabase_url=supabase.url, api_max_body_bytes=10
        ) as gw:
            response = await gw.client.post(
                "/api/v1/users/me/phone",
                json={"phone": "+15551234567"},
                headers=sign_in().headers,
            )

        assert response.status_code == 413

    async def test_every_route_has_the_limit(self, api):
        # Over the webhooks' limit too, which is the larger one.
        settings = api.settings
        size = max(settings.api_max_body_bytes, settings.webhook_max_body_bytes) + 1
        answers = {}
        for template, operations in api.app.api.openapi()["paths"].items():
            if template == "/healthz":
                continue  # answered before any body is read
            path = template.replace("{assistant_id}", str(uuid.uuid4()))
            path = path.replace("{provider}", "openai")
            for method in operations:
                response = await api.client.request(
                    method,
                    path,
                    content=b"x" * size,
                    # What the Twilio routes check before reading the body.
                    headers={
                        "content-type": "application/x-www-form-urlencoded",
                        "x-twilio-signature": "checked-after-the-size",
                    },
                )
                answers[method, template] = (
                    response.status_code,
                    response.json().get("code"),
                )

        assert len(answers) > 15
        assert set(answers.values()) == {(413, "PAYLOAD_TOO_LARGE")}, answers


class TestRequestId:
    async def test_a_new_id_on_every_answer(self, api):
        ids = {
            (await api.client.get("/api/v1/models")).headers["x-request-id"]
            for _ in range(3)
        }

        assert len(ids) == 3

    async def test_the_callers_id_is_kept(self, api):
        response = await api.client.get(
            "/api/v1/models", headers={"X-Request-Id": "web-abc.123"}
        )

        assert response.headers["x-request-id"] == "web-abc.123"

    @pytest.mark.parametrize("bad", ["a" * 200, "has space", 'quote"d', "new\\nline"])
    async def test_an_unsafe_id_is_replaced(self, api, bad):
        response = await api.client.get("/api/v1/models", headers={"X-Request-Id": bad})

        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 32

    async def test_errors_carry_the_id_too(self, api):
        response = await api.client.get("/api/v1/users/me")

        assert response.status_code == 401
        assert "x-request-id" in response.headers

    async def test_the_id_is_in_the_log_lines_of_the_request(
        self, api, sign_in, json_logs
    ):
        caller = sign_in()
        response = await api.client.get("/api/v1/users/me", headers=caller.headers)

        request_id = response.headers["x-request-id"]
        mine = [
            line for line in json_logs() if line.get("correlation_id") == request_id
        ]
        [access] = [line for line in mine if line["event"] == "gateway.request"]
        assert access["route"] == "/api/v1/users/me"
        assert access["status"] == 200
        assert access["method"] == "GET"
        assert access["user_id"] == str(caller.id)
        # The JWKS was fetched for this request: its line carries the id too.
        assert any(line["event"] == "gateway.auth.jwks_fetched" for line in mine)


def few_webhooks(start_gateway, burst: int):
    """A gateway whose webhook budget per IP is `burst` refused requests, not
    refilled within a test."""
    return start_gateway(
        webhook_rate_limit_per_second=0.001, webhook_rate_limit_burst=burst
    )


async def twilio_statuses(gw, twilio, count: int, **post) -> list[int]:
    """The statuses of `count` Twilio messages, each with its own sid."""
    return [
        (
            await gw.post_twilio(twilio.inbound_params(sid=f"SM{n:032d}"), **post)
        ).status_code
        for n in range(count)
    ]


class TestWebhookRateLimit:
    async def test_forged_twilio_requests_spend_the_budget_then_429(
        self, start_gateway, twilio, js
    ):
        async with few_webhooks(start_gateway, 2) as gw:
            codes = await twilio_statuses(gw, twilio, 3, signature="forged")
            # The IP spent its budget on forgeries: even a good request waits.
            limited = await gw.post_twilio(twilio.inbound_params(sid="SM" + "9" * 32))

        assert codes == [403, 403, 429]
        assert limited.status_code == 429
        assert limited.json() == {
            "detail": "too many requests, retry later",
            "code": "RATE_LIMITED",
        }
        assert int(limited.headers["retry-after"]) >= 1

    async def test_signed_twilio_requests_are_never_limited(
        self, start_gateway, twilio, js
    ):
        # Twilio fans in every user's messages from a few IPs: accepted requests
        # spend nothing, however many there are.
        async with few_webhooks(start_gateway, 1) as gw:
            codes = await twilio_statuses(gw, twilio, 10)

        assert codes == [200] * 10

    async def test_other_webhook_routes_are_limited_too(self, start_gateway, js):
        async with few_webhooks(start_gateway, 1) as gw:
            first = await gw.client.post("/api/v1/webhooks/stripe", content=b"{}")
            second = await gw.client.post("/api/v1/webhooks/stripe", content=b"{}")

        assert first.status_code != 429
        assert second.status_code == 429
        assert "retry-after" in second.headers

    async def test_api_routes_are_not_limited_by_it(self, start_gateway, js):
        async with start_gateway(
            webhook_rate_limit_per_second=0.001, webhook_rate_limit_burst=1
        ) as gw:
            codes = {
                (await gw.client.get("/api/v1/models")).status_code for _ in range(5)
            }

        assert codes == {200}

    async def test_zero_turns_it_off(self, start_gateway, twilio, js):
        async with start_gateway(webhook_rate_limit_per_second=0) as gw:
            codes = {
                (
                    await gw.post_twilio(twilio.inbound_params(sid=f"SM{n:032d}"))
                ).status_code
                for n in range(5)
            }

        assert codes == {200}


class TestRateLimiter:
    def test_a_burst_then_the_refill_rate(self):
        clock = ManualClock()
        limiter = RateLimiter(rate=2, burst=3, clock=clock)

        assert [limiter.retry_after("a") for _ in range(3)] == [0, 0, 0]
        assert limiter.retry_after("a") == pytest.approx(0.5)
        clock.now += 0.5
        assert limiter.retry_after("a") == 0
        assert limiter.retry_after("a") > 0

    def test_waiting_counts_nothing(self):
        clock = ManualClock()
        limiter = RateLimiter(rate=1, burst=1, clock=clock)

        assert [limiter.waiting("a") for _ in range(3)] == [0, 0, 0]
        assert limiter.retry_after("a") == 0
        assert limiter.waiting("a") == pytest.approx(1.0)
        clock.now += 1
        assert limiter.waiting("a") == 0

    def test_keys_have_their_own_buckets(self):
        limiter = RateLimiter(rate=1, burst=1, clock=ManualClock())

        assert limiter.retry_after("a") == 0
        assert limiter.retry_after("b") == 0
        assert limiter.retry_after("a") > 0

    def test_a_bucket_never_holds_more_than_the_burst(self):
        clock = ManualClock()
        limiter = RateLimiter(rate=10, burst=2, clock=clock)
        limiter.retry_after("a")
        clock.now += 3600

        assert [limiter.retry_after("a") == 0 for _ in range(3)] == [True, True, False]

    def test_memory_is_bounded(self):
        clock = ManualClock()
        limiter = RateLimiter(rate=1, burst=1, max_keys=100, clock=clock)
        for n in range(1000):
            limiter.retry_after(f"10.0.{n // 256}.{n % 256}")

        assert len(limiter._buckets) <= 100


def scope(peer, forwarded=None):
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 5000), "headers": headers}


class TestClientIp:
    def test_the_peer_without_trusted_proxies(self):
        assert ClientIp("")(scope("203.0.113.9", "1.2.3.4")) == "203.0.113.9"

    def test_forwarded_for_from_a_trusted_proxy(self):
        client_ip = ClientIp("10.0.0.0/8")

        assert client_ip(scope("10.0.0.2", "198.51.100.7")) == "198.51.100.7"

    def test_a_spoofed_left_entry_is_ignored(self):
        client_ip = ClientIp("10.0.0.0/8, 127.0.0.1")

        assert (
            client_ip(scope("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.3"))
            == "198.51.100.7"
        )

    def test_forwarded_for_from_anyone_else_is_ignored(self):
        assert ClientIp("10.0.0.0/8")(scope("203.0.113.9", "1.2.3.4")) == "203.0.113.9"


class TestLiveness:
    async def test_only_get_and_head(self, gateway):
        assert (await gateway.client.get("/healthz")).status_code == 200
        response = await gateway.client.post("/healthz")

        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert response.json()["code"] == "METHOD_NOT_ALLOWED"
