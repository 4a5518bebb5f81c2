"""The end-to-end benchmark's lean stand-ins answer messaging as devsim does.

`bench/e2e_overhead.py` measures the platform against `bench/_standins.py`.
Were they to drift from the wire formats messaging's Twilio and assistant
clients read, the benchmark would measure something other than production.
Each case but the last runs the same call against both stand-ins (devsim in
the tests takes any gateway token).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from yourclaw_common.embedded import free_port
from yourclaw_common.testing import eventually
from yourclaw_devkit.defaults import (
    DEV_GATEWAY_TOKEN,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
)
from yourclaw_messaging.assistant import AssistantClient
from yourclaw_messaging.errors import (
    AssistantUnavailable,
    TwilioRejected,
    TwilioSendError,
)
from yourclaw_messaging.twilio import TwilioClient

REPO = Path(__file__).resolve().parents[1]
TO = "whatsapp:+15550009999"
BASIC = base64.b64encode(
    f"{DEV_TWILIO_ACCOUNT_SID}:{DEV_TWILIO_AUTH_TOKEN}".encode()
).decode()
MESSAGES = f"/2010-04-01/Accounts/{DEV_TWILIO_ACCOUNT_SID}/Messages.json"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lean_url() -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "bench" / "_standins.py"),
        env={
            **os.environ,
            "BENCH_STANDIN_PORT": str(port),
            "TWILIO_ACCOUNT_SID": DEV_TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEV_TWILIO_AUTH_TOKEN,
            "BENCH_ASSISTANT_TOKEN": DEV_GATEWAY_TOKEN,
        },
    )
    url = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{url}/health") as resp,
            ):
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await eventually(healthy, timeout=20)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def both(lean_url: str, devsim_url: str) -> dict[str, str]:
    return {"lean": lean_url, "devsim": devsim_url}


def _twilio(http: aiohttp.ClientSession, base: str, token: str) -> TwilioClient:
    return TwilioClient(
        http, api_base=base, account_sid=DEV_TWILIO_ACCOUNT_SID, auth_token=token
    )


async def test_a_send_gets_the_same_message_resource(
    http: aiohttp.ClientSession, both: dict[str, str]
) -> None:
    resources = {}
    for name, base in both.items():
        sent = await _twilio(http, base, DEV_TWILIO_AUTH_TOKEN).send(
            to=TO, from_=DEV_WHATSAPP_NUMBER, body="hello"
        )
        assert sent.sid.startswith("SM"), name
        assert len(sent.sid) == 34, name
        assert sent.status == "queued", name
        async with http.post(
            base + MESSAGES,
            data={"To": TO, "From": DEV_WHATSAPP_NUMBER, "Body": "hello"},
            headers={"Authorization": f"Basic {BASIC}"},
        ) as resp:
            assert resp.status == 201, name
            resources[name] = await resp.json()
    lean, devsim = resources["lean"], resources["devsim"]
    assert set(lean) == set(devsim)
    for field in ("to", "from", "body", "status", "direction", "num_segments"):
        assert lean[field] == devsim[field], field
    parsedate_to_datetime(lean["date_created"])


@pytest.mark.parametrize(
    ("token", "form", "error", "twilio_code"),
    [
        ("wrong-token", {"Body": "hello"}, TwilioSendError, "20003"),
        (DEV_TWILIO_AUTH_TOKEN, {"Body": ""}, TwilioRejected, "21619"),
        (DEV_TWILIO_AUTH_TOKEN, {"Body": "x" * 1601}, TwilioRejected, "21617"),
    ],
    ids=["wrong-token", "no-body", "too-long"],
)
async def test_refusals_carry_the_same_twilio_error(
    http: aiohttp.ClientSession,
    both: dict[str, str],
    token: str,
    form: dict[str, str],
    error: type[Exception],
    twilio_code: str,
) -> None:
    for name, base in both.items():
        with pytest.raises(error) as caught:
            await _twilio(http, base, token).send(
                to=TO, from_=DEV_WHATSAPP_NUMBER, body=form["Body"]
            )
        assert getattr(caught.value, "context", {}).get("twilio_code") == twilio_code, (
            name
        )


async def test_a_turn_streams_the_same_reply_and_usage(
    http: aiohttp.ClientSession, both: dict[str, str]
) -> None:
    assistant = AssistantClient(http, timeout=10)
    replies = {
        name: await assistant.ask(
            base_url=base,
            token=DEV_GATEWAY_TOKEN,
            session="wa:bench",
            model=None,
            content="what time is it",
        )
        for name, base in both.items()
    }
    assert replies["lean"].text == replies["devsim"].text == "Echo: what time is it"
    assert replies["lean"].tokens_in > 0
    assert replies["lean"].tokens_out > 0


async def test_the_lean_assistant_refuses_a_wrong_gateway_token(
    http: aiohttp.ClientSession, lean_url: str
) -> None:
    with pytest.raises(AssistantUnavailable, match="401"):
        await AssistantClient(http, timeout=10).ask(
            base_url=lean_url,
            token="not-the-token",
            session="wa:bench",
            model=None,
            content="hello",
        )
