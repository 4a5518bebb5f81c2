"""The Telegram edge: the webhook (secret token, Updates → `inbound.telegram`,
`/start <code>` linking a chat) and the link endpoint."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from yourclaw_common.events import Stream, Subject
from yourclaw_devkit.pytest_plugin import api_error
from yourclaw_gateway_api.webhooks.telegram import (
    SECRET_HEADER,
    TELEGRAM_WEBHOOK_PATH,
)

SECRET = "telegram-webhook-secret_0123456789"
_update_ids = itertools.count(800_000_000)


@pytest.fixture
def start_tg(start_gateway, clean_db, js, telegram_sim):
    """Start a gateway with Telegram configured against the stand-in (and the
    settings given)."""

    def start(**overrides: Any):
        return start_gateway(
            telegram_bot_token=telegram_sim.token,
            telegram_webhook_secret=SECRET,
            telegram_api_base=telegram_sim.url,
            **overrides,
        )

    return start


@pytest_asyncio.fixture(loop_scope="session")
async def tg(start_tg, supabase):
    """A gateway with Telegram configured against the stand-in."""
    async with start_tg(supabase_url=supabase.url) as gw:
        yield gw


def message_update(
    chat_id: int = 1001,
    text: str | None = "hello",
    *,
    update_id: int | None = None,
    chat_type: str = "private",
    **fields: Any,
) -> dict[str, Any]:
    """An Update as the Bot API posts it for a message the user sent."""
    message: dict[str, Any] = {
        "message_id": 7,
        "from": {"id": chat_id, "is_bot": False, "first_name": "Ada"},
        "chat": {
            "id": chat_id,
            "first_name": "Ada",
            "username": "ada_l",
            "type": chat_type,
        },
        "date": 1_700_000_000,
        **fields,
    }
    if text is not None:
        message["text"] = text
    return {"update_id": update_id or next(_update_ids), "message": message}


async def post_update(gw, update: dict[str, Any], *, secret: str | None = SECRET):
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    return await gw.client.post(TELEGRAM_WEBHOOK_PATH, json=update, headers=headers)


async def published(db, js) -> list[dict[str, Any]]:
    return await db.stream_events(js, Stream.INBOUND, Subject.INBOUND_TELEGRAM)


async def new_code(pool, user_id: uuid.UUID) -> str:
    from yourclaw_gateway_api import telegram_links

    await pool.execute(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
    )
    async with pool.acquire() as conn:
        code, _ = await telegram_links.create_code(conn, user_id)
    return code


class TestTelegramWebhook:
    async def test_message_is_published_once_per_update(self, tg, db, js):
        update = message_update(text="hello there")
        first = await post_update(tg, update)
        again = await post_update(tg, update)  # Telegram's retry
        assert first.status_code == again.status_code == 200
        assert first.json() == {"received": True, "queued": True}
        (event,) = await published(db, js)
        assert event["_headers"]["Nats-Msg-Id"] == f"telegram:{update['update_id']}"
        assert event["update_id"] == update["update_id"]
        assert (event["chat_id"], event["message_id"]) == (1001, 7)
        assert event["text"] == "hello there"
        assert (event["username"], event["first_name"]) == ("ada_l", "Ada")
        assert event["link"] is None

    async def test_forged_or_missing_secret_is_401_and_nothing_published(
        self, tg, db, js
    ):
        for secret in ("guess", None, SECRET + "x", ""):
            answer = await post_update(tg, message_update(), secret=secret)
            assert answer.status_code == 401
            assert api_error(answer)["code"] == "INVALID_SECRET_TOKEN"
        assert await published(db, js) == []

    async def test_unconfigured_webhook_refuses_everything(
        self, start_gateway, js, db, telegram_sim
    ):
        async with start_gateway(telegram_bot_token=telegram_sim.token) as gw:
            answer = await post_update(gw, message_update(), secret="")
        assert answer.status_code == 403
        assert api_error(answer)["code"] == "TELEGRAM_NOT_CONFIGURED"
        assert await published(db, js) == []

    async def test_not_an_update_is_400(self, tg, db, js):
        answer = await tg.client.post(
            TELEGRAM_WEBHOOK_PATH,
            content=b"not json",
            headers={SECRET_HEADER: SECRET, "content-type": "application/json"},
        )
        assert answer.status_code == 400
        assert api_error(answer)["code"] == "INVALID_UPDATE"
        answer = await post_update(tg, {"message": {}})
        assert api_error(answer)["code"] == "INVALID_UPDATE"
        assert await published(db, js) == []

    async def test_other_updates_are_acknowledged_and_dropped(self, tg, db, js):
        edited = {"update_id": next(_update_ids), "edited_message": {}}
        group = message_update(-100123, "hi all", chat_type="supergroup")
        for update in (edited, group):
            answer = await post_update(tg, update)
            assert answer.json() == {"received": True, "queued": False}
        assert await published(db, js) == []

    async def test_voice_note_and_largest_photo_size(self, tg, db, js):
        voice = {
            "file_id": "AwACAgIvoice",
            "file_unique_id": "u1",
            "duration": 2,
            "mime_type": "audio/ogg",
            "file_size": 5000,
        }
        photo = [
            {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
            {
                "file_id": "large",
                "file_unique_id": "l",
                "width": 1280,
                "height": 960,
                "file_size": 90_000,
            },
            {
                "file_id": "medium",
                "file_unique_id": "m",
                "width": 320,
                "height": 240,
                "file_size": 9_000,
            },
        ]
        await post_update(tg, message_update(text=None, voice=voice))
        await post_update(tg, message_update(text=None, photo=photo, caption="look"))
        first, second = await published(db, js)
        assert first["media"] == [{"url": "AwACAgIvoice", "content_type": "audio/ogg"}]
        assert first["text"] == ""
        assert second["media"] == [{"url": "large", "content_type": "image/jpeg"}]
        assert second["text"] == "look"


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{want}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


class TestServedBeforeFastApi:
    """The webhook is a lean handler in front of FastAPI, as Twilio's are: the
    edge's guarantees (body limit, per-IP limit, counting) hold for it too."""

    async def test_outcomes_are_counted_like_every_route(self, tg):
        async def scrape() -> list[float]:
            text = (await tg.client.get("/metrics")).text
            route = {"route": TELEGRAM_WEBHOOK_PATH}
            return [
                metric(
                    text,
                    "yourclaw_gateway_api_webhook_requests_total",
                    provider="telegram",
                    outcome=outcome,
                )
                for outcome in ("accepted", "invalid_signature", "ignored")
            ] + [
                metric(
                    text,
                    "yourclaw_gateway_api_api_requests_total",
                    method="POST",
                    status=status,
                    **route,
                )
                for status in ("200", "401")
            ]

        before = await scrape()
        await post_update(tg, message_update())
        await post_update(tg, message_update(), secret="guess")
        await post_update(tg, {"update_id": next(_update_ids), "edited_message": {}})
        after = await scrape()

        assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 2, 1]

    async def test_forged_secrets_spend_the_ip_budget_then_429(self, start_tg, js, db):
        async with start_tg(
            webhook_rate_limit_per_second=0.001, webhook_rate_limit_burst=2
        ) as gw:
            forged = [
                (await post_update(gw, message_update(), secret="guess")).status_code
                for _ in range(3)
            ]
            # The IP spent its budget on guesses: even a good update waits.
            limited = await post_update(gw, message_update())

        assert forged == [401, 401, 429]
        assert limited.status_code == 429
        assert api_error(limited)["code"] == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1
        assert await published(db, js) == []

    async def test_accepted_updates_are_never_limited(self, start_tg):
        async with start_tg(
            webhook_rate_limit_per_second=0.001, webhook_rate_limit_burst=1
        ) as gw:
            codes = [
                (await post_update(gw, message_update())).status_code for _ in range(5)
            ]

        assert codes == [200] * 5

    async def test_a_body_over_the_webhook_limit_is_413(self, start_tg, js, db):
        async with start_tg(webhook_max_body_bytes=1024) as gw:
            small = await post_update(gw, message_update(text="short"))
            large = await post_update(gw, message_update(text="x" * 2000))

        assert small.status_code == 200
        assert large.status_code == 413
        assert api_error(large)["code"] == "PAYLOAD_TOO_LARGE"
        assert len(await published(db, js)) == 1

    async def test_only_post(self, tg):
        answer = await tg.client.get(TELEGRAM_WEBHOOK_PATH)

        assert answer.status_code == 405
        assert api_error(answer)["code"] == "METHOD_NOT_ALLOWED"
        assert answer.headers["allow"] == "POST"

    async def test_publish_failure_is_503_so_telegram_retries(self, tg, js):
        await js.delete_stream(Stream.INBOUND)

        answer = await post_update(tg, message_update())

        assert answer.status_code == 503
        assert api_error(answer)["code"] == "PUBLISH_FAILED"
        assert answer.headers["retry-after"] == "2"


class TestStartLink:
    async def test_code_links_the_chat_and_is_not_published(self, clean_db, tg, db, js):
        user_id = uuid.uuid4()
        code = await new_code(clean_db, user_id)
        update = message_update(2001, f"/start {code}")
        answer = await post_update(tg, update)
        assert answer.json()["queued"] is True
        (event,) = await published(db, js)
        assert event["link"] == "linked"
        assert event["text"] == "/start"
        assert code not in str(event)
        row = await clean_db.fetchrow("SELECT * FROM telegram_links")
        assert (row["user_id"], row["chat_id"], row["username"]) == (
            user_id,
            2001,
            "ada_l",
        )
        assert row["linked_by"] == update["update_id"]

    async def test_retried_update_is_still_linked(self, clean_db, tg):
        from yourclaw_gateway_api import telegram_links

        pool = clean_db
        user_id = uuid.uuid4()
        code = await new_code(pool, user_id)
        update = message_update(2002, f"/start {code}")
        await post_update(tg, update)
        async with pool.acquire() as conn:
            again = await telegram_links.redeem(
                conn,
                code,
                chat_id=2002,
                username=None,
                update_id=update["update_id"],
            )
        assert again == "linked"

    async def test_used_expired_and_unknown_codes(self, clean_db, tg, db, js):
        pool = clean_db
        used = await new_code(pool, uuid.uuid4())
        await post_update(tg, message_update(3001, f"/start {used}"))
        expired = await new_code(pool, uuid.uuid4())
        await pool.execute(
            "UPDATE telegram_link_codes SET expires_at = now() - interval '1 second' "
            "WHERE used_at IS NULL"
        )
        for text in (
            f"/start {used}",  # from another chat
            f"/start {expired}",
            "/start " + "A" * 32,
            "/start not a code",
        ):
            await post_update(tg, message_update(3002, text))
        events = await published(db, js)
        assert [e["link"] for e in events] == [
            "linked",
            "expired",
            "expired",
            "invalid",
            "invalid",
        ]
        chats = await pool.fetch("SELECT chat_id FROM telegram_links")
        assert [r["chat_id"] for r in chats] == [3001]

    async def test_same_link_opened_again_from_its_chat_is_linked(
        self, clean_db, tg, db, js
    ):
        pool = clean_db
        code = await new_code(pool, uuid.uuid4())
        await post_update(tg, message_update(3003, f"/start {code}"))
        await post_update(tg, message_update(3003, f"/start {code}"))
        assert [e["link"] for e in await published(db, js)] == ["linked", "linked"]

    async def test_a_chat_linked_to_another_account_is_not_taken(
        self, clean_db, tg, db, js
    ):
        pool = clean_db
        owner, other = uuid.uuid4(), uuid.uuid4()
        await post_update(
            tg, message_update(4001, f"/start {await new_code(pool, owner)}")
        )
        await post_update(
            tg, message_update(4001, f"/start {await new_code(pool, other)}")
        )
        assert [e["link"] for e in await published(db, js)] == ["linked", "invalid"]
        rows = await pool.fetch("SELECT user_id, chat_id FROM telegram_links")
        assert [(r["user_id"], r["chat_id"]) for r in rows] == [(owner, 4001)]

    async def test_linking_another_chat_moves_the_link(self, clean_db, tg):
        pool = clean_db
        user_id = uuid.uuid4()
        await post_update(
            tg, message_update(5001, f"/start {await new_code(pool, user_id)}")
        )
        await post_update(
            tg, message_update(5002, f"/start {await new_code(pool, user_id)}")
        )
        rows = await pool.fetch("SELECT user_id, chat_id FROM telegram_links")
        assert [(r["user_id"], r["chat_id"]) for r in rows] == [(user_id, 5002)]

    async def test_bare_start_is_a_message(self, tg, db, js):
        await post_update(tg, message_update(5003, "/start"))
        (event,) = await published(db, js)
        assert (event["text"], event["link"]) == ("/start", None)


class TestLinkEndpoint:
    async def test_link_is_a_t_me_deep_link_with_a_fresh_code(
        self, clean_db, tg, sign_in, telegram_sim, db, js
    ):
        caller = sign_in()
        answers = [
            await tg.client.post(
                "/api/v1/channels/telegram/link", headers=caller.headers
            )
            for _ in range(2)
        ]
        assert [a.status_code for a in answers] == [200, 200]
        bodies = [a.json() for a in answers]
        assert set(bodies[0]) == {"url", "expires_at"}
        urls = [urlsplit(b["url"]) for b in bodies]
        assert {(u.scheme, u.netloc, u.path) for u in urls} == {
            ("https", "t.me", f"/{telegram_sim.state.username}")
        }
        codes = [parse_qs(u.query)["start"][0] for u in urls]
        assert codes[0] != codes[1]
        for code in codes:
            # Telegram's start parameter: up to 64 of A-Z a-z 0-9 _ -.
            assert re.fullmatch(r"[A-Za-z0-9_-]{32,64}", code)
        expires = dt.datetime.fromisoformat(bodies[0]["expires_at"])
        left = expires - dt.datetime.now(dt.UTC)
        assert dt.timedelta(minutes=14) < left <= dt.timedelta(minutes=15)
        # Only a hash is kept.
        stored = await clean_db.fetch("SELECT code_sha256 FROM telegram_link_codes")
        assert len(stored) == 2
        assert all(
            code.encode() not in bytes(r["code_sha256"])
            for r in stored
            for code in codes
        )

        # Opening the link: Telegram sends /start <code> from the user's chat.
        await post_update(tg, message_update(6001, f"/start {codes[1]}"))
        row = await clean_db.fetchrow("SELECT user_id FROM telegram_links")
        assert row["user_id"] == caller.id
        assert [e["link"] for e in await published(db, js)] == ["linked"]

    async def test_needs_a_signed_in_user(self, tg):
        answer = await tg.client.post("/api/v1/channels/telegram/link")
        assert answer.status_code == 401

    async def test_503_without_a_bot(self, start_gateway, supabase, sign_in, clean_db):
        async with start_gateway(supabase_url=supabase.url) as gw:
            answer = await gw.client.post(
                "/api/v1/channels/telegram/link", headers=sign_in().headers
            )
        assert answer.status_code == 503
        assert api_error(answer)["code"] == "TELEGRAM_NOT_CONFIGURED"

    async def test_503_when_telegram_does_not_answer(
        self, start_gateway, supabase, sign_in, clean_db
    ):
        async with start_gateway(
            supabase_url=supabase.url,
            telegram_bot_token="1:wrong",
            telegram_webhook_secret=SECRET,
            telegram_api_base="http://127.0.0.1:9",
        ) as gw:
            answer = await gw.client.post(
                "/api/v1/channels/telegram/link", headers=sign_in().headers
            )
        assert answer.status_code == 503
        assert api_error(answer)["code"] == "TELEGRAM_UNAVAILABLE"


class TestNoSecretInLogs:
    async def test_token_secret_and_codes_stay_out_of_logs(
        self, tg, sign_in, telegram_sim, json_logs
    ):
        caller = sign_in()
        link = await tg.client.post(
            "/api/v1/channels/telegram/link", headers=caller.headers
        )
        code = parse_qs(urlsplit(link.json()["url"]).query)["start"][0]
        await post_update(tg, message_update(7001, "hi"), secret=SECRET[:-1])
        await post_update(tg, message_update(7001, f"/start {code}"))
        logged = str(json_logs())
        assert "gateway.telegram.link" in logged
        for secret in (
            telegram_sim.token,
            telegram_sim.token.partition(":")[2],
            SECRET,
            code,
        ):
            assert secret not in logged
