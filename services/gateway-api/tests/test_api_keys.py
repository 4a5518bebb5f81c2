import pytest
from yourclaw_common.crypto import SecretBox, SecretBoxError
from yourclaw_common.events import Stream, Subject
from yourclaw_common.testing import eventually

ANTHROPIC_KEY = "sk-ant-api03-" + "A1b2C3d4E5" * 9 + "xyzAA"
OPENAI_KEY = "sk-proj-" + "Zy9Xw8Vu7T" * 12 + "k3yO"
GOOGLE_KEY = "AQ.Ab8RN6" + "q1W2e3R4t5" * 5 + "gOOg"
LEGACY_GOOGLE_KEY = "AIza" + "SyD-abcdefghijklmnopqrstuvwxyz0123456789"[:35]
KEYS = {"ANTHROPIC": ANTHROPIC_KEY, "OPENAI": OPENAI_KEY, "GOOGLE": GOOGLE_KEY}
PROVISION = Subject.ASSISTANT_PROVISION_REQUESTED.value


async def add_key(api, caller, provider, key):
    return await api.client.post(
        "/api/v1/api-keys",
        json={"provider": provider, "key": key},
        headers=caller.headers,
    )


class TestStoreApiKey:
    @pytest.mark.parametrize(
        ("provider", "key"),
        [*KEYS.items(), ("GOOGLE", LEGACY_GOOGLE_KEY), ("OPENAI", "sk-" + "a1B2" * 12)],
    )
    async def test_a_valid_key_is_stored_encrypted(
        self, api, sign_in, clean_db, encryption_key, provider, key
    ):
        caller = sign_in()

        response = await add_key(api, caller, provider, key)

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["provider"] == provider
        assert body["key_last4"] == key[-4:]
        assert key not in response.text
        row = await clean_db.fetchrow(
            "SELECT encrypted_key, key_last4 FROM api_keys WHERE user_id = $1",
            caller.id,
        )
        assert key not in row["encrypted_key"]
        box = SecretBox(encryption_key)
        assert box.decrypt(row["encrypted_key"], owner=str(caller.id)) == key

    async def test_the_ciphertext_is_bound_to_its_user(
        self, api, sign_in, clean_db, encryption_key
    ):
        caller = sign_in()
        await add_key(api, caller, "OPENAI", OPENAI_KEY)
        stored = await clean_db.fetchval("SELECT encrypted_key FROM api_keys")

        with pytest.raises(SecretBoxError):
            SecretBox(encryption_key).decrypt(stored, owner=str(sign_in().id))

    @pytest.mark.parametrize(
        ("provider", "key"),
        [
            ("ANTHROPIC", OPENAI_KEY),
            ("ANTHROPIC", "sk-ant-admin01-" + "a" * 40),
            ("OPENAI", ANTHROPIC_KEY),
            ("OPENAI", "sk-admin-" + "a" * 40),
            ("OPENAI", "sk-short"),
            ("GOOGLE", OPENAI_KEY),
            ("GOOGLE", "AIza-too-short"),
            ("MISTRAL", "ms-" + "a" * 40),
            ("ANTHROPIC", ANTHROPIC_KEY + " "),
        ],
    )
    async def test_a_key_in_the_wrong_format_is_422(
        self, api, sign_in, clean_db, provider, key
    ):
        response = await add_key(api, sign_in(), provider, key)

        assert response.status_code == 422
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert key not in response.text
        assert await clean_db.fetchval("SELECT count(*) FROM api_keys") == 0

    async def test_a_second_key_replaces_the_first(self, api, sign_in, clean_db):
        caller = sign_in()
        await add_key(api, caller, "OPENAI", OPENAI_KEY)
        other = "sk-proj-" + "b" * 40 + "Last"

        await add_key(api, caller, "OPENAI", other)

        keys = (await api.client.get("/api/v1/api-keys", headers=caller.headers)).json()
        assert [(k["provider"], k["key_last4"]) for k in keys] == [("OPENAI", "Last")]

    async def test_a_ready_assistant_is_reprovisioned(
        self, api, sign_in, db, js, clean_db
    ):
        caller = sign_in()
        await db.assistant(clean_db, caller.id, "READY")

        await add_key(api, caller, "ANTHROPIC", ANTHROPIC_KEY)

        async def published():
            return await db.stream_events(js, Stream.ASSISTANTS, PROVISION)

        [event] = await eventually(published, message="no provision request")
        assert event["user_id"] == str(caller.id)
        assert event["reason"] == "api_keys_changed"
        assert ANTHROPIC_KEY not in str(event)

    async def test_no_assistant_means_no_reprovisioning(self, api, sign_in, clean_db):
        caller = sign_in()

        await add_key(api, caller, "ANTHROPIC", ANTHROPIC_KEY)

        assert await clean_db.fetchval("SELECT count(*) FROM outbox") == 0

    async def test_without_an_encryption_key_is_503(
        self, start_gateway, supabase, sign_in, clean_db
    ):
        async with start_gateway(supabase_url=supabase.url, encryption_key="") as gw:
            response = await add_key(gw, sign_in(), "OPENAI", OPENAI_KEY)

        assert response.status_code == 503
        assert response.json()["code"] == "ENCRYPTION_NOT_CONFIGURED"


class TestListApiKeys:
    async def test_values_are_never_returned(self, api, sign_in):
        caller = sign_in()
        for provider, key in KEYS.items():
            await add_key(api, caller, provider, key)

        response = await api.client.get("/api/v1/api-keys", headers=caller.headers)

        assert response.status_code == 200
        assert [set(k) for k in response.json()] == [
            {"provider", "key_last4", "created_at"}
        ] * 3
        for key in KEYS.values():
            assert key not in response.text
            assert key[:-4] not in response.text


class TestDeleteApiKey:
    async def test_the_key_is_removed(self, api, sign_in, clean_db):
        caller = sign_in()
        await add_key(api, caller, "GOOGLE", GOOGLE_KEY)

        response = await api.client.delete(
            "/api/v1/api-keys/GOOGLE", headers=caller.headers
        )

        assert response.status_code == 204
        assert await clean_db.fetchval("SELECT count(*) FROM api_keys") == 0

    async def test_a_missing_key_is_404(self, api, sign_in):
        response = await api.client.delete(
            "/api/v1/api-keys/GOOGLE", headers=sign_in().headers
        )

        assert response.status_code == 404
        assert response.json()["code"] == "API_KEY_NOT_FOUND"

    async def test_an_unknown_provider_is_422(self, api, sign_in):
        response = await api.client.delete(
            "/api/v1/api-keys/MISTRAL", headers=sign_in().headers
        )

        assert response.status_code == 422

    async def test_removing_reprovisions_a_ready_assistant(
        self, api, sign_in, db, clean_db
    ):
        caller = sign_in()
        await add_key(api, caller, "GOOGLE", GOOGLE_KEY)
        await db.assistant(clean_db, caller.id, "READY")

        await api.client.delete("/api/v1/api-keys/GOOGLE", headers=caller.headers)

        subjects = await clean_db.fetch("SELECT subject, payload FROM outbox")
        assert [r["subject"] for r in subjects] == [PROVISION]
        assert subjects[0]["payload"]["reason"] == "api_keys_changed"


class TestIsolation:
    async def test_one_user_cannot_see_or_remove_anothers_keys(
        self, api, sign_in, clean_db
    ):
        ada, eve = sign_in(), sign_in()
        await add_key(api, ada, "OPENAI", OPENAI_KEY)

        listed = (await api.client.get("/api/v1/api-keys", headers=eve.headers)).json()
        deleted = await api.client.delete(
            "/api/v1/api-keys/OPENAI", headers=eve.headers
        )
        await add_key(api, eve, "OPENAI", "sk-proj-" + "e" * 40 + "EveK")

        assert listed == []
        assert deleted.status_code == 404
        ada_keys = (
            await api.client.get("/api/v1/api-keys", headers=ada.headers)
        ).json()
        assert [k["key_last4"] for k in ada_keys] == [OPENAI_KEY[-4:]]
        assert await clean_db.fetchval("SELECT count(*) FROM api_keys") == 2
