"""`POST /api/v1/internal/assistants/{id}/notify`: an automation's finished run
becomes a WhatsApp message for the assistant's user."""

from __future__ import annotations

import uuid

import orjson
from yourclaw_common.crypto import SecretBox
from yourclaw_common.events import OutboundWhatsApp, Stream, Subject

SECRET = "notify-secret-0123456789"


async def make_assistant(pool, db, encryption_key) -> tuple[uuid.UUID, uuid.UUID]:
    user_id = uuid.uuid4()
    secret = SecretBox(encryption_key).encrypt(SECRET, owner=str(user_id))
    assistant_id = await db.assistant(pool, user_id, notify_secret_encrypted=secret)
    return user_id, assistant_id


def finished_run(summary: str | None = "Time to call Sam!", **extra):
    """What OpenClaw posts for a finished automation run (webhook delivery)."""
    payload = {
        "jobId": "job-1",
        "action": "finished",
        "status": "ok",
        "runAtMs": 1764240000000,
        "durationMs": 812,
        **extra,
    }
    if summary is not None:
        payload["summary"] = summary
    return payload


async def post(gateway, assistant_id, payload, token=SECRET):
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return await gateway.client.post(
        f"/api/v1/internal/assistants/{assistant_id}/notify",
        content=orjson.dumps(payload),
        headers=headers,
    )


async def outbound(js) -> list[OutboundWhatsApp]:
    try:
        info = await js.stream_info(Stream.OUTBOUND)
    except Exception:
        return []
    events = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        msg = await js.get_msg(Stream.OUTBOUND, seq)
        if msg.subject == Subject.OUTBOUND_WHATSAPP.value:
            events.append(OutboundWhatsApp.model_validate_json(msg.data))
    return events


class TestNotify:
    async def test_finished_run_is_queued_for_the_assistants_user(
        self, gateway, js, clean_db, db, encryption_key
    ):
        user_id, assistant_id = await make_assistant(clean_db, db, encryption_key)
        response = await post(gateway, assistant_id, finished_run())
        assert response.status_code == 202
        assert response.json() == {"queued": True}
        (event,) = await outbound(js)
        assert event.user_id == user_id
        assert event.assistant_id == assistant_id
        assert event.body == "Time to call Sam!"
        assert event.kind == "assistant_notification"

    async def test_openclaw_posting_one_run_twice_sends_one_message(
        self, gateway, js, clean_db, db, encryption_key
    ):
        _, assistant_id = await make_assistant(clean_db, db, encryption_key)
        for _ in range(2):
            assert (
                await post(gateway, assistant_id, finished_run())
            ).status_code == 202
        assert len(await outbound(js)) == 1

    async def test_wrong_missing_or_foreign_token_is_401(
        self, gateway, js, clean_db, db, encryption_key
    ):
        _, assistant_id = await make_assistant(clean_db, db, encryption_key)
        _, other_id = await make_assistant(clean_db, db, encryption_key)
        for target, token in (
            (assistant_id, "guess"),
            (assistant_id, None),
            (uuid.uuid4(), SECRET),
        ):
            response = await post(gateway, target, finished_run(), token=token)
            assert response.status_code == 401
            assert response.json() == {
                "detail": "missing or invalid notify token",
                "code": "INVALID_NOTIFY_TOKEN",
            }
        assert await outbound(js) == []
        # Each assistant's own secret is needed: the other one's is a different row.
        assert (await post(gateway, other_id, finished_run())).status_code == 202

    async def test_failed_run_without_output_tells_the_user(
        self, gateway, js, clean_db, db, encryption_key
    ):
        _, assistant_id = await make_assistant(clean_db, db, encryption_key)
        payload = finished_run(None, status="error", job={"name": "Daily digest"})
        assert (await post(gateway, assistant_id, payload)).status_code == 202
        (event,) = await outbound(js)
        assert 'couldn\'t finish "Daily digest"' in event.body

    async def test_run_with_nothing_to_say_queues_nothing(
        self, gateway, js, clean_db, db, encryption_key
    ):
        _, assistant_id = await make_assistant(clean_db, db, encryption_key)
        response = await post(gateway, assistant_id, finished_run(None))
        assert response.status_code == 202
        assert response.json() == {"queued": False}
        assert await outbound(js) == []

    async def test_body_that_is_not_json_is_400(
        self, gateway, js, clean_db, db, encryption_key
    ):
        _, assistant_id = await make_assistant(clean_db, db, encryption_key)
        response = await gateway.client.post(
            f"/api/v1/internal/assistants/{assistant_id}/notify",
            content=b"not json",
            headers={"authorization": f"Bearer {SECRET}"},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "INVALID_BODY"
