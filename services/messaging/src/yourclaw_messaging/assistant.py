"""The user's OpenClaw gateway: its OpenAI-compatible chat completions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from yourclaw_messaging.errors import AssistantUnavailable


@dataclass(frozen=True)
class AssistantReply:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0


def session_key(user_id: str) -> str:
    """One stable OpenClaw session per user, so memory survives without history."""
    return f"wa:{user_id}"


class AssistantClient:
    def __init__(self, http: httpx.AsyncClient, *, timeout: float):
        self._http = http
        self._timeout = httpx.Timeout(timeout, connect=10)

    async def ask(
        self, *, base_url: str, token: str, user_id: str, model: str | None, text: str
    ) -> AssistantReply:
        key = session_key(user_id)
        headers = {
            "Authorization": f"Bearer {token}",
            "x-openclaw-session-key": key,
            "x-openclaw-message-channel": "whatsapp",
        }
        if model:
            headers["x-openclaw-model"] = model
        payload: dict[str, Any] = {
            "model": "openclaw/default",
            "user": key,
            "messages": [{"role": "user", "content": text}],
        }
        url = f"{base_url.rstrip('/')}/v1/chat/completions"
        try:
            resp = await self._http.post(
                url, json=payload, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise AssistantUnavailable(
                f"assistant unreachable: {exc.__class__.__name__}"
            ) from exc
        if resp.status_code != 200:
            raise AssistantUnavailable(f"assistant answered HTTP {resp.status_code}")
        try:
            data = resp.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise AssistantUnavailable(
                "assistant answer is not a chat completion"
            ) from exc
        usage = data.get("usage") or {}
        return AssistantReply(
            text=_text_of(content),
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
        )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""
