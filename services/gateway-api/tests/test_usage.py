import datetime as dt
import uuid

import pytest


async def add_messages(pool, user_id, count, *, start=None, phone="+15551234567"):
    """What messaging would have written: alternating in and out, one a minute."""
    start = start or dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    await pool.execute(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
    )
    ids = []
    for n in range(count):
        inbound = n % 2 == 0
        ids.append(
            await pool.fetchval(
                """
                INSERT INTO messages (user_id, phone_e164, direction, body, status, created_at)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
                """,
                user_id,
                phone,
                "INBOUND" if inbound else "OUTBOUND",
                f"message {n}",
                "RECEIVED" if inbound else "SENT",
                start + dt.timedelta(minutes=n),
            )
        )
    return ids


async def add_usage(pool, user_id, day, inbound, outbound, tokens_in=0, tokens_out=0):
    await pool.execute(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
    )
    await pool.execute(
        "INSERT INTO usage_daily VALUES ($1, $2, $3, $4, $5, $6)",
        user_id,
        day,
        inbound,
        outbound,
        tokens_in,
        tokens_out,
    )


def utc_today():
    return dt.datetime.now(dt.UTC).date()


class TestGetUsage:
    async def test_zero_for_a_new_user(self, api, sign_in):
        response = await api.client.get("/api/v1/usage", headers=sign_in().headers)

        assert response.status_code == 200
        body = response.json()
        assert body["today"] == {
            "date": utc_today().isoformat(),
            "inbound": 0,
            "outbound": 0,
            "tokens_in": 0,
            "tokens_out": 0,
        }
        assert body["days"] == []

    async def test_today_and_the_last_30_days(self, api, sign_in, clean_db):
        caller = sign_in()
        today = utc_today()
        await add_usage(clean_db, caller.id, today, 12, 12, 3000, 900)
        await add_usage(clean_db, caller.id, today - dt.timedelta(days=29), 5, 4)
        await add_usage(clean_db, caller.id, today - dt.timedelta(days=30), 100, 100)

        body = (await api.client.get("/api/v1/usage", headers=caller.headers)).json()

        assert body["today"]["inbound"] == 12
        assert body["today"]["tokens_in"] == 3000
        assert body["last_30_days"] == {
            "inbound": 17,
            "outbound": 16,
            "tokens_in": 3000,
            "tokens_out": 900,
        }
        assert [d["date"] for d in body["days"]] == [
            today.isoformat(),
            (today - dt.timedelta(days=29)).isoformat(),
        ]

    async def test_another_users_usage_is_not_counted(self, api, sign_in, clean_db):
        ada, eve = sign_in(), sign_in()
        await add_usage(clean_db, ada.id, utc_today(), 7, 7)

        body = (await api.client.get("/api/v1/usage", headers=eve.headers)).json()

        assert body["today"]["inbound"] == 0
        assert body["days"] == []


async def add_llm_call(pool, user_id, at, *, cost, key_source="PLATFORM", **tokens):
    """What llm-proxy would have metered."""
    await pool.execute(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
    )
    await pool.execute(
        """
        INSERT INTO llm_calls (user_id, assistant_id, provider, model, endpoint,
            key_source, status, input_tokens, output_tokens, cache_read_tokens,
            cache_write_tokens, cost_microusd, price_version, created_at)
        VALUES ($1, $2, 'anthropic', 'claude-sonnet-4-5-20250929', 'messages',
            $3, 200, $4, $5, $6, $7, $8, 'test', $9)
        """,
        user_id,
        uuid.uuid4(),
        key_source,
        tokens.get("input", 0),
        tokens.get("output", 0),
        tokens.get("cache_read", 0),
        tokens.get("cache_write", 0),
        cost,
        at,
    )


class TestModelSpend:
    async def test_nothing_spent_yet(self, api, sign_in):
        body = (await api.client.get("/api/v1/usage", headers=sign_in().headers)).json()

        llm = body["llm"]
        today = utc_today()
        assert llm["month"] == today.replace(day=1).isoformat()
        assert llm["allowance_usd"] == 8.0
        assert (llm["spent_usd"], llm["remaining_usd"], llm["calls"]) == (0, 8.0, 0)
        assert llm["days"] == []
        assert llm["resets_at"] > today.isoformat()

    async def test_this_months_spend_by_day(self, api, sign_in, clean_db):
        caller = sign_in()
        now = dt.datetime.now(dt.UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        await add_llm_call(clean_db, caller.id, start, cost=1_500_000, input=100)
        await add_llm_call(
            clean_db, caller.id, now, cost=250_000, output=20, cache_read=3000
        )
        await add_llm_call(
            clean_db, caller.id, now, cost=100_000, key_source="BYOK", input=7
        )
        # Last month's and another user's calls do not count.
        await add_llm_call(
            clean_db, caller.id, start - dt.timedelta(seconds=1), cost=9_000_000
        )
        await add_llm_call(clean_db, uuid.uuid4(), now, cost=9_000_000)

        llm = (await api.client.get("/api/v1/usage", headers=caller.headers)).json()[
            "llm"
        ]

        assert llm["spent_usd"] == pytest.approx(1.75)
        assert llm["remaining_usd"] == pytest.approx(6.25)
        assert llm["total_cost_usd"] == pytest.approx(1.85)
        assert llm["calls"] == 3
        assert (llm["input_tokens"], llm["output_tokens"]) == (107, 20)
        assert llm["cache_read_tokens"] == 3000
        days = {d["date"]: d for d in llm["days"]}
        assert days[now.date().isoformat()]["calls"] == (
            3 if now.date() == start.date() else 2
        )
        assert days[start.date().isoformat()]["cost_usd"] >= 1.5


class TestListMessages:
    async def test_newest_first(self, api, sign_in, clean_db):
        caller = sign_in()
        await add_messages(clean_db, caller.id, 3)

        body = (await api.client.get("/api/v1/messages", headers=caller.headers)).json()

        assert [m["body"] for m in body["messages"]] == [
            "message 2",
            "message 1",
            "message 0",
        ]
        assert body["messages"][0]["direction"] == "INBOUND"
        assert body["next_before"] is None

    async def test_pages_cover_everything_once(self, api, sign_in, clean_db):
        caller = sign_in()
        # Two at the same instant: the id breaks the tie.
        await add_messages(clean_db, caller.id, 7)
        same = dt.datetime(2026, 5, 1, 12, 3, tzinfo=dt.UTC)
        await add_messages(clean_db, caller.id, 1, start=same)

        seen, before = [], None
        for _ in range(10):
            params = {"limit": 3} | ({"before": before} if before else {})
            page = (
                await api.client.get(
                    "/api/v1/messages", params=params, headers=caller.headers
                )
            ).json()
            seen += [m["id"] for m in page["messages"]]
            before = page["next_before"]
            if before is None:
                break

        assert len(seen) == 8
        assert len(set(seen)) == 8

    @pytest.mark.parametrize("limit", [0, 101, -1])
    async def test_limit_out_of_range_is_422(self, api, sign_in, limit):
        response = await api.client.get(
            "/api/v1/messages", params={"limit": limit}, headers=sign_in().headers
        )

        assert response.status_code == 422

    async def test_a_malformed_cursor_is_422(self, api, sign_in):
        response = await api.client.get(
            "/api/v1/messages",
            params={"before": "yesterday"},
            headers=sign_in().headers,
        )

        assert response.status_code == 422

    async def test_an_unknown_cursor_is_an_empty_page(self, api, sign_in, clean_db):
        caller = sign_in()
        await add_messages(clean_db, caller.id, 2)

        page = (
            await api.client.get(
                "/api/v1/messages",
                params={"before": str(uuid.uuid4())},
                headers=caller.headers,
            )
        ).json()

        assert page == {"messages": [], "next_before": None}

    async def test_another_users_messages_are_never_shown(self, api, sign_in, clean_db):
        ada, eve = sign_in(), sign_in()
        ada_ids = await add_messages(clean_db, ada.id, 4)
        await add_messages(clean_db, eve.id, 1, phone="+15557654321")

        eve_page = (
            await api.client.get("/api/v1/messages", headers=eve.headers)
        ).json()
        # Ada's message id as a cursor reveals nothing either.
        probe = (
            await api.client.get(
                "/api/v1/messages",
                params={"before": str(ada_ids[-1])},
                headers=eve.headers,
            )
        ).json()

        assert [m["body"] for m in eve_page["messages"]] == ["message 0"]
        assert probe["messages"] == []

    async def test_delivery_status_is_what_whatsapps_ticks_would_show(
        self, api, sign_in, clean_db
    ):
        caller = sign_in()
        await clean_db.execute("INSERT INTO users (id) VALUES ($1)", caller.id)
        rows = [
            # (direction, our status, Twilio's last status) -> shown
            ("INBOUND", "RECEIVED", None, None),
            ("OUTBOUND", "SENDING", None, "pending"),
            ("OUTBOUND", "SENT", "queued", "sent"),
            ("OUTBOUND", "SENT", None, "sent"),
            ("OUTBOUND", "SENT", "sent", "sent"),
            ("OUTBOUND", "SENT", "delivered", "delivered"),
            ("OUTBOUND", "SENT", "read", "read"),
            ("OUTBOUND", "FAILED", "undelivered", "failed"),
            ("OUTBOUND", "FAILED", "failed", "failed"),
            ("OUTBOUND", "FAILED", None, "failed"),
            ("OUTBOUND", "SKIPPED", None, None),
        ]
        start = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
        for n, (direction, status, twilio_status, _) in enumerate(rows):
            await clean_db.execute(
                """
                INSERT INTO messages (user_id, phone_e164, direction, body, status,
                                      delivery_status, created_at)
                VALUES ($1, '+15551234567', $2, $3, $4, $5, $6)
                """,
                caller.id,
                direction,
                f"m{n}",
                status,
                twilio_status,
                start + dt.timedelta(minutes=n),
            )

        body = (await api.client.get("/api/v1/messages", headers=caller.headers)).json()

        shown = {m["body"]: m["delivery_status"] for m in body["messages"]}
        assert shown == {f"m{n}": row[3] for n, row in enumerate(rows)}


class TestSetUsageCap:
    async def test_a_cap_below_the_allowance_is_kept_and_shown(
        self, api, sign_in, clean_db
    ):
        caller = sign_in()
        month = utc_today().replace(day=1)
        # Told this month about the allowance; a new cap starts the notices over.
        await add_llm_call(clean_db, caller.id, dt.datetime.now(dt.UTC), cost=3_000_000)
        await clean_db.execute(
            "INSERT INTO llm_usage_monthly (user_id, month, cap_notified_at, "
            "warned_at) VALUES ($1, $2, now(), now())",
            caller.id,
            month,
        )

        response = await api.client.put(
            "/api/v1/usage/cap", json={"cap_usd": 2.504}, headers=caller.headers
        )

        assert response.status_code == 200
        assert response.json()["cap_usd"] == 2.5
        assert response.json()["spent_usd"] == 3.0
        usage = await api.client.get("/api/v1/usage", headers=caller.headers)
        assert usage.json()["llm"]["cap_usd"] == 2.5
        notices = await clean_db.fetchrow(
            "SELECT cap_notified_at, warned_at FROM llm_usage_monthly "
            "WHERE user_id = $1",
            caller.id,
        )
        assert tuple(notices) == (None, None)

        removed = await api.client.put(
            "/api/v1/usage/cap", json={"cap_usd": None}, headers=caller.headers
        )
        assert removed.json()["cap_usd"] is None
        assert (
            await clean_db.fetchval(
                "SELECT llm_monthly_cap_usd FROM users WHERE id = $1", caller.id
            )
            is None
        )

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            ({"cap_usd": 8.01}, 400, "CAP_ABOVE_ALLOWANCE"),
            ({"cap_usd": -1}, 422, "VALIDATION_ERROR"),
            ({}, 422, "VALIDATION_ERROR"),
        ],
    )
    async def test_refused(self, api, sign_in, clean_db, body, status, code):
        caller = sign_in()

        response = await api.client.put(
            "/api/v1/usage/cap", json=body, headers=caller.headers
        )

        assert response.status_code == status
        assert response.json()["code"] == code
        assert (
            await clean_db.fetchval(
                "SELECT llm_monthly_cap_usd FROM users WHERE id = $1", caller.id
            )
            is None
        )

    async def test_needs_a_signed_in_user(self, api):
        response = await api.client.put("/api/v1/usage/cap", json={"cap_usd": 1})

        assert response.status_code == 401
