import asyncio
import time

import orjson
import pytest
from yourclaw_common.testing.helpers import eventually
from yourclaw_llm_proxy.prices import PRICES

from .conftest import ANTHROPIC_USAGE, OPENAI_USAGE, STREAM_PIECES

SONNET = "claude-sonnet-4-5-20250929"
MINI = "gpt-4o-mini"


def chat(model=MINI, **extra):
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def anthropic(model=SONNET, **extra):
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


async def ask(proxy, who, body=None, *, path="/v1/chat/completions"):
    """A chat completion from the assistant `who`, with its own credential."""
    return await proxy.client.post(path, json=body or chat(), headers=who.bearer)


async def streamed(proxy, path, body, headers):
    """The chunks of a streamed answer as they arrive, with the time of each."""
    arrivals = []
    async with proxy.client.stream(
        "POST", path, json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_raw():
            arrivals.append((time.monotonic(), chunk))
    return arrivals


async def calls_of(pool, user_id):
    return await pool.fetch(
        "SELECT * FROM llm_calls WHERE user_id = $1 ORDER BY id", user_id
    )


async def wait_calls(pool, user_id, count=1):
    async def probe():
        rows = await calls_of(pool, user_id)
        return rows if len(rows) >= count else None

    return await eventually(probe, timeout=5)


async def spend_then_call_again(proxy, who, db, stand_in):
    """One gpt-4o call ($0.00202 at the stand-in's usage), metered; then
    another, with the stand-in's log cleared in between."""
    first = await ask(proxy, who, chat("gpt-4o"))
    assert first.status_code == 200
    await wait_calls(db, who.user_id)
    await proxy.proxy.drain()
    stand_in.clear()
    return await ask(proxy, who)


def test_the_stand_in_reports_what_these_tests_expect(stand_in):
    assert stand_in.openai_usage == OPENAI_USAGE
    assert stand_in.anthropic_usage == ANTHROPIC_USAGE
    assert stand_in.pieces == STREAM_PIECES


class TestOpenAIChat:
    async def test_answers_through_the_stand_in_and_meters_the_call(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy()
        who = await make_assistant()

        response = await ask(proxy, who, path="/openai/v1/chat/completions")

        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "hello"
        [sent] = stand_in.requests
        assert sent["path"] == "/v1/chat/completions"
        # Our key upstream, never the tenant's credential.
        assert sent["headers"]["authorization"] == "Bearer dev"
        assert who.token not in str(sent["headers"])
        [row] = await wait_calls(clean_db, who.user_id)
        assert row["assistant_id"] == who.assistant_id
        assert row["model"] == MINI
        assert row["key_source"] == "PLATFORM"
        cached = OPENAI_USAGE["prompt_tokens_details"]["cached_tokens"]
        assert (
            row["input_tokens"],
            row["cache_read_tokens"],
            row["output_tokens"],
        ) == (
            OPENAI_USAGE["prompt_tokens"] - cached,
            cached,
            OPENAI_USAGE["completion_tokens"],
        )
        price = PRICES[MINI]
        expected = round(
            (OPENAI_USAGE["prompt_tokens"] - cached) * price.input
            + cached * price.cache_read
            + OPENAI_USAGE["completion_tokens"] * price.output
        )
        assert row["cost_microusd"] == expected
        month = await clean_db.fetchrow(
            "SELECT * FROM llm_usage_monthly WHERE user_id = $1", who.user_id
        )
        assert month["calls"] == 1
        assert month["platform_cost_microusd"] == expected

    async def test_stream_arrives_in_chunks_and_usage_is_metered(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy()
        who = await make_assistant()

        arrivals = await streamed(
            proxy, "/v1/chat/completions", chat(stream=True), who.bearer
        )
        text = b"".join(c for _, c in arrivals)

        # Several chunks, spread over the stand-in's pauses: not buffered.
        assert len(arrivals) >= STREAM_PIECES
        assert arrivals[-1][0] - arrivals[0][0] > 0.1
        assert text.count(b'"content"') == STREAM_PIECES
        assert text.endswith(b"data: [DONE]\n\n")
        # The proxy asked for usage on the tenant's behalf.
        body = orjson.loads(stand_in.requests[0]["body"])
        assert body["stream_options"] == {"include_usage": True}
        [row] = await wait_calls(clean_db, who.user_id)
        assert row["stream"] is True
        assert row["output_tokens"] == OPENAI_USAGE["completion_tokens"]


class TestAnthropicMessages:
    async def test_answers_with_the_platform_key(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy(anthropic_api_key="sk-ant-platform")
        who = await make_assistant()

        response = await proxy.client.post(
            "/anthropic/v1/messages",
            json=anthropic(),
            headers={"x-api-key": who.token, "anthropic-version": "2023-06-01"},
        )

        assert response.status_code == 200
        assert response.json()["content"][0]["text"] == "hello"
        [sent] = stand_in.requests
        assert sent["path"] == "/v1/messages"
        assert sent["headers"]["x-api-key"] == "sk-ant-platform"
        assert sent["headers"]["anthropic-version"] == "2023-06-01"
        assert "authorization" not in sent["headers"]
        [row] = await wait_calls(clean_db, who.user_id)
        assert (
            row["input_tokens"],
            row["output_tokens"],
            row["cache_read_tokens"],
            row["cache_write_tokens"],
        ) == (
            ANTHROPIC_USAGE["input_tokens"],
            ANTHROPIC_USAGE["output_tokens"],
            ANTHROPIC_USAGE["cache_read_input_tokens"],
            ANTHROPIC_USAGE["cache_creation_input_tokens"],
        )

    async def test_stream_arrives_in_chunks_and_usage_is_metered(
        self, start_proxy, make_assistant, clean_db
    ):
        proxy = await start_proxy()
        who = await make_assistant()

        arrivals = await streamed(
            proxy,
            "/anthropic/v1/messages",
            anthropic(stream=True),
            {"x-api-key": who.token},
        )
        chunks = [c for _, c in arrivals]

        assert len(chunks) >= STREAM_PIECES
        assert b"".join(chunks).count(b"content_block_delta") == 2 * STREAM_PIECES
        [row] = await wait_calls(clean_db, who.user_id)
        assert row["stream"] is True
        assert row["output_tokens"] == ANTHROPIC_USAGE["output_tokens"]
        assert row["cache_read_tokens"] == ANTHROPIC_USAGE["cache_read_input_tokens"]
        assert row["input_tokens"] == ANTHROPIC_USAGE["input_tokens"]


class TestOtherEndpoints:
    async def test_embeddings_are_metered(self, start_proxy, make_assistant, clean_db):
        proxy = await start_proxy()
        who = await make_assistant()

        response = await proxy.client.post(
            "/openai/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": "hello"},
            headers=who.bearer,
        )

        assert response.status_code == 200
        [row] = await wait_calls(clean_db, who.user_id)
        assert row["endpoint"] == "embeddings"
        assert row["input_tokens"] == 8

    async def test_transcriptions_are_priced_by_the_minute(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy()
        who = await make_assistant()

        response = await proxy.client.post(
            "/openai/v1/audio/transcriptions",
            data={"model": "whisper-1"},
            files={"file": ("note.ogg", b"OggS fake audio", "audio/ogg")},
            headers=who.bearer,
        )

        assert response.status_code == 200
        assert response.json()["text"] == "hi"
        # The upload reaches the provider as it was sent.
        assert b"OggS fake audio" in stand_in.requests[0]["body"]
        [row] = await wait_calls(clean_db, who.user_id)
        assert row["cost_microusd"] == 3000  # 30 s at $0.006 a minute


SERVICE_TOKEN = "service-token-for-tests-0123456789abcdef"


def voice_note(who_id=None, token=SERVICE_TOKEN):
    """A transcription request as messaging sends it for the user `who_id`."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if who_id is not None:
        headers["x-yourclaw-user"] = str(who_id)
    return {
        "data": {"model": "whisper-1"},
        "files": {"file": ("voice.ogg", b"OggS voice note", "audio/ogg")},
        "headers": headers,
    }


class TestServiceCredential:
    async def test_a_service_transcribes_for_a_user_metered_to_that_user(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy(llm_proxy_service_token=SERVICE_TOKEN)
        who = await make_assistant()

        response = await proxy.client.post(
            "/v1/audio/transcriptions", **voice_note(who.user_id)
        )

        assert response.status_code == 200, response.text
        assert response.json()["text"] == "hi"
        [sent] = stand_in.requests
        # Our key upstream; neither the service credential nor the user header.
        assert sent["headers"]["authorization"] == "Bearer dev"
        assert SERVICE_TOKEN not in str(sent["headers"])
        assert "x-yourclaw-user" not in sent["headers"]
        [row] = await wait_calls(clean_db, who.user_id)
        assert row["assistant_id"] == who.assistant_id
        assert row["endpoint"] == "audio/transcriptions"
        assert row["cost_microusd"] == 3000

    async def test_the_service_credential_calls_nothing_but_transcriptions(
        self, start_proxy, make_assistant, stand_in
    ):
        proxy = await start_proxy(llm_proxy_service_token=SERVICE_TOKEN)
        who = await make_assistant()

        response = await proxy.client.post(
            "/v1/chat/completions",
            json=chat(),
            headers={
                "authorization": f"Bearer {SERVICE_TOKEN}",
                "x-yourclaw-user": str(who.user_id),
            },
        )

        assert response.status_code == 403
        assert response.json()["code"] == "SERVICE_ENDPOINT_FORBIDDEN"
        assert stand_in.requests == []

    @pytest.mark.parametrize("user", [None, "not-a-uuid"])
    async def test_a_service_call_without_its_user_is_400(
        self, start_proxy, stand_in, user
    ):
        proxy = await start_proxy(llm_proxy_service_token=SERVICE_TOKEN)

        response = await proxy.client.post(
            "/v1/audio/transcriptions", **voice_note(user)
        )

        assert response.status_code == 400
        assert response.json()["code"] == "MISSING_USER"
        assert stand_in.requests == []

    async def test_a_user_without_a_live_assistant_is_refused(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy(llm_proxy_service_token=SERVICE_TOKEN)
        who = await make_assistant()
        await clean_db.execute(
            "UPDATE proxy_credentials SET revoked_at = now() WHERE assistant_id = $1",
            who.assistant_id,
        )

        response = await proxy.client.post(
            "/v1/audio/transcriptions", **voice_note(who.user_id)
        )

        assert response.status_code == 403
        assert response.json()["code"] == "USER_WITHOUT_ASSISTANT"
        assert stand_in.requests == []

    async def test_a_tenant_cannot_transcribe_on_another_users_account(
        self, start_proxy, make_assistant, clean_db
    ):
        proxy = await start_proxy(llm_proxy_service_token=SERVICE_TOKEN)
        tenant, victim = await make_assistant(), await make_assistant()

        response = await proxy.client.post(
            "/v1/audio/transcriptions", **voice_note(victim.user_id, tenant.token)
        )

        # The header means nothing with a tenant's credential: their own call.
        assert response.status_code == 200
        [row] = await wait_calls(clean_db, tenant.user_id)
        assert row["assistant_id"] == tenant.assistant_id
        assert await calls_of(clean_db, victim.user_id) == []

    async def test_without_a_configured_service_token_nothing_passes_as_one(
        self, start_proxy, make_assistant, stand_in
    ):
        proxy = await start_proxy()
        who = await make_assistant()

        response = await proxy.client.post(
            "/v1/audio/transcriptions", **voice_note(who.user_id, token="")
        )

        assert response.status_code == 401
        assert stand_in.requests == []


def speech(who_id, text="It is nine o'clock.", token=SERVICE_TOKEN):
    """A speech request as messaging sends it for the user `who_id`."""
    return {
        "json": {
            "model": "tts-1",
            "input": text,
            "voice": "alloy",
            "response_format": "opus",
        },
        "headers": {
            "authorization": f"Bearer {token}",
            "x-yourclaw-user": str(who_id),
        },
    }


class TestSpeech:
    async def test_a_service_speaks_for_a_user_priced_by_the_character(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy(llm_proxy_service_token=SERVICE_TOKEN)
        who = await make_assistant()
        text = "x" * 1000

        response = await proxy.client.post(
            "/v1/audio/speech", **speech(who.user_id, text)
        )

        assert response.status_code == 200, response.text
        assert response.content == b"OggS spoken audio"
        assert response.headers["content-type"] == "audio/ogg"
        [sent] = stand_in.requests
        assert SERVICE_TOKEN not in str(sent["headers"])
        assert "x-yourclaw-user" not in sent["headers"]
        [row] = await wait_calls(clean_db, who.user_id)
        assert (row["endpoint"], row["model"]) == ("audio/speech", "tts-1")
        assert row["cost_microusd"] == 15_000  # 1,000 characters at $15 a million

    async def test_text_over_openais_limit_is_refused_before_the_provider(
        self, start_proxy, make_assistant, stand_in
    ):
        proxy = await start_proxy(llm_proxy_service_token=SERVICE_TOKEN)
        who = await make_assistant()

        too_long = await proxy.client.post(
            "/v1/audio/speech", **speech(who.user_id, "x" * 4097)
        )
        empty = await proxy.client.post("/v1/audio/speech", **speech(who.user_id, ""))

        assert too_long.status_code == 400
        assert too_long.json()["code"] == "INPUT_TOO_LONG"
        assert empty.json()["code"] == "MISSING_INPUT"
        assert stand_in.requests == []


class TestCredentials:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"authorization": "Bearer not-a-credential"},
            {"x-api-key": "not-a-credential"},
        ],
    )
    async def test_missing_or_wrong_credential_is_401_without_upstream_call(
        self, start_proxy, stand_in, headers
    ):
        proxy = await start_proxy()

        response = await proxy.client.post(
            "/v1/chat/completions", json=chat(), headers=headers
        )

        assert response.status_code == 401
        assert response.json()["code"] == "INVALID_CREDENTIAL"
        assert response.json()["detail"]
        assert stand_in.requests == []

    async def test_revoked_credential_is_401_without_upstream_call(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy()
        who = await make_assistant()
        ok = await ask(proxy, who)
        assert ok.status_code == 200
        stand_in.clear()

        await clean_db.execute(
            "UPDATE proxy_credentials SET revoked_at = now() WHERE assistant_id = $1",
            who.assistant_id,
        )
        response = await ask(proxy, who)

        assert response.status_code == 401
        assert stand_in.requests == []

    async def test_byok_key_is_used_upstream_never_echoed_and_not_capped(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy(llm_monthly_allowance_usd=0)
        own_key = "sk-users-own-key-abcdef123456"
        who = await make_assistant(openai_key=own_key)

        response = await ask(proxy, who, path="/openai/v1/chat/completions")

        # An allowance of 0 refuses platform calls, not the user's own key.
        assert response.status_code == 200
        assert own_key not in response.text
        assert own_key not in str(dict(response.headers))
        assert stand_in.requests[0]["headers"]["authorization"] == f"Bearer {own_key}"
        [row] = await wait_calls(clean_db, who.user_id)
        assert row["key_source"] == "BYOK"
        # Anthropic has no BYOK key: the platform's, under the (zero) allowance.
        refused = await proxy.client.post(
            "/anthropic/v1/messages", json=anthropic(), headers={"x-api-key": who.token}
        )
        assert refused.status_code == 402


class TestAllowance:
    async def test_over_the_cap_refuses_without_upstream_call_and_notifies_once(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy(llm_monthly_allowance_usd=0.001)
        who = await make_assistant()
        # The first call spends more than the allowance...
        first = await ask(proxy, who, chat("gpt-4o"))
        assert first.status_code == 200
        await wait_calls(clean_db, who.user_id)
        stand_in.clear()

        # ...so the next ones are refused, and the provider sees nothing.
        refusals = [await ask(proxy, who) for _ in range(3)]

        assert {r.status_code for r in refusals} == {402}
        body = refusals[0].json()
        assert body["code"] == "ALLOWANCE_EXHAUSTED"
        assert "renews on" in body["detail"]
        assert body["error"]["message"] == body["detail"]
        assert stand_in.requests == []
        events = await clean_db.fetch(
            "SELECT payload FROM outbox WHERE subject = 'usage.cap_reached'"
        )
        assert len(events) == 1
        payload = events[0]["payload"]
        assert payload["user_id"] == str(who.user_id)
        assert payload["allowance_usd"] == 0.001

    async def test_a_cached_spend_is_read_again_once_a_call_is_metered(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy(
            llm_monthly_allowance_usd=0.001, llm_proxy_credential_cache_seconds=60
        )
        who = await make_assistant()
        refused = await spend_then_call_again(proxy, who, clean_db, stand_in)

        assert refused.status_code == 402
        assert stand_in.requests == []

    async def test_eighty_percent_gets_one_warning(
        self, start_proxy, make_assistant, clean_db
    ):
        # One gpt-4o call of the stand-in costs $0.00202: 80 % of $0.0025.
        proxy = await start_proxy(llm_monthly_allowance_usd=0.0025)
        who = await make_assistant()

        for model in ("gpt-4o", MINI, MINI):
            response = await ask(proxy, who, chat(model))
            assert response.status_code == 200
        await wait_calls(clean_db, who.user_id, count=3)
        await proxy.proxy.drain()

        events = await clean_db.fetch("SELECT subject, payload FROM outbox")
        assert [e["subject"] for e in events] == ["usage.allowance_warning"]
        assert events[0]["payload"]["allowance_usd"] == 0.0025

    async def test_users_own_cap_refuses_their_own_keys_calls_too(
        self, start_proxy, make_assistant, stand_in, clean_db
    ):
        proxy = await start_proxy(llm_monthly_allowance_usd=100)
        own_key = "sk-users-own-key-capped-0001"
        who = await make_assistant(openai_key=own_key)
        # A cent, of which 0.9 were spent earlier this month.
        await clean_db.execute(
            "UPDATE users SET llm_monthly_cap_usd = 0.01 WHERE id = $1", who.user_id
        )
        await clean_db.execute(
            "INSERT INTO llm_usage_monthly (user_id, month, cost_microusd) "
            "VALUES ($1, date_trunc('month', now() AT TIME ZONE 'UTC'), 9000)",
            who.user_id,
        )
        refused = await spend_then_call_again(proxy, who, clean_db, stand_in)

        assert refused.status_code == 402
        assert "cap you set of $0.01" in refused.json()["detail"]
        assert stand_in.requests == []
        [event] = await clean_db.fetch(
            "SELECT payload FROM outbox WHERE subject = 'usage.cap_reached'"
        )
        assert event["payload"]["allowance_usd"] == 0.01


class TestRateLimits:
    async def test_calls_a_minute_over_the_limit_get_429(
        self, start_proxy, make_assistant, stand_in
    ):
        proxy = await start_proxy(llm_proxy_rate_limit_per_min=2)
        who = await make_assistant()

        statuses = [(await ask(proxy, who)).status_code for _ in range(3)]

        assert statuses == [200, 200, 429]
        assert len(stand_in.requests) == 2

    async def test_concurrent_streams_over_the_limit_get_429(
        self, start_proxy, make_assistant
    ):
        proxy = await start_proxy(llm_proxy_max_concurrent=1)
        who = await make_assistant()

        async with proxy.client.stream(
            "POST", "/v1/chat/completions", json=chat(stream=True), headers=who.bearer
        ) as streaming:
            assert streaming.status_code == 200
            second = await ask(proxy, who)
            assert second.status_code == 429
            assert second.json()["code"] == "TOO_MANY_CONCURRENT"
            await streaming.aread()
        # The slot is free again once the stream ended.
        await asyncio.sleep(0.05)
        third = await ask(proxy, who)
        assert third.status_code == 200


class TestBadInput:
    @pytest.mark.parametrize(
        ("path", "content", "status", "code"),
        [
            ("/v1/chat/completions", b"{not json", 400, "INVALID_JSON"),
            ("/v1/chat/completions", b"[1, 2]", 400, "INVALID_JSON"),
            ("/v1/chat/completions", b'{"messages": []}', 400, "MISSING_MODEL"),
            ("/v1/chat/completions", b'{"model": "gpt-9-ultra"}', 400, "UNKNOWN_MODEL"),
            # A model of another provider than the path names.
            (
                "/openai/v1/chat/completions",
                b'{"model": "gemini-2.5-flash"}',
                400,
                "UNKNOWN_MODEL",
            ),
            ("/v1/messages", b'{"model": "gpt-4o"}', 400, "UNKNOWN_MODEL"),
            ("/v1/images/generations", b'{"model": "gpt-4o"}', 404, "NOT_FOUND"),
            ("/mistral/v1/chat/completions", b'{"model": "x"}', 404, "NOT_FOUND"),
        ],
    )
    async def test_refused_with_a_clear_error_and_no_upstream_call(
        self, start_proxy, make_assistant, stand_in, path, content, status, code
    ):
        proxy = await start_proxy()
        who = await make_assistant()

        response = await proxy.client.post(
            path,
            content=content,
            headers={**who.bearer, "content-type": "application/json"},
        )

        assert response.status_code == status
        assert response.json()["code"] == code
        assert response.json()["detail"]
        assert stand_in.requests == []

    async def test_oversized_body_is_413(self, start_proxy, make_assistant, stand_in):
        proxy = await start_proxy(llm_proxy_max_body_bytes=2048)
        who = await make_assistant()

        response = await proxy.client.post(
            "/v1/chat/completions",
            json=chat(padding="x" * 4096),
            headers=who.bearer,
        )

        assert response.status_code == 413
        assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
        assert stand_in.requests == []

    async def test_no_ops_routes_on_the_tenant_port(self, start_proxy):
        proxy = await start_proxy()

        for path in ("/metrics", "/healthz", "/readyz"):
            response = await proxy.client.get(path)
            assert response.status_code == 404, path


class TestNotify:
    async def test_automation_webhook_is_passed_on_to_gateway_api(
        self, start_proxy, stand_in
    ):
        proxy = await start_proxy()
        assistant_id = "0b5b3a4e-1f65-4d0c-8c1e-3f3c9f4a2b10"

        response = await proxy.client.post(
            f"/notify/{assistant_id}",
            json={"summary": "Stretch!"},
            headers={"authorization": "Bearer notify-secret"},
        )

        assert response.status_code == 202
        assert response.json() == {"queued": True}
        [sent] = stand_in.requests
        assert sent["path"] == f"/api/v1/internal/assistants/{assistant_id}/notify"
        assert sent["headers"]["authorization"] == "Bearer notify-secret"
        assert orjson.loads(sent["body"]) == {"summary": "Stretch!"}

    async def test_not_an_assistant_id_is_404(self, start_proxy, stand_in):
        proxy = await start_proxy()

        response = await proxy.client.post("/notify/..%2Fadmin", json={})

        assert response.status_code == 404
        assert stand_in.requests == []
