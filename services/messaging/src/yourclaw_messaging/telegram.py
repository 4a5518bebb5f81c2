"""The Telegram Bot API, reached at TELEGRAM_API_BASE: sendMessage, sendVoice
(a multipart upload), sendChatAction, getFile and the file download.

The bot's token is part of every Bot API URL, so no URL and no aiohttp error
text (which may quote one) goes into an error or a log: only what Telegram
answered, or the exception's type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from yourclaw_common.errors import PermanentError, TransientError
from yourclaw_common.logging import get_logger

from yourclaw_messaging.errors import MediaRejected

__all__ = [
    "TelegramClient",
    "TelegramFile",
    "TelegramRejected",
    "TelegramSendError",
]

log = get_logger(__name__)

_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
# What Telegram says of markup it cannot parse (400).
_UNPARSABLE = "can't parse entities"
_HTTP_ERRORS = (TimeoutError, aiohttp.ClientError)
# A file_path as getFile gives it ("voice/file_3.oga"): relative, so the
# download stays on TELEGRAM_API_BASE.
_FILE_PATH = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)*")


class TelegramSendError(TransientError):
    """Telegram did not take the request; retry later (network, 5xx, 429, auth).

    `retry_after`: the seconds a 429 asked us to wait; `answered`: Telegram
    answered (so a refused sendMessage surely sent nothing)."""

    code = "TELEGRAM_UNAVAILABLE"


class TelegramRejected(PermanentError):
    """Telegram refused this request for good (400: chat not found, text too
    long; 403: the user blocked the bot)."""

    code = "TELEGRAM_REJECTED"


@dataclass(frozen=True)
class TelegramFile:
    file_path: str
    file_size: int | None


def _json_object(raw: bytes) -> dict[str, Any]:
    """An answer's JSON object; {} for anything else (a proxy's HTML page)."""
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _message_id(sent: Any, method: str) -> int:
    if not isinstance(sent, dict) or not isinstance(sent.get("message_id"), int):
        raise TelegramSendError(f"{method} answered without a message_id")
    return int(sent["message_id"])


class TelegramClient:
    def __init__(self, http: aiohttp.ClientSession, *, api_base: str, token: str):
        self._http = http
        self._methods = f"{api_base.rstrip('/')}/bot{token}/"
        self._files = f"{api_base.rstrip('/')}/file/bot{token}/"

    async def _call(
        self, method: str, params: dict[str, Any] | aiohttp.FormData
    ) -> Any:
        """`method`'s result, or the error Telegram's answer means. `params`: a
        JSON object, or a multipart form for a method that uploads a file."""
        url = self._methods + method
        body: dict[str, Any] = (
            {"data": params}
            if isinstance(params, aiohttp.FormData)
            else {"json": params}
        )
        try:
            async with self._http.post(
                url, **body, timeout=_TIMEOUT, allow_redirects=False
            ) as resp:
                status, body = resp.status, _json_object(await resp.read())
        except _HTTP_ERRORS as exc:
            what = type(exc).__name__
            raise TelegramSendError(
                f"Telegram unreachable ({method}): {what}"
            ) from None
        if status == 200 and body.get("ok") is True:
            return body.get("result")
        description = str(body.get("description") or f"HTTP {status}")[:300]
        code = body.get("error_code") or status
        parameters = body.get("parameters")
        retry_after = (
            parameters.get("retry_after") if isinstance(parameters, dict) else None
        )
        if code in (400, 403):
            raise TelegramRejected(
                f"Telegram refused {method}: {description}", telegram_code=str(code)
            )
        raise TelegramSendError(
            f"Telegram answered {method} with {code}: {description}",
            telegram_code=str(code),
            answered=True,
            retry_after=retry_after if isinstance(retry_after, int) else None,
        )

    async def send_message(
        self, chat_id: int, text: str, *, html: str | None = None
    ) -> int:
        """Send `text` (at most 4,096 characters), as `html` (the same text in
        Telegram's HTML) when given; the message's id."""

        def params(text: str, mode: dict[str, str]) -> dict[str, Any]:
            return {"chat_id": chat_id, "text": text, **mode}

        return await self._formatted("sendMessage", params, text, html)

    async def send_voice(
        self,
        chat_id: int,
        audio: bytes,
        *,
        content_type: str = "audio/ogg",
        caption: str = "",
        caption_html: str | None = None,
    ) -> int:
        """Send `audio` (Ogg/Opus) as a voice message, uploaded in the request,
        with `caption` (at most 1,024 characters; as `caption_html` when
        given) under it; the message's id."""

        def form(caption: str, mode: dict[str, str]) -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("chat_id", str(chat_id))
            if caption:
                data.add_field("caption", caption)
                for key, value in mode.items():
                    data.add_field(key, value)
            data.add_field(
                "voice", audio, filename="reply.ogg", content_type=content_type
            )
            return data

        return await self._formatted("sendVoice", form, caption, caption_html)

    async def _formatted(
        self,
        method: str,
        request: Callable[[str, dict[str, str]], dict[str, Any] | aiohttp.FormData],
        text: str,
        html: str | None,
    ) -> int:
        """`method` with `text` as Telegram's HTML (`html`, parse_mode HTML)
        when given, as plain `text` when there is none or Telegram cannot
        parse it (the assistant's markup gone wrong): the message's id."""
        if html is not None and text:
            try:
                sent = await self._call(method, request(html, {"parse_mode": "HTML"}))
            except TelegramRejected as exc:
                if _UNPARSABLE not in str(exc):
                    raise
                log.warning("messaging.telegram.markup_refused", error=str(exc))
            else:
                return _message_id(sent, method)
        return _message_id(await self._call(method, request(text, {})), method)

    async def send_chat_action(self, chat_id: int, action: str = "typing") -> None:
        await self._call("sendChatAction", {"chat_id": chat_id, "action": action})

    async def get_file(self, file_id: str) -> TelegramFile:
        try:
            found = await self._call("getFile", {"file_id": file_id})
        except TelegramRejected as exc:
            # An unknown file id, or one over the Bot API's 20 MB download limit.
            raise MediaRejected(exc.detail) from None
        if not isinstance(found, dict) or not isinstance(found.get("file_path"), str):
            raise MediaRejected("getFile gave no file_path")
        size = found.get("file_size")
        return TelegramFile(found["file_path"], size if isinstance(size, int) else None)

    async def download(self, file_path: str, *, max_bytes: int) -> tuple[bytes, str]:
        """The file at `file_path` (from getFile) and the type Telegram states.

        Raises MediaRejected when it is larger than `max_bytes`.
        """
        if not _FILE_PATH.fullmatch(file_path) or ".." in file_path:
            raise MediaRejected("getFile gave a file_path that is not a plain path")
        try:
            async with self._http.get(
                self._files + file_path, timeout=_TIMEOUT, allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    raise TelegramSendError(
                        f"file download answered HTTP {resp.status}"
                    )
                if (resp.content_length or 0) > max_bytes:
                    raise MediaRejected(f"file is {resp.content_length} bytes")
                return await _read_at_most(resp.content, max_bytes), resp.content_type
        except _HTTP_ERRORS as exc:
            raise TelegramSendError(
                f"file download failed: {exc.__class__.__name__}"
            ) from None


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or MediaRejected as soon as it passes `limit` bytes."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await stream.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    raise MediaRejected(f"file is over {limit} bytes")
