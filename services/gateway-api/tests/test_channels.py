"""`/api/v1/channels` and the phone claim's channel answer (docs/channels.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

SMS_NUMBER = "+15550100999"
ALLOWED = "AT,BE,DE,FR,IT,NL,NO,ES,SE,BR"
ITALIAN = "+393331234567"
AMERICAN = "+14155550100"
NOT_ALLOWED = "WhatsApp is not available in your country"


@pytest_asyncio.fixture(loop_scope="session")
async def full(start_gateway, supabase, clean_db, js) -> AsyncIterator[Any]:
    """A gateway with Telegram and SMS configured and WhatsApp for the EEA and
    Brazil only, on an emptied database."""
    async with start_gateway(
        supabase_url=supabase.url,
        whatsapp_allowed_countries=ALLOWED,
        twilio_sms_number=SMS_NUMBER,
        telegram_bot_token="123456:telegram-test-token",
    ) as gw:
        yield gw


async def prove(pool, user_id, phone):
    """What a message carrying the code would have done (`verification.prove`)."""
    await pool.execute(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
    )
    await pool.execute(
        "INSERT INTO user_phones (user_id, phone_e164, verified_by) "
        "VALUES ($1, $2, 'SM' || md5(random()::text))",
        user_id,
        phone,
    )


async def link_telegram(pool, user_id, username="ada_l"):
    await pool.execute(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
    )
    await pool.execute(
        "INSERT INTO telegram_links (user_id, chat_id, username, linked_by) "
        "VALUES ($1, 4242, $2, 1)",
        user_id,
        username,
    )


async def wrote_on(pool, user_id, channel, address):
    await pool.execute(
        "INSERT INTO messages (user_id, phone_e164, direction, body, status, channel) "
        "VALUES ($1, $2, 'INBOUND', 'hi', 'RECEIVED', $3)",
        user_id,
        address,
        channel,
    )


def by_name(body):
    return {c["name"]: c for c in body["channels"]}


async def channels_of(gw, caller):
    response = await gw.client.get("/api/v1/channels", headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def prefer(gw, caller, channel):
    return await gw.client.put(
        "/api/v1/channels/preferred",
        json={"channel": channel},
        headers=caller.headers,
    )


async def claim(gw, caller, phone):
    response = await gw.client.post(
        "/api/v1/users/me/phone", json={"phone": phone}, headers=caller.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


class TestGetChannels:
    async def test_unauthenticated_is_401(self, api):
        response = await api.client.get("/api/v1/channels")

        assert response.status_code == 401
        assert response.json()["code"] == "AUTH_REQUIRED"

    async def test_a_new_user_on_a_server_with_whatsapp_only(self, api, sign_in):
        caller = sign_in()

        response = await api.client.get("/api/v1/channels", headers=caller.headers)

        assert response.status_code == 200, response.text
        assert response.json() == {
            "preferred": None,
            "effective": "whatsapp",
            "channels": [
                {
                    "name": "whatsapp",
                    "available": True,
                    "linked": False,
                    "address": None,
                    "reason": None,
                },
                {
                    "name": "telegram",
                    "available": False,
                    "linked": False,
                    "address": None,
                },
                {
                    "name": "sms",
                    "available": False,
                    "linked": False,
                    "address": None,
                    "number": None,
                    "opted_out": False,
                },
            ],
            "voice_replies": False,
        }

    async def test_every_channel_linked(self, full, sign_in, clean_db):
        caller = sign_in()
        await prove(clean_db, caller.id, ITALIAN)
        await link_telegram(clean_db, caller.id)

        body = await channels_of(full, caller)

        assert body["preferred"] is None
        assert body["effective"] == "whatsapp"
        assert by_name(body) == {
            "whatsapp": {
                "name": "whatsapp",
                "available": True,
                "linked": True,
                "address": ITALIAN,
                "reason": None,
            },
            "telegram": {
                "name": "telegram",
                "available": True,
                "linked": True,
                "address": "@ada_l",
            },
            "sms": {
                "name": "sms",
                "available": True,
                "linked": True,
                "address": ITALIAN,
                "number": SMS_NUMBER,
                "opted_out": False,
            },
        }

    async def test_a_number_outside_the_allowed_countries(
        self, full, sign_in, clean_db
    ):
        caller = sign_in()
        await prove(clean_db, caller.id, AMERICAN)

        body = await channels_of(full, caller)

        whatsapp = by_name(body)["whatsapp"]
        assert whatsapp["available"] is False
        assert whatsapp["linked"] is True
        assert whatsapp["reason"].startswith(NOT_ALLOWED)
        assert "Telegram or SMS" in whatsapp["reason"]
        assert body["effective"] == "sms"

    async def test_a_claimed_number_tells_the_country_before_it_is_proven(
        self, full, sign_in
    ):
        caller = sign_in()
        await claim(full, caller, AMERICAN)

        body = await channels_of(full, caller)

        assert by_name(body)["whatsapp"]["available"] is False
        assert by_name(body)["whatsapp"]["linked"] is False

    async def test_an_sms_opt_out_is_shown_and_not_used(self, full, sign_in, clean_db):
        caller = sign_in()
        await prove(clean_db, caller.id, AMERICAN)
        await clean_db.execute(
            "INSERT INTO sms_opt_outs (phone_e164) VALUES ($1)", AMERICAN
        )
        await link_telegram(clean_db, caller.id, username=None)

        body = await channels_of(full, caller)

        assert by_name(body)["sms"]["opted_out"] is True
        assert by_name(body)["telegram"]["address"] is None  # a chat without @name
        assert body["effective"] == "telegram"

    async def test_effective_follows_the_last_channel_written_on(
        self, full, sign_in, clean_db
    ):
        caller = sign_in()
        await prove(clean_db, caller.id, ITALIAN)
        await link_telegram(clean_db, caller.id)
        await wrote_on(clean_db, caller.id, "whatsapp", ITALIAN)
        await wrote_on(clean_db, caller.id, "telegram", "4242")

        body = await channels_of(full, caller)

        assert body["preferred"] is None
        assert body["effective"] == "telegram"


class TestSetPreferred:
    async def test_unauthenticated_is_401(self, api):
        response = await api.client.put(
            "/api/v1/channels/preferred", json={"channel": "sms"}
        )

        assert response.status_code == 401

    async def test_a_linked_channel_is_kept(self, full, sign_in, clean_db):
        caller = sign_in()
        await prove(clean_db, caller.id, ITALIAN)
        await wrote_on(clean_db, caller.id, "whatsapp", ITALIAN)

        response = await prefer(full, caller, "sms")

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["preferred"] == "sms"
        assert body["effective"] == "sms"
        assert [c["name"] for c in body["channels"]] == ["whatsapp", "telegram", "sms"]
        stored = await clean_db.fetchval(
            "SELECT preferred_channel FROM users WHERE id = $1", caller.id
        )
        assert stored == "sms"
        assert await channels_of(full, caller) == body

    async def test_null_goes_back_to_the_last_channel(self, full, sign_in, clean_db):
        caller = sign_in()
        await prove(clean_db, caller.id, ITALIAN)
        await clean_db.execute(
            "UPDATE users SET preferred_channel = 'sms' WHERE id = $1", caller.id
        )

        response = await prefer(full, caller, None)

        assert response.status_code == 200
        assert response.json()["preferred"] is None
        assert response.json()["effective"] == "whatsapp"

    @pytest.mark.parametrize("channel", ["telegram", "sms", "whatsapp"])
    async def test_a_channel_without_an_address_is_422(
        self, full, sign_in, clean_db, channel
    ):
        caller = sign_in()

        response = await prefer(full, caller, channel)

        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "CHANNEL_NOT_LINKED"
        assert body["detail"].startswith("You can't be reached on")
        assert (
            await clean_db.fetchval(
                "SELECT preferred_channel FROM users WHERE id = $1", caller.id
            )
            is None
        )

    async def test_whatsapp_outside_the_allowed_countries_is_422(
        self, full, sign_in, clean_db
    ):
        caller = sign_in()
        await prove(clean_db, caller.id, AMERICAN)

        response = await prefer(full, caller, "whatsapp")

        assert response.status_code == 422
        assert response.json()["code"] == "CHANNEL_NOT_AVAILABLE"
        assert response.json()["detail"].startswith(NOT_ALLOWED)

    async def test_a_channel_the_server_lacks_is_422(self, api, sign_in, clean_db):
        caller = sign_in()
        await prove(clean_db, caller.id, ITALIAN)

        response = await prefer(api, caller, "sms")

        assert response.status_code == 422
        assert response.json() == {
            "detail": "SMS is not set up on this server.",
            "code": "CHANNEL_NOT_AVAILABLE",
        }

    @pytest.mark.parametrize(
        "body", [{"channel": "fax"}, {}, {"channel": "sms", "extra": 1}]
    )
    async def test_a_bad_body_is_422(self, api, sign_in, body):
        response = await api.client.put(
            "/api/v1/channels/preferred", json=body, headers=sign_in().headers
        )

        assert response.status_code == 422
        assert response.json()["code"] == "VALIDATION_ERROR"


class TestVoiceReplies:
    async def test_unauthenticated_is_401(self, api):
        response = await api.client.put(
            "/api/v1/channels/voice", json={"enabled": True}
        )

        assert response.status_code == 401

    async def test_on_then_off_is_stored_and_shown(self, api, sign_in, clean_db):
        caller = sign_in()

        turned_on = await api.client.put(
            "/api/v1/channels/voice", json={"enabled": True}, headers=caller.headers
        )

        assert turned_on.status_code == 200, turned_on.text
        assert turned_on.json()["voice_replies"] is True
        assert await clean_db.fetchval(
            "SELECT voice_replies FROM users WHERE id = $1", caller.id
        )
        assert await channels_of(api, caller) == turned_on.json()

        turned_off = await api.client.put(
            "/api/v1/channels/voice", json={"enabled": False}, headers=caller.headers
        )

        assert turned_off.json()["voice_replies"] is False
        assert (await channels_of(api, caller))["voice_replies"] is False

    @pytest.mark.parametrize(
        "body",
        [{}, {"enabled": "yes"}, {"enabled": 1}, {"enabled": True, "extra": 1}],
    )
    async def test_a_bad_body_is_422(self, api, sign_in, clean_db, body):
        caller = sign_in()

        response = await api.client.put(
            "/api/v1/channels/voice", json=body, headers=caller.headers
        )

        assert response.status_code == 422
        assert set(response.json()) == {"detail", "code"}
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert not await clean_db.fetchval(
            "SELECT voice_replies FROM users WHERE id = $1", caller.id
        )


class TestPhoneClaimChannel:
    async def test_an_allowed_number_gets_the_whatsapp_link(self, full, sign_in):
        body = await claim(full, sign_in(), "+39 333 123 4567")

        assert body["phone"] == ITALIAN
        assert body["whatsapp_available"] is True
        assert body["link"] == f"https://wa.me/14155238886?text={body['code']}"

    async def test_a_disallowed_number_gets_the_code_by_sms(
        self, full, sign_in, clean_db
    ):
        caller = sign_in()

        body = await claim(full, caller, "+1 (415) 555-0100")

        assert set(body) == {"phone", "verified", "code", "link", "whatsapp_available"}
        assert body["phone"] == AMERICAN
        assert body["verified"] is False
        assert body["whatsapp_available"] is False
        assert body["link"] == f"sms:{SMS_NUMBER}?body={body['code']}"
        # Claimed like any other number: proven by a message carrying the code.
        claimed = await clean_db.fetchval(
            "SELECT phone_e164 FROM phone_claims WHERE user_id = $1", caller.id
        )
        assert claimed == AMERICAN

    async def test_without_sms_the_whatsapp_link_stays(
        self, start_gateway, supabase, sign_in
    ):
        async with start_gateway(
            supabase_url=supabase.url, whatsapp_allowed_countries="IT"
        ) as gw:
            body = await claim(gw, sign_in(), AMERICAN)

        assert body["whatsapp_available"] is False
        assert body["link"] == f"https://wa.me/14155238886?text={body['code']}"

    async def test_a_proven_number_says_whether_whatsapp_is_available(
        self, full, sign_in, clean_db
    ):
        caller = sign_in()
        await prove(clean_db, caller.id, AMERICAN)

        assert await claim(full, caller, AMERICAN) == {
            "phone": AMERICAN,
            "verified": True,
            "code": None,
            "link": None,
            "whatsapp_available": False,
        }

    async def test_everywhere_by_default(self, api, sign_in):
        body = await claim(api, sign_in(), AMERICAN)

        assert body["whatsapp_available"] is True
