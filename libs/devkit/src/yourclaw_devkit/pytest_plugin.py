"""pytest plugin (`-p yourclaw_devkit.pytest_plugin`): the local stand-ins for tests.

`devsim_url` serves one devsim (Twilio Messages resource + OpenAI-compatible
chat completions) per session on a free loopback port; `devsim` is a client on
it whose records were cleared for the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from yourclaw_devkit.defaults import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from yourclaw_devkit.devsim import DevsimSettings, running_devsim

MESSAGES_PATH = f"/2010-04-01/Accounts/{DEV_TWILIO_ACCOUNT_SID}/Messages.json"


async def sent_to(devsim: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
    """What the Twilio stand-in was asked to send to `phone`, oldest first
    (Twilio's Messages list, read as Twilio's API answers it)."""
    resp = await devsim.get(
        MESSAGES_PATH,
        params={"To": f"whatsapp:{phone}"},
        auth=(DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN),
    )
    resp.raise_for_status()
    return list(reversed(resp.json()["messages"]))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def devsim_url() -> AsyncIterator[str]:
    settings = DevsimSettings(
        twilio_account_sid=DEV_TWILIO_ACCOUNT_SID,
        twilio_auth_token=DEV_TWILIO_AUTH_TOKEN,
        devsim_llm_api_key=None,
        devsim_llm_delay_seconds=0,
        _env_file=None,
    )
    async with running_devsim(settings) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def devsim(devsim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=devsim_url, timeout=10) as client:
        (await client.delete("/_devsim/messages")).raise_for_status()
        (await client.delete("/_devsim/llm/requests")).raise_for_status()
        yield client
