import uuid

import pytest
from yourclaw_common.events import Stream, Subject
from yourclaw_common.models import AVAILABLE_MODELS, DEFAULT_MODEL
from yourclaw_gateway_api.service import request_event_id

PROVISION = Subject.ASSISTANT_PROVISION_REQUESTED.value
DEPROVISION = Subject.ASSISTANT_DEPROVISION_REQUESTED.value


async def requested(db, js, subject=PROVISION):
    return await db.stream_events(js, Stream.ASSISTANTS, subject)


class TestListModels:
    async def test_the_seed_models_are_listed(self, api):
        response = await api.client.get("/api/v1/models")

        assert response.status_code == 200
        ids = [m["id"] for m in response.json()]
        assert ids == [m.id for m in AVAILABLE_MODELS]
        assert [m["id"] for m in response.json() if m["default"]] == [DEFAULT_MODEL]


class TestGetAssistant:
    async def test_none_without_an_assistant(self, api, sign_in):
        response = await api.client.get("/api/v1/assistants", headers=sign_in().headers)

        assert response.status_code == 200
        assert response.json()["status"] == "NONE"
        assert response.json()["model"] == DEFAULT_MODEL

    async def test_a_sleeping_assistant_is_shown_as_suspended(
        self, api, sign_in, db, clean_db
    ):
        caller = sign_in()
        await db.assistant(clean_db, caller.id, "SUSPENDED")

        response = await api.client.get("/api/v1/assistants", headers=caller.headers)

        assert response.status_code == 200
        assert response.json()["status"] == "SUSPENDED"

    async def test_the_assistant_is_shown_without_its_secrets(
        self, api, sign_in, db, clean_db
    ):
        caller = sign_in()
        await db.assistant(
            clean_db,
            caller.id,
            "READY",
            model="openai/gpt-4o",
            gateway_token_encrypted="gAAAA-secret",
            port=19001,
        )

        response = await api.client.get("/api/v1/assistants", headers=caller.headers)

        body = response.json()
        assert body["status"] == "READY"
        assert body["model"] == "openai/gpt-4o"
        assert "gAAAA-secret" not in response.text
        assert set(body) == {
            "status",
            "model",
            "created_at",
            "updated_at",
            "last_message_at",
            "last_error",
        }

    async def test_the_error_is_shown_when_provisioning_failed(
        self, api, sign_in, db, clean_db
    ):
        caller = sign_in()
        await db.assistant(clean_db, caller.id, "ERROR", last_error="no host has room")

        body = (
            await api.client.get("/api/v1/assistants", headers=caller.headers)
        ).json()

        assert body["last_error"] == "no host has room"


class TestCreateAssistant:
    async def test_without_a_subscription_is_402(self, api, sign_in, db, js):
        response = await api.client.post(
            "/api/v1/assistants", headers=sign_in().headers
        )

        assert response.status_code == 402
        assert response.json()["code"] == "SUBSCRIPTION_REQUIRED"
        assert await requested(db, js) == []

    async def test_a_canceled_subscription_is_402(self, api, sign_in, db, js, clean_db):
        caller = sign_in()
        await db.subscription(clean_db, caller.id, "CANCELED")

        response = await api.client.post("/api/v1/assistants", headers=caller.headers)

        assert response.status_code == 402

    @pytest.mark.parametrize("status", ["ACTIVE", "PAST_DUE"])
    async def test_a_subscriber_gets_202_and_a_request(
        self, api, sign_in, db, js, clean_db, status
    ):
        caller = sign_in()
        await db.subscription(clean_db, caller.id, status)

        response = await api.client.post("/api/v1/assistants", headers=caller.headers)

        assert response.status_code == 202, response.text
        assert response.json() == {"status": "PROVISIONING"}
        [event] = await requested(db, js)
        assert event["user_id"] == str(caller.id)
        assert event["reason"] == "created"
        assert event["model"] is None
        # The request id of the HTTP request follows the event.
        assert (
            event["_headers"]["Yourclaw-Correlation-Id"]
            == response.headers["x-request-id"]
        )

    async def test_an_existing_assistant_is_recreated(
        self, api, sign_in, db, js, clean_db
    ):
        caller = sign_in()
        await db.subscription(clean_db, caller.id)
        await db.assistant(clean_db, caller.id, "READY")

        response = await api.client.post("/api/v1/assistants", headers=caller.headers)

        assert response.status_code == 202
        [event] = await requested(db, js)
        assert event["reason"] == "recreated"

    async def test_a_double_click_makes_one_request(
        self, api, sign_in, db, js, clean_db
    ):
        caller = sign_in()
        await db.subscription(clean_db, caller.id)

        for _ in range(3):
            response = await api.client.post(
                "/api/v1/assistants", headers=caller.headers
            )
            assert response.status_code == 202

        # Unless the 60 s window turned between the clicks.
        assert len(await requested(db, js)) in (1, 2)

    async def test_retries_with_one_idempotency_key_make_one_request(
        self, api, sign_in, db, js, clean_db
    ):
        caller = sign_in()
        await db.subscription(clean_db, caller.id)
        headers = {**caller.headers, "Idempotency-Key": "click-1"}

        for _ in range(3):
            assert (
                await api.client.post("/api/v1/assistants", headers=headers)
            ).status_code == 202
        await api.client.post(
            "/api/v1/assistants",
            headers={**caller.headers, "Idempotency-Key": "click-2"},
        )

        assert len(await requested(db, js)) == 2

    async def test_publish_failure_is_503(self, api, sign_in, db, js, clean_db):
        caller = sign_in()
        await db.subscription(clean_db, caller.id)
        await js.delete_stream(Stream.ASSISTANTS)

        response = await api.client.post("/api/v1/assistants", headers=caller.headers)

        assert response.status_code == 503
        assert response.json()["code"] == "PUBLISH_FAILED"
        assert response.headers["retry-after"] == "2"


class TestRequestEventId:
    def test_same_state_same_window_is_one_request(self):
        user = uuid.uuid4()
        ids = {
            request_event_id(
                user, "provision", idempotency_key=None, state="none", now=n
            )
            for n in (60.0, 90.0, 119.9)
        }

        assert len(ids) == 1

    def test_a_new_state_is_a_new_request(self):
        user = uuid.uuid4()
        first = request_event_id(
            user, "provision", idempotency_key=None, state="none", now=60
        )
        later = request_event_id(
            user, "provision", idempotency_key=None, state="READY@t", now=60
        )

        assert first != later

    def test_the_key_wins_over_time(self):
        user = uuid.uuid4()
        ids = {
            request_event_id(
                user, "provision", idempotency_key="k", state="none", now=n
            )
            for n in (0, 3600)
        }

        assert len(ids) == 1

    def test_users_never_share_ids(self):
        a = request_event_id(uuid.uuid4(), "provision", idempotency_key="k", state=None)
        b = request_event_id(uuid.uuid4(), "provision", idempotency_key="k", state=None)

        assert a != b

    def test_without_state_and_key_every_request_is_new(self):
        user = uuid.uuid4()

        assert request_event_id(
            user, "model", idempotency_key=None, state=None
        ) != request_event_id(user, "model", idempotency_key=None, state=None)


class TestChangeModel:
    async def test_a_seed_model_is_requested(self, api, sign_in, db, js, clean_db):
        caller = sign_in()
        await db.subscription(clean_db, caller.id)
        await db.assistant(clean_db, caller.id, "READY")

        response = await api.client.patch(
            "/api/v1/assistants",
            json={"model": "google/gemini-2.5-flash"},
            headers=caller.headers,
        )

        assert response.status_code == 202, response.text
        assert response.json() == {"status": "PROVISIONING"}
        [event] = await requested(db, js)
        assert event["reason"] == "model_changed"
        assert event["model"] == "google/gemini-2.5-flash"
        # The provisioner owns the row: the gateway did not touch it.
        model = await clean_db.fetchval(
            "SELECT model FROM assistants WHERE user_id = $1", caller.id
        )
        assert model == DEFAULT_MODEL

    @pytest.mark.parametrize(
        "model",
        ["openai/gpt-5", "claude-sonnet-4-5", "", "anthropic/claude-sonnet-4-5"],
    )
    async def test_other_models_are_422(self, api, sign_in, db, js, clean_db, model):
        caller = sign_in()
        await db.subscription(clean_db, caller.id)
        await db.assistant(clean_db, caller.id, "READY")

        response = await api.client.patch(
            "/api/v1/assistants", json={"model": model}, headers=caller.headers
        )

        assert response.status_code == 422
        assert await requested(db, js) == []

    async def test_without_an_assistant_is_404(self, api, sign_in, db, js, clean_db):
        caller = sign_in()
        await db.subscription(clean_db, caller.id)

        response = await api.client.patch(
            "/api/v1/assistants",
            json={"model": "openai/gpt-4o"},
            headers=caller.headers,
        )

        assert response.status_code == 404
        assert response.json()["code"] == "ASSISTANT_NOT_FOUND"

    async def test_without_a_subscription_is_402(self, api, sign_in, db, clean_db):
        caller = sign_in()
        await db.assistant(clean_db, caller.id, "READY")

        response = await api.client.patch(
            "/api/v1/assistants",
            json={"model": "openai/gpt-4o"},
            headers=caller.headers,
        )

        assert response.status_code == 402


class TestDeleteAssistant:
    async def test_deprovisioning_is_requested(self, api, sign_in, db, js, clean_db):
        caller = sign_in()
        await db.assistant(clean_db, caller.id, "READY")

        response = await api.client.delete("/api/v1/assistants", headers=caller.headers)

        assert response.status_code == 202
        assert response.json() == {"status": "DEPROVISIONING"}
        [event] = await requested(db, js, DEPROVISION)
        assert event["user_id"] == str(caller.id)
        status = await clean_db.fetchval(
            "SELECT status FROM assistants WHERE user_id = $1", caller.id
        )
        assert status == "READY"

    async def test_without_an_assistant_is_404(self, api, sign_in, db, js):
        response = await api.client.delete(
            "/api/v1/assistants", headers=sign_in().headers
        )

        assert response.status_code == 404
        assert await requested(db, js, DEPROVISION) == []


class TestIsolation:
    async def test_one_user_cannot_change_anothers_assistant(
        self, api, sign_in, db, js, clean_db
    ):
        ada, eve = sign_in(), sign_in()
        await db.subscription(clean_db, ada.id)
        await db.assistant(clean_db, ada.id, "READY", model="openai/gpt-4o")
        await db.subscription(clean_db, eve.id)

        seen = (await api.client.get("/api/v1/assistants", headers=eve.headers)).json()
        patched = await api.client.patch(
            "/api/v1/assistants",
            json={"model": "openai/gpt-4o-mini"},
            headers=eve.headers,
        )
        deleted = await api.client.delete("/api/v1/assistants", headers=eve.headers)

        assert seen["status"] == "NONE"
        assert patched.status_code == 404
        assert deleted.status_code == 404
        assert await requested(db, js) == []
        assert await requested(db, js, DEPROVISION) == []
