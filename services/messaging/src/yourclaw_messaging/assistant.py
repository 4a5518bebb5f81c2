"""The user's OpenClaw gateway: its OpenAI-compatible chat completions, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from yourclaw_messaging.errors import (
    AssistantLockedOut,
    AssistantNotReady,
    AssistantUnavailable,
)

# What a gateway answers while it starts (or its proxy, while it is away).
_NOT_READY_STATUS = frozenset({502, 503, 504})
# How OpenClaw 2026.9.6 ends a turn that failed on its own state locks
# (docs/sleep.md, "A request to a frozen gateway").
_LOCKED_OUT = ("another OpenClaw process owns", "Agent database cleanup failed")

# What a user turn may carry: plain text, or OpenAI content parts (text + images).
Content = str | list[dict[str, Any]]


@dataclass(frozen=True)
class AssistantReply:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0


def session_key(user_id: str, epoch: int = 0) -> str:
    """One stable OpenClaw session per user, so memory survives without history.

    `/reset` bumps the epoch: a new session (the workspace memory files stay).
    """
    return f"wa:{user_id}" if epoch == 0 else f"wa:{user_id}:{epoch}"


class AssistantClient:
    def __init__(self, http: aiohttp.ClientSession, *, timeout: float):
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=10)

    async def ask(
        self,
        *,
        base_url: str,
        token: str,
        session: str,
        model: str | None,
        content: Content,
        history: list[tuple[str, str]] | None = None,
    ) -> AssistantReply:
        """One turn. `history` seeds a session the gateway does not have yet."""
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "x-openclaw-session-key": session,
            "x-openclaw-message-channel": "whatsapp",
        }
        if model:
            headers["x-openclaw-model"] = model
        payload: dict[str, Any] = {
            "model": "openclaw/default",
            "user": session,
            "messages": [
                *({"role": role, "content": text} for role, text in history or ()),
                {"role": "user", "content": content},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        url = f"{base_url.rstrip('/')}/v1/chat/completions"
        try:
            async with self._http.post(
                url,
                data=orjson.dumps(payload),
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                if resp.status in _NOT_READY_STATUS:
                    raise AssistantNotReady(f"assistant answered HTTP {resp.status}")
                if resp.status != 200:
                    raise AssistantUnavailable(f"assistant answered HTTP {resp.status}")
                if resp.content_type == "application/json":
                    return _from_completion(await resp.read())
                return await _from_stream(_lines(resp.content))
        except aiohttp.ClientConnectorError as exc:
            # Nothing was sent: the gateway is not listening (yet).
            raise AssistantNotReady(
                f"assistant unreachable: {exc.__class__.__name__}"
            ) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise AssistantUnavailable(
                f"assistant unreachable: {exc.__class__.__name__}"
            ) from exc


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The body's lines, however long (a whole reply may come as one event)."""
    pending = b""
    async for chunk in stream.iter_any():
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r")
    if pending:
        yield pending


async def _from_stream(lines: AsyncIterator[bytes]) -> AssistantReply:
    pieces: list[str] = []
    usage: dict[str, Any] = {}
    done = False
    async for line in lines:
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise AssistantUnavailable("assistant sent a malformed stream") from exc
        if not isinstance(chunk, dict):
            continue
        if isinstance(chunk.get("error"), dict):
            message = str(chunk["error"].get("message") or "")[:300]
            failed = (
                AssistantLockedOut
                if any(marker in message for marker in _LOCKED_OUT)
                else AssistantUnavailable
            )
            raise failed(f"assistant reported an error mid-stream: {message}")
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                pieces.append(delta["content"])
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
    if not done and not pieces:
        raise AssistantUnavailable("assistant stream ended early")
    return AssistantReply(
        text="".join(pieces),
        tokens_in=int(usage.get("prompt_tokens") or 0),
        tokens_out=int(usage.get("completion_tokens") or 0),
    )


def _from_completion(raw: bytes) -> AssistantReply:
    try:
        data = orjson.loads(raw)
        content = data["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise AssistantUnavailable("assistant answer is not a chat completion") from exc
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
