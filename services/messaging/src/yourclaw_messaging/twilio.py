"""The Twilio Messages REST resource, reached at TWILIO_API_BASE, and inbound
media (`MediaUrlN`), fetched with the account's credentials from Twilio only."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import aiohttp

from yourclaw_messaging.errors import MediaRejected, TwilioRejected, TwilioSendError

_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
_HTTP_ERRORS = (TimeoutError, aiohttp.ClientError)

# Errors that say "try later", not "this message is wrong": auth (a rotated or
# missing token must not eat messages), rate limits, server trouble.
_RETRYABLE_STATUS = {401, 403, 429}

# Twilio's REST API hosts, where a `MediaUrl` points: api.twilio.com, and the
# regional ones, `api.<edge>.<region>.twilio.com` (api.dublin.ie1.twilio.com)
# and `api.<region>.twilio.com` (api.us1.twilio.com).
_TWILIO_API_HOST = re.compile(r"api(?:\.[a-z0-9-]+)?(?:\.[a-z]{2}[0-9])?\.twilio\.com")
# A media URL answers with a redirect to a signed URL on Twilio's storage; a
# few hops are plenty.
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


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
        self._auth = {"Authorization": f"Basic {basic}"}
        # Besides Twilio's own hosts, the configured API (a stand-in in dev).
        self._api_origin = _origin(urlsplit(api_base))

    async def send(
        self,
        *,
        to: str,
        from_: str,
        body: str = "",
        content_sid: str | None = None,
        content_variables: dict[str, Any] | None = None,
        status_callback: str | None = None,
        media_url: str | None = None,
    ) -> SentMessage:
        """Create a message; `media_url`: a public URL Twilio fetches the
        attachment from (a voice reply), with or without a `body`."""
        data = {"To": to, "From": from_}
        if content_sid:
            # An approved template: Twilio renders it, no free-form Body.
            data["ContentSid"] = content_sid
            if content_variables:
                data["ContentVariables"] = json.dumps(content_variables)
        elif body or not media_url:
            data["Body"] = body
        if media_url:
            data["MediaUrl"] = media_url
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

    def trusted(self, url: str) -> bool:
        """Whether the account's credentials may go to `url`: Twilio's API over
        HTTPS, or the configured TWILIO_API_BASE (same scheme, host and port)."""
        if not url.isascii() or not url.isprintable() or any(c in url for c in "\\ "):
            return False  # nothing that two URL parsers might read differently
        try:
            parts = urlsplit(url)
            origin = _origin(parts)
        except ValueError:  # a malformed host or port
            return False
        if parts.username is not None or parts.password is not None:
            return False
        if origin == self._api_origin:
            return True
        return (
            origin[0] == "https"
            and origin[2] == 443
            and (_TWILIO_API_HOST.fullmatch(origin[1]) is not None)
        )

    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        """An inbound attachment (`MediaUrlN`) and its content type.

        Only a Twilio host (`trusted`) is asked, with the account credentials;
        any other URL is refused without a request. The redirect to Twilio's
        storage is followed without them: credentials never leave for a host
        that is not Twilio's. Raises MediaRejected for a foreign URL or one
        larger than `max_bytes`.
        """
        if not self.trusted(url):
            raise MediaRejected(f"media URL is not Twilio's: {url[:120]!r}")
        target = url
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                headers = self._auth if self.trusted(target) else {}
                async with self._http.get(
                    target, headers=headers, timeout=_TIMEOUT, allow_redirects=False
                ) as resp:
                    if resp.status in _REDIRECTS:
                        target = _redirect_target(target, resp)
                        continue
                    if resp.status != 200:
                        raise TwilioSendError(
                            f"media fetch answered HTTP {resp.status}"
                        )
                    return await _read_capped(resp, max_bytes)
        except _HTTP_ERRORS as exc:
            raise TwilioSendError(
                f"media fetch failed: {exc.__class__.__name__}"
            ) from exc
        raise MediaRejected(f"media redirected more than {_MAX_REDIRECTS} times")


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    """(scheme, host, port): the port a URL without one means included."""
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _redirect_target(current: str, resp: aiohttp.ClientResponse) -> str:
    location = resp.headers.get("location", "")
    target = urljoin(current, location)
    if not location or urlsplit(target).scheme not in ("http", "https"):
        raise MediaRejected("media redirect has no usable Location")
    return target


async def _read_capped(
    resp: aiohttp.ClientResponse, max_bytes: int
) -> tuple[bytes, str]:
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
    return b"".join(chunks), content_type.split(";")[0].strip().lower()


def _error_of(status: int, raw: bytes) -> tuple[str, str]:
    try:
        data = json.loads(raw)
        return str(data.get("code") or status), str(data.get("message") or "")[:300]
    except (ValueError, AttributeError):
        return str(status), raw[:300].decode("utf-8", errors="replace")
