"""Voice notes: an inbound audio attachment, fetched through its channel,
transcribed by an OpenAI-compatible `/v1/audio/transcriptions` and handed to
the assistant as the user's text, marked as a voice note.

The transcription goes through llm-proxy (VOICE_TRANSCRIPTION_URL) with the
service credential LLM_PROXY_SERVICE_TOKEN and the user's id in
`X-YourClaw-User`: the proxy limits and meters the minutes to that user as it
does their assistant's own calls. In dev, without the proxy, it goes straight
to the stand-in at DEV_LLM_BASE_URL.

A voice note that cannot be heard (too large, a format the provider does not
decode, a transcription that failed) gets one plain reply; the inbound message
is stored as any other.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import aiohttp
from yourclaw_common.events import InboundMedia
from yourclaw_common.logging import get_logger

from yourclaw_messaging import metrics, replies
from yourclaw_messaging.errors import MediaRejected
from yourclaw_messaging.outgoing import Planned

__all__ = [
    "AUDIO_TYPES",
    "USER_HEADER",
    "AudioClient",
    "Transcriber",
    "TranscriptionFailed",
    "TranscriptionRefused",
    "VoiceNotes",
    "is_voice_note",
]

log = get_logger(__name__)

# What OpenAI's transcriptions decode (flac, mp3, mp4, mpeg, mpga, m4a, ogg,
# wav, webm), by the content types WhatsApp and Telegram give them, and the
# file name extension the provider reads the format from. Not AMR or 3GPP
# (some phones' MMS audio): the provider cannot decode them.
AUDIO_TYPES: dict[str, str] = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/webm": "webm",
    "audio/flac": "flac",
}
# llm-proxy reads the user a service's call is for from this header.
USER_HEADER = "X-YourClaw-User"
# What a voice note becomes in the user's turn.
MARK = "(voice note)"
# A transcription's JSON answer is small; anything larger is not one.
_MAX_ANSWER_BYTES = 1024 * 1024
# Downloads that name no type: the type the message declared stands.
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class TranscriptionFailed(Exception):
    """The transcription endpoint did not give a transcript."""


class TranscriptionRefused(TranscriptionFailed):
    """The proxy refused it for the user's spend (402): the user was told once."""


def is_voice_note(media: Sequence[InboundMedia]) -> bool:
    """Whether a message's attachments are audio, all of them."""
    return bool(media) and all(
        (m.content_type or "").lower().startswith("audio/") for m in media
    )


@dataclass
class AudioClient:
    """An OpenAI-compatible `/v1/audio/*` (llm-proxy, or the stand-in in dev),
    called on a user's behalf: the service credential, and the user in
    USER_HEADER, whom the proxy limits and meters the call to."""

    http: aiohttp.ClientSession
    # With or without `/v1`.
    base_url: str
    token: str
    timeout_seconds: float = 60.0

    def endpoint(self, name: str) -> str:
        """`<base>/v1/audio/<name>`."""
        base = self.base_url.rstrip("/").removesuffix("/v1")
        return f"{base}/v1/audio/{name}"

    @asynccontextmanager
    async def post(
        self,
        name: str,
        *,
        user_id: UUID,
        json: object = None,
        data: aiohttp.FormData | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        async with self.http.post(
            self.endpoint(name),
            json=json,
            data=data,
            headers={
                "Authorization": f"Bearer {self.token}",
                USER_HEADER: str(user_id),
            },
            timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
            allow_redirects=False,
        ) as resp:
            yield resp


@dataclass
class Transcriber(AudioClient):
    model: str = "whisper-1"

    async def transcribe(
        self, audio: bytes, content_type: str, *, user_id: UUID
    ) -> str:
        """The text of `audio` (one of AUDIO_TYPES), transcribed for `user_id`."""
        form = aiohttp.FormData()
        form.add_field("model", self.model)
        form.add_field("response_format", "json")
        form.add_field(
            "file",
            audio,
            filename=f"voice.{AUDIO_TYPES.get(content_type, 'ogg')}",
            content_type=content_type,
        )
        try:
            async with self.post("transcriptions", user_id=user_id, data=form) as resp:
                status = resp.status
                raw = await resp.content.read(_MAX_ANSWER_BYTES)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TranscriptionFailed(
                f"transcription unreachable: {exc.__class__.__name__}"
            ) from exc
        if status == 402:
            raise TranscriptionRefused("over the user's allowance")
        if status != 200:
            raise TranscriptionFailed(f"transcription answered HTTP {status}")
        try:
            text = json.loads(raw).get("text")
        except (ValueError, AttributeError) as exc:
            raise TranscriptionFailed("transcription answer is not JSON") from exc
        if not isinstance(text, str):
            raise TranscriptionFailed("transcription answer has no text")
        return text.strip()


def _size(n: int) -> str:
    """A byte count as a person reads it: "16 MB", "512 KB", "64 bytes"."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= scale:
            return f"{round(n / scale, 1):g} {unit}"
    return f"{n} bytes"


class _Fetches(Protocol):
    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]: ...


@dataclass
class VoiceNotes:
    """Turns a voice note into the user's text, or the reply saying why not.
    `transcriber` None: none is configured, and voice notes are told so."""

    transcriber: Transcriber | None
    max_bytes: int = 16 * 1024 * 1024

    async def content(
        self,
        channel: _Fetches,
        media: Sequence[InboundMedia],
        body: str,
        *,
        user_id: UUID,
        key: str,
    ) -> str | Planned:
        """`body` and each voice note's transcript, marked; or one notice.
        `key`: the inbound message's provider id, for the logs."""
        if self.transcriber is None:
            return self._notice("unavailable", replies.VOICE_UNAVAILABLE, key)
        texts = [body] if body.strip() else []
        for note in media:
            declared = (note.content_type or "").split(";")[0].strip().lower()
            if declared not in AUDIO_TYPES:
                kind = declared.partition("/")[2] or "this"
                text = replies.VOICE_UNSUPPORTED.format(kind=kind)
                return self._notice("unsupported", text, key, content_type=declared)
            try:
                audio, fetched = await channel.fetch_media(
                    note.url, max_bytes=self.max_bytes
                )
            except MediaRejected as exc:
                text = replies.VOICE_UNREADABLE.format(size=_size(self.max_bytes))
                return self._notice("rejected", text, key, error=exc.detail)
            content_type = declared if fetched in _UNTYPED else fetched
            if content_type not in AUDIO_TYPES:
                kind = content_type.partition("/")[2] or "this"
                text = replies.VOICE_UNSUPPORTED.format(kind=kind)
                return self._notice("unsupported", text, key, content_type=content_type)
            try:
                heard = await self.transcriber.transcribe(
                    audio, content_type, user_id=user_id
                )
            except TranscriptionRefused:
                # Over the cap: stored SKIPPED, like a text message would be.
                return self._notice("over_allowance", "", key)
            except TranscriptionFailed as exc:
                return self._notice("failed", replies.VOICE_FAILED, key, error=str(exc))
            if not heard:
                return self._notice("empty", replies.VOICE_EMPTY, key)
            metrics.VOICE_NOTES.labels("transcribed").inc()
            log.info(
                "messaging.voice.transcribed",
                message_sid=key,
                audio_bytes=len(audio),
                characters=len(heard),
            )
            texts.append(f"{MARK} {heard}")
        return "\n\n".join(texts)

    def _notice(self, outcome: str, text: str, key: str, **fields: str) -> Planned:
        metrics.VOICE_NOTES.labels(outcome).inc()
        log.warning(
            "messaging.voice.not_transcribed",
            message_sid=key,
            outcome=outcome,
            **fields,
        )
        return Planned([text], "notice")
