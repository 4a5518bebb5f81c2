import asyncio

import orjson
from yourclaw_common.db import create_pool
from yourclaw_common.embedded import EmbeddedNats
from yourclaw_gateway_api.api.health import check_dependencies, dependency_response


class TestHealth:
    async def test_all_up_is_ok(self, gateway):
        response = await gateway.client.get("/api/v1/health")

        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "checks": {"postgres": True, "nats": True},
        }

    async def test_readyz_runs_the_same_checks(self, gateway):
        response = await gateway.client.get("/readyz")

        assert response.status_code == 200
        assert response.json()["checks"] == {"postgres": True, "nats": True}

    async def test_healthz_is_alive(self, gateway):
        response = await gateway.client.get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_postgres_down_is_named(self, database_url, nats_client, js):
        pool = await create_pool(database_url, min_size=1, max_size=1)
        await pool.close()

        checks = await check_dependencies(pool, nats_client, js)
        response = dependency_response(checks)

        assert checks == {"postgres": False, "nats": True}
        assert response.status_code == 503
        assert orjson.loads(response.body) == {
            "detail": "unavailable: postgres",
            "code": "DEPENDENCY_DOWN",
            "checks": {"postgres": False, "nats": True},
        }


class TestNatsOutage:
    async def test_webhook_answers_503_and_health_names_nats(
        self, start_gateway, tmp_path, twilio
    ):
        nats = await asyncio.to_thread(EmbeddedNats(tmp_path / "nats").start)
        try:
            async with start_gateway(
                nats_url=nats.url, webhook_publish_timeout_seconds=1.0
            ) as gateway:
                params = twilio.inbound_params("SM" + "d" * 32)
                assert (await gateway.post_twilio(params)).status_code == 200

                await asyncio.to_thread(nats.stop)
                webhook = await gateway.post_twilio(
                    twilio.inbound_params("SM" + "e" * 32)
                )
                health = await gateway.client.get("/api/v1/health")

                assert webhook.status_code == 503
                assert webhook.json() == {
                    "detail": "could not queue the message, retry later",
                    "code": "PUBLISH_FAILED",
                }
                assert health.status_code == 503
                assert health.json() == {
                    "detail": "unavailable: nats",
                    "code": "DEPENDENCY_DOWN",
                    "checks": {"postgres": True, "nats": False},
                }
        finally:
            await asyncio.to_thread(nats.stop)
