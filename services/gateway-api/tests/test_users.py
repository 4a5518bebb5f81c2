import pytest


class TestGetMe:
    async def test_a_new_user_has_nothing_yet(self, api, sign_in):
        caller = sign_in(email="ada@example.com")

        response = await api.client.get("/api/v1/users/me", headers=caller.headers)

        assert response.status_code == 200
        body = response.json()
        assert body["id"] == str(caller.id)
        assert body["email"] == "ada@example.com"
        assert body["phone"] is None
        assert body["phone_verified"] is False
        assert body["subscription_status"] == "NONE"
        assert body["assistant_status"] == "NONE"

    async def test_phone_subscription_and_assistant_are_shown(
        self, api, sign_in, db, clean_db
    ):
        caller = sign_in()
        await api.client.post(
            "/api/v1/users/me/phone",
            json={"phone": "+15551234567"},
            headers=caller.headers,
        )
        await db.subscription(clean_db, caller.id, "PAST_DUE")
        await db.assistant(clean_db, caller.id, "READY")

        body = (await api.client.get("/api/v1/users/me", headers=caller.headers)).json()

        assert body["phone"] == "+15551234567"
        assert body["phone_verified"] is False  # claimed, not proven yet
        assert body["subscription_status"] == "PAST_DUE"
        assert body["assistant_status"] == "READY"

    async def test_the_response_carries_a_request_id(self, api, sign_in):
        response = await api.client.get("/api/v1/users/me", headers=sign_in().headers)

        assert len(response.headers["x-request-id"]) == 32


class TestSetPhone:
    async def test_a_valid_number_is_claimed_not_linked(self, api, sign_in, clean_db):
        caller = sign_in()

        response = await api.client.post(
            "/api/v1/users/me/phone",
            json={"phone": "+447700900123"},
            headers=caller.headers,
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["phone"] == "+447700900123"
        assert body["verified"] is False
        assert body["link"] == f"https://wa.me/14155238886?text={body['code']}"
        claimed = await clean_db.fetchrow(
            "SELECT phone_e164, code_sha256 FROM phone_claims WHERE user_id = $1",
            caller.id,
        )
        assert claimed["phone_e164"] == "+447700900123"
        assert body["code"].encode() not in claimed["code_sha256"]
        linked = await clean_db.fetchval(
            "SELECT count(*) FROM user_phones WHERE user_id = $1", caller.id
        )
        assert linked == 0

    async def test_setting_again_replaces_the_number(self, api, sign_in, clean_db):
        caller = sign_in()
        for phone in ("+15551234567", "+15557654321"):
            response = await api.client.post(
                "/api/v1/users/me/phone", json={"phone": phone}, headers=caller.headers
            )
            assert response.status_code == 200

        rows = await clean_db.fetch(
            "SELECT phone_e164 FROM phone_claims WHERE user_id = $1", caller.id
        )
        assert [r["phone_e164"] for r in rows] == ["+15557654321"]

    async def test_setting_the_same_number_again_is_fine(self, api, sign_in):
        caller = sign_in()
        for _ in range(2):
            response = await api.client.post(
                "/api/v1/users/me/phone",
                json={"phone": "+15551234567"},
                headers=caller.headers,
            )
            assert response.status_code == 200

    @pytest.mark.parametrize(
        "typed",
        [
            "+1 (415) 555-0100",
            "+1 415 555 0100",
            "+1-415-555-0100",
            "+1.415.555.0100",
            "001 415 555 0100",
            " +14155550100 ",
            "+14155550100",
        ],
    )
    async def test_common_spellings_are_stored_as_e164(
        self, api, sign_in, clean_db, typed
    ):
        caller = sign_in()

        response = await api.client.post(
            "/api/v1/users/me/phone", json={"phone": typed}, headers=caller.headers
        )

        assert response.status_code == 200, response.text
        assert response.json()["phone"] == "+14155550100"
        stored = await clean_db.fetchval(
            "SELECT phone_e164 FROM phone_claims WHERE user_id = $1", caller.id
        )
        assert stored == "+14155550100"

    @pytest.mark.parametrize(
        ("typed", "says"),
        [
            ("15551234567", "Start the number with + (or 00) and its country code"),
            ("+0551234567", "A country code never starts with 0"),
            ("+1555", "That number has 4 digits"),
            ("+1234567890123456", "That number has 16 digits"),
            ("whatsapp:+15551234567", "can only contain digits"),
            ("+1 555 CALL NOW", "can only contain digits"),
            ("", "Enter your WhatsApp number"),
            ("+1" + "0" * 60, "too long"),
        ],
    )
    async def test_a_wrong_number_gets_a_sentence_saying_what_to_fix(
        self, api, sign_in, typed, says
    ):
        response = await api.client.post(
            "/api/v1/users/me/phone",
            json={"phone": typed},
            headers=sign_in().headers,
        )

        assert response.status_code == 422, typed
        body = response.json()
        assert body["code"] == "INVALID_PHONE"
        assert says in body["detail"]
        assert body["detail"].endswith(".")
        for regex_bit in ("^", "[0-9]", "pattern", "\\+"):
            assert regex_bit not in body["detail"]

    async def test_unknown_fields_are_422(self, api, sign_in):
        response = await api.client.post(
            "/api/v1/users/me/phone",
            json={"phone": "+15551234567", "user_id": "someone-else"},
            headers=sign_in().headers,
        )

        assert response.status_code == 422

    async def test_a_number_another_user_proved_gets_the_same_answer_and_stays(
        self, api, sign_in, clean_db
    ):
        ada, eve = sign_in(), sign_in()
        await api.client.get("/api/v1/users/me", headers=ada.headers)
        await clean_db.execute(
            "INSERT INTO user_phones (user_id, phone_e164) VALUES ($1, $2)",
            ada.id,
            "+15551234567",
        )

        taken = await api.client.post(
            "/api/v1/users/me/phone",
            json={"phone": "+15551234567"},
            headers=eve.headers,
        )
        free = await api.client.post(
            "/api/v1/users/me/phone",
            json={"phone": "+15559876543"},
            headers=sign_in().headers,
        )

        assert taken.status_code == free.status_code == 200
        assert taken.json().keys() == free.json().keys()
        assert taken.json()["verified"] is free.json()["verified"] is False
        owner = await clean_db.fetchval(
            "SELECT user_id FROM user_phones WHERE phone_e164 = '+15551234567'"
        )
        assert owner == ada.id
        eve_me = (await api.client.get("/api/v1/users/me", headers=eve.headers)).json()
        assert eve_me["phone_verified"] is False

    async def test_needs_a_token(self, api):
        response = await api.client.post(
            "/api/v1/users/me/phone", json={"phone": "+15551234567"}
        )

        assert response.status_code == 401
