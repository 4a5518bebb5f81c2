"""Signed, expiring links to media we host for a provider to fetch.

Twilio sends a WhatsApp voice message only from a public `MediaUrl`:
messaging keeps the audio (`voice_reply_media`) and signs a link to it with
MEDIA_URL_SIGNING_KEY; gateway-api, the public edge, serves the row only to a
link whose signature and expiry check out. Only those two services hold the
key.
"""

from __future__ import annotations

import hashlib
import hmac
from uuid import UUID

__all__ = ["MEDIA_PATH", "media_signature", "media_signature_ok", "media_url"]

# Where gateway-api serves them: `<MEDIA_PATH>/<id>.ogg?exp=<unix time>&sig=<hex>`.
MEDIA_PATH = "/api/v1/media"


def media_signature(key: str, media_id: UUID, expires: int) -> str:
    """HMAC-SHA256 (hex) of the media id and its expiry (unix seconds)."""
    message = f"{media_id}.{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def media_url(
    base_url: str, key: str, media_id: UUID, expires: int, *, suffix: str = "ogg"
) -> str:
    """The public link to a media row, valid until `expires` (unix seconds)."""
    signature = media_signature(key, media_id, expires)
    return (
        f"{base_url.rstrip('/')}{MEDIA_PATH}/{media_id}.{suffix}"
        f"?exp={expires}&sig={signature}"
    )


def media_signature_ok(key: str, media_id: UUID, expires: int, signature: str) -> bool:
    """Whether `signature` is the key's for this media id and expiry (the
    expiry itself is the caller's to check). An empty key verifies nothing:
    anyone could sign with it."""
    if not key:
        return False
    expected = media_signature(key, media_id, expires)
    return hmac.compare_digest(expected.encode(), signature.lower().encode())
