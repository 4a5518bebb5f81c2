"""Voice replies: when a user turned them on (`/voice on`, the dashboard), the
answer to their voice note is spoken too, by an OpenAI-compatible
`/v1/audio/speech` as Ogg/Opus (what Telegram and WhatsApp play as a voice
message), and sent as a voice message besides the text.

Speech goes through llm-proxy as transcription does (the same base URL, the
service credential, the user in `X-YourClaw-User`): metered to the user.
An answer longer than VOICE_REPLY_MAX_CHARS, or one whose speech fails, goes
as text only; the text is never held back for the audio.

WhatsApp (Twilio) sends media only from a public URL: `HostedMedia` keeps the
audio in `voice_reply_media` and gives a link to gateway-api's
`/api/v1/media/<id>.ogg`, signed with MEDIA_URL_SIGNING_KEY and valid for
VOICE_REPLY_MEDIA_TTL_SECONDS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import aiohttp
import asyncpg
from yourclaw_common.logging import get_logger
from yourclaw_common.media_links import media_url

from yourclaw_messaging import metrics, repository
from yourclaw_messaging.voice import AudioClient

__all__ = [
    "HostedMedia",
    "Speaker",
    "Speech",
    "SpeechFailed",
    "SpeechRefused",
    "VoiceReplies",
]

log = get_logger(__name__)

# What OpenAI's `response_format: "opus"` answers: Opus in an Ogg container.
SPEECH_TYPE = "audio/ogg"
# A few minutes of Opus speech is well under this; anything larger is not one.
_MAX_AUDIO_BYTES = 16 * 1024 * 1024


class SpeechFailed(Exception):
    """The speech endpoint did not give audio."""


class SpeechRefused(SpeechFailed):
    """The proxy refused it for the user's spend (402)."""


@dataclass(frozen=True)
class Speech:
    """A reply, spoken."""

    audio: bytes
    content_type: str = SPEECH_TYPE


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to `limit` bytes: `read(n)` gives what has arrived so far,
    and a provider streams its audio in chunks."""
    body = bytearray()
    while len(body) < limit:
        chunk = await stream.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


@dataclass
class Speaker(AudioClient):
    model: str = "tts-1"
    voice: str = "alloy"

    async def speak(self, text: str, *, user_id: UUID) -> Speech:
        """`text` as Ogg/Opus speech, synthesized for `user_id`."""
        body = {
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "opus",
        }
        try:
            async with self.post("speech", user_id=user_id, json=body) as resp:
                status, stated = resp.status, resp.content_type
                audio = await _read_at_most(resp.content, _MAX_AUDIO_BYTES + 1)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SpeechFailed(f"speech unreachable: {exc.__class__.__name__}") from exc
        if status == 402:
            raise SpeechRefused("over the user's allowance")
        if status != 200:
            raise SpeechFailed(f"speech answered HTTP {status}")
        if not stated.startswith("audio/") or not audio.startswith(b"OggS"):
            raise SpeechFailed(f"speech answered {stated or 'no type'}, not Ogg audio")
        if len(audio) > _MAX_AUDIO_BYTES:
            raise SpeechFailed(f"speech answered over {_MAX_AUDIO_BYTES} bytes")
        return Speech(audio)


@dataclass
class VoiceReplies:
    """Speaks the answer to a voice note, for users who turned it on."""

    pool: asyncpg.Pool
    speaker: Speaker
    max_chars: int = 1500

    async def wanted(self, user_id: UUID) -> bool:
        async with self.pool.acquire() as conn:
            return await repository.voice.voice_replies(conn, user_id)

    async def speak(
        self, text: str, *, user_id: UUID, channel: str, key: str
    ) -> Speech | None:
        """The answer spoken, or None when it stays text only (too long, or the
        speech failed: logged). `key`: the voice note's provider id."""
        if len(text) > self.max_chars:
            self._text_only(channel, "too_long", key, characters=len(text))
            return None
        try:
            speech = await self.speaker.speak(text, user_id=user_id)
        except SpeechRefused:
            self._text_only(channel, "over_allowance", key)
            return None
        except SpeechFailed as exc:
            self._text_only(channel, "failed", key, error=str(exc))
            return None
        metrics.VOICE_REPLIES.labels(channel, "spoken").inc()
        log.info(
            "messaging.voice_reply.spoken",
            message_sid=key,
            characters=len(text),
            audio_bytes=len(speech.audio),
        )
        return speech

    def _text_only(
        self, channel: str, outcome: str, key: str, **fields: str | int
    ) -> None:
        metrics.VOICE_REPLIES.labels(channel, outcome).inc()
        log.warning(
            "messaging.voice_reply.text_only",
            message_sid=key,
            outcome=outcome,
            **fields,
        )


@dataclass
class HostedMedia:
    """Keeps spoken replies for a provider to fetch, behind signed links."""

    pool: asyncpg.Pool
    # gateway-api as the provider reaches it (PUBLIC_BASE_URL).
    public_base_url: str
    signing_key: str
    ttl_seconds: int = 3600

    async def host(self, user_id: UUID, speech: Speech) -> str:
        """Store `speech`; a link to it that works for `ttl_seconds`."""
        expires = int(time.time()) + self.ttl_seconds
        async with self.pool.acquire() as conn:
            media_id = await repository.voice.add_media(
                conn,
                user_id,
                speech.audio,
                speech.content_type,
                expires_at=datetime.fromtimestamp(expires, UTC),
            )
        return media_url(self.public_base_url, self.signing_key, media_id, expires)
