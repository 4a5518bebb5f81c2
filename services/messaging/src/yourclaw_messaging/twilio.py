"""The Twilio Messages REST resource, reached at TWILIO_API_BASE."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from yourclaw_messaging.errors import MediaRejected, TwilioRejected, TwilioSendError

_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_HTTP_ERRORS = (TimeoutError, aiohttp.ClientError)

# Errors that say "try later", not "this message is wrong": auth (a rotated or
# missing token must not eat messages), rate limits, server trouble.
_RETRYABLE_STATUS = {401, 403, 429}


@dataclass(frozen=True)
class SentMessage:
    sid: str
    status: str


class TwilioClient:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        api_base: str,
        account_sid: str,
        auth_token: str,
    ):
        self._http = http
        self._base = (
            f"{api_base.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        )
        basic = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        # aiohttp drops it on a redirect to another host (media on a CDN).
        self._auth = {"Authorization": f"Basic {basic}"}

    async def send(
        self,
        *,
        to: str,
        from_: str,
        body: str = "",
        content_sid: str | None = None,
        content_variables: dict[str, Any] | None = None,
        status_callback: str | None = None,
    ) -> SentMessage:
        data = {"To": to, "From": from_}
        if content_sid:
            # An approved template: Twilio renders it, no free-form Body.
            data["ContentSid"] = content_sid
            if content_variables:
                data["ContentVariables"] = json.dumps(content_variables)
        else:
            data["Body"] = body
        if status_callback:
            data["StatusCallback"] = status_callback
        try:
            async with self._http.post(
                self._base, data=data, headers=self._auth, timeout=_TIMEOUT
            ) as resp:
                status, raw = resp.status, await resp.read()
        except _HTTP_ERRORS as exc:
            raise TwilioSendError(
                f"Twilio unreachable: {exc.__class__.__name__}"
            ) from exc
        if status in (200, 201):
            sent = json.loads(raw)
            return SentMessage(sid=sent["sid"], status=sent.get("status", "queued"))
        code, message = _error_of(status, raw)
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise TwilioSendError(
                f"Twilio answered {status} ({code}): {message}",
                twilio_code=code,
                http_status=status,
            )
        raise TwilioRejected(
            f"Twilio rejected the message ({code}): {message}", twilio_code=code
        )

    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        """An inbound attachment (`MediaUrlN`), fetched with the account credentials.

        Raises MediaRejected when it is larger than `max_bytes`.
        """
        try:
            async with self._http.get(
                url, headers=self._auth, timeout=_TIMEOUT, allow_redirects=True
            ) as resp:
                if resp.status != 200:
                    raise TwilioSendError(f"media fetch answered HTTP {resp.status}")
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise MediaRejected(f"media is {declared} bytes")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaRejected(f"media is over {max_bytes} bytes")
                    chunks.append(chunk)
                content_type = resp.headers.get("content-type", "")
        except _HTTP_ERRORS as exc:
            raise TwilioSendError(
                f"media fetch failed: {exc.__class__.__name__}"
            ) from exc
        return b"".join(chunks), content_type.split(";")[0].strip().lower()


def _error_of(status: int, raw: bytes) -> tuple[str, str]:
    try:
        data = json.loads(raw)
        return str(data.get("code") or status), str(data.get("message") or "")[:300]
    except (ValueError, AttributeError):
        return str(status), raw[:300].decode("utf-8", errors="replace")
