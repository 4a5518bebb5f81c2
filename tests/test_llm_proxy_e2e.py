"""The production-rendered config with the real OpenClaw gateway: every model of
the catalog answers a turn through the LLM proxy, whose upstream is the only
thing swapped (for the stand-in that speaks Anthropic Messages and OpenAI).

No provider key reaches the tenant: not its rendered files, not its process
environment. A plain turn is exactly one model call. Slow: one gateway boot.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import psutil
import pytest
import pytest_asyncio
from yourclaw_common.crypto import SecretBox
from yourclaw_common.events import AssistantProvisionRequested
from yourclaw_common.models import AVAILABLE_MODELS, LlmProvider
from yourclaw_common.nats import publish
from yourclaw_common.testing import eventually, subscribed_user
from yourclaw_devkit.pytest_plugin import inbound_whatsapp

from .conftest import gateway_ports, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+15557779012"
PLATFORM_ANTHROPIC = "sk-ant-platform-do-not-leak-0001"
PLATFORM_OPENAI = "sk-openai-platform-do-not-leak-0002"
USERS_OWN_OPENAI = "sk-users-own-openai-do-not-leak-0003"
KEYS = (PLATFORM_ANTHROPIC, PLATFORM_OPENAI, USERS_OWN_OPENAI)


@pytest_asyncio.fixture(loop_scope="session")
async def stack(gateway_stack):
    return await gateway_stack(
        capacity=1,
        provisioner=gateway_ports(),
        llm_proxy={
            "anthropic_api_key": PLATFORM_ANTHROPIC,
            "openai_api_key": PLATFORM_OPENAI,
            # The tests write spend behind the proxy's back, as another
            # replica would: read it on every call.
            "llm_proxy_credential_cache_seconds": 0,
        },
    )


def _gateway_environments(user_dir: Path) -> list[dict[str, str]]:
    """The environment of every process running from the user's folder."""
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        try:
            where = f"{proc.info['cwd']} {' '.join(proc.info['cmdline'] or [])}"
            if str(user_dir) in where:
                found.append(proc.environ())
        except (psutil.Error, OSError):
            continue
    return found


class TestProductionConfigThroughTheProxy:
    async def test_every_catalog_model_answers_and_no_key_reaches_the_tenant(
        self, stack, clean_db, encryption_key
    ):
        user_id = await subscribed_user(clean_db, phone=PHONE)
        box = SecretBox(encryption_key)
        await clean_db.execute(
            "INSERT INTO api_keys (user_id, provider, encrypted_key, key_last4) "
            "VALUES ($1, 'OPENAI', $2, $3)",
            user_id,
            box.encrypt(USERS_OWN_OPENAI, owner=str(user_id)),
            USERS_OWN_OPENAI[-4:],
        )
        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        row = await wait_ready(clean_db, user_id)
        token = box.decrypt(row["gateway_token_encrypted"], owner=str(user_id))

        # Nothing the tenant holds carries a provider key.
        user_dir = (stack.data_dir / str(user_id)).resolve()
        for path in user_dir.rglob("*"):
            if path.is_file() and path.stat().st_size < 5_000_000:
                text = path.read_bytes().decode("utf-8", "replace")
                for key in KEYS:
                    assert key not in text, path
        environments = _gateway_environments(user_dir)
        assert environments, "found no gateway process"
        for environment in environments:
            assert not set(environment) & {
                "ANTHROPIC_API_KEY",
                "OPENAI_API_KEY",
                "GOOGLE_API_KEY",
            }
            for key in KEYS:
                assert key not in json.dumps(environment)

        async with httpx.AsyncClient(
            base_url=row["base_url"], timeout=120, trust_env=False
        ) as gateway:

            async def turn(model_id: str, text: str) -> httpx.Response:
                return await gateway.post(
                    "/v1/chat/completions",
                    headers={
                        "authorization": f"Bearer {token}",
                        "x-openclaw-model": model_id,
                        "x-openclaw-session-key": f"e2e:{model_id}",
                    },
                    json={
                        "model": "openclaw/default",
                        "user": f"e2e:{model_id}",
                        "messages": [{"role": "user", "content": text}],
                    },
                )

            for model in AVAILABLE_MODELS:
                (await stack.devsim.delete("/_devsim/llm/requests")).raise_for_status()
                response = await turn(model.id, f"ping {model.id}")
                assert response.status_code == 200, (model.id, response.text)
                reply = response.json()["choices"][0]["message"]["content"]
                assert reply.startswith(f"Echo: ping {model.id}"), reply
                # One model call per plain turn, at the provider's own API.
                requests = (await stack.devsim.get("/_devsim/llm/requests")).json()[
                    "requests"
                ]
                assert len(requests) == 1, (model.id, [r["path"] for r in requests])
                (request,) = requests
                expected = (
                    "/v1/messages"
                    if model.provider is LlmProvider.ANTHROPIC
                    else "/v1/chat/completions"
                )
                assert request["path"] == expected
                assert request["model"] == model.id.partition("/")[2]
            # A second turn in an Anthropic session reads the prefix from cache.
            anthropic_model = next(
                m.id for m in AVAILABLE_MODELS if m.provider is LlmProvider.ANTHROPIC
            )
            again = await turn(anthropic_model, "and again")
            assert again.status_code == 200, again.text

        async def metered():
            rows = await clean_db.fetch(
                "SELECT model, key_source, cache_read_tokens, cache_write_tokens "
                "FROM llm_calls WHERE user_id = $1 ORDER BY id",
                user_id,
            )
            return rows if len(rows) > len(AVAILABLE_MODELS) else None

        rows = await eventually(metered, timeout=10)
        # Anthropic's stable prefix is marked for caching: the first turn of a
        # session writes it, the next one reads it.
        anthropic = [r for r in rows if r["model"].startswith("claude")]
        assert all(r["cache_write_tokens"] > 0 for r in anthropic[:-1])
        assert anthropic[-1]["cache_read_tokens"] > 0

        sources = {r["model"]: r["key_source"] for r in rows}
        assert set(sources) == {m.id.partition("/")[2] for m in AVAILABLE_MODELS}
        # The user's own OpenAI key for OpenAI models; the platform's for others.
        for model in AVAILABLE_MODELS:
            byok = model.provider is LlmProvider.OPENAI
            assert sources[model.id.partition("/")[2]] == (
                "BYOK" if byok else "PLATFORM"
            )


class TestWhatsAppThroughTheProxy:
    async def test_failing_provider_and_the_cap_each_get_one_readable_message(
        self, stack, clean_db
    ):
        phone = "+15557779013"
        user_id = await subscribed_user(clean_db, phone=phone)
        await publish(
            stack.nc.jetstream(), AssistantProvisionRequested(user_id=user_id)
        )
        await wait_ready(clean_db, user_id)
        js = stack.nc.jetstream()

        async def replies(count):
            async def probe():
                found = [r for r in await stack.replies(phone) if not r.startswith("[")]
                return found if len(found) >= count else None

            return await eventually(probe, timeout=180, interval=0.5)

        # The provider fails: the user hears an apology, not silence.
        await publish(js, inbound_whatsapp(phone, "please #fail=503"))
        (apology,) = await replies(1)
        assert apology.startswith("Sorry"), apology

        # This month's allowance was spent (say, the user lowered their cap
        # below what they had spent): one notice, and no provider call.
        await clean_db.execute(
            "INSERT INTO llm_usage_monthly (user_id, month, platform_cost_microusd) "
            "VALUES ($1, date_trunc('month', now() AT TIME ZONE 'utc')::date, "
            "9000000) ON CONFLICT (user_id, month) DO UPDATE "
            "SET platform_cost_microusd = 9000000",
            user_id,
        )
        (await stack.devsim.delete("/_devsim/llm/requests")).raise_for_status()
        await publish(js, inbound_whatsapp(phone, "hello?"))
        await publish(js, inbound_whatsapp(phone, "anyone there?"))
        sent = await replies(2)
        await asyncio.sleep(5)
        sent = [r for r in await stack.replies(phone) if not r.startswith("[")]
        assert len(sent) == 2, sent
        assert "used this month's allowance of $8.00" in sent[1]
        requests = (await stack.devsim.get("/_devsim/llm/requests")).json()
        assert requests["requests"] == []
