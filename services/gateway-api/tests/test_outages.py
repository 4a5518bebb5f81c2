"""The REST API while PostgreSQL is down: 503 with Retry-After, not 500."""

from __future__ import annotations

from yourclaw_common.testing import cuttable


class TestDatabaseDown:
    async def test_api_answers_503_with_retry_after_and_recovers(
        self, start_gateway, service_env, supabase, sign_in, clean_db
    ):
        caller = sign_in()
        async with (
            cuttable(service_env["DATABASE_URL"]) as postgres,
            start_gateway(
                database_url=postgres.url(service_env["DATABASE_URL"]),
                supabase_url=supabase.url,
            ) as gw,
        ):
            up = await gw.client.get("/api/v1/users/me", headers=caller.headers)
            assert up.status_code == 200

            await postgres.cut()
            down = await gw.client.get("/api/v1/users/me", headers=caller.headers)
            again = await gw.client.get("/api/v1/users/me", headers=caller.headers)

            for response in (down, again):
                assert response.status_code == 503
                assert response.json() == {
                    "detail": "the database is unavailable, retry shortly",
                    "code": "DATABASE_UNAVAILABLE",
                }
                assert int(response.headers["retry-after"]) > 0

            await postgres.start()
            back = await gw.client.get("/api/v1/users/me", headers=caller.headers)
            assert back.status_code == 200
