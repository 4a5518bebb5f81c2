"""The few Bot API calls gateway-api makes: getMe (the bot's username, for the
link the dashboard shows) and setWebhook / getWebhookInfo (`make
telegram-webhook`).

The bot's token is part of every Bot API URL, so neither a URL nor an httpx
error's text (which quotes the URL) is ever logged or raised: failures say what
Telegram answered, or the exception's type.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from yourclaw_common.errors import ServiceUnavailable
from yourclaw_common.logging import get_logger

__all__ = ["BotApi", "BotApiError", "BotProfile"]

log = get_logger(__name__)


class BotApiError(Exception):
    """Telegram did not answer, or answered `{"ok": false}`."""

    def __init__(self, method: str, reason: str):
        super().__init__(f"{method}: {reason}")
        self.method = method
        self.reason = reason


class BotApi:
    """The Bot API of one bot, at `base` (https://api.telegram.org)."""

    def __init__(self, http: httpx.AsyncClient, base: str, token: str):
        self._http = http
        self._base = base.rstrip("/")
        self._token = token

    async def call(self, method: str, **params: Any) -> Any:
        """`method`'s result; BotApiError when Telegram refuses or is unreachable."""
        url = f"{self._base}/bot{self._token}/{method}"
        try:
            response = await self._http.post(url, json=params)
        except httpx.HTTPError as exc:
            raise BotApiError(method, type(exc).__name__) from None
        try:
            body = response.json()
        except ValueError:
            raise BotApiError(method, f"HTTP {response.status_code}") from None
        if not isinstance(body, dict) or body.get("ok") is not True:
            description = body.get("description") if isinstance(body, dict) else None
            raise BotApiError(method, f"HTTP {response.status_code}: {description}")
        return body.get("result")

    async def username(self) -> str:
        me = await self.call("getMe")
        if not isinstance(me, dict) or not isinstance(me.get("username"), str):
            raise BotApiError("getMe", "no username in the answer")
        return str(me["username"])


class BotProfile:
    """The bot's username, asked of getMe once per process (it never changes
    while the token stays the same)."""

    def __init__(self, base: str, token: str):
        self._base = base
        self._token = token
        self._username: str | None = None
        self._lock = asyncio.Lock()

    async def username(self, http: httpx.AsyncClient) -> str:
        if self._username is not None:
            return self._username
        async with self._lock:
            if self._username is None:
                try:
                    self._username = await BotApi(
                        http, self._base, self._token
                    ).username()
                except BotApiError as exc:
                    log.warning("gateway.telegram.get_me_failed", reason=exc.reason)
                    raise ServiceUnavailable(
                        "Telegram cannot be reached right now, retry later",
                        code="TELEGRAM_UNAVAILABLE",
                        headers={"Retry-After": "5"},
                    ) from None
            return self._username
