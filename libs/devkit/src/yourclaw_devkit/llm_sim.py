"""An OpenAI- and Anthropic-compatible provider that echoes the user.

It answers `Echo: <the user's text>`, deterministically, in OpenAI's chat
completions and Anthropic's Messages wire formats, streaming (SSE) or not.
Usage is derived from the request's size (about four characters a token), and
a prompt whose leading messages were sent before reports that prefix as read
from cache, as the providers' prompt caches do. Markers in the user's text drive tests:
`#sleep=<seconds>` waits first, `#fail` (or `#fail=<status>`) returns an
OpenAI-shaped error, `#long=<n>` answers with exactly n characters.

Reminders are scripted as a real model would do them: "remind me in 2 minutes
to stretch", when the request offers OpenClaw's `automations` tool, is answered
with that tool call (a one-shot job whose finished run is delivered by webhook
to the automation address in the agent's instructions); the tool's result is
answered "Done: …"; the job's own turn ("REMINDER: stretch") is answered with
the reminder text.

`/v1/audio/transcriptions` (OpenAI's multipart form) "hears" the text in the
uploaded file: its bytes read as UTF-8, without a leading format signature
(`OggS`, `ID3`, `RIFF`, `#!AMR`) or anything unprintable, so a test's voice note
`b"OggS" + b"what time is it"` is transcribed as "what time is it" (no text:
silence, ""). Usage is
the file's duration at ~2 KB a second (a voice note's Opus bitrate), at least
one second; `#fail[=N]` in the text fails the call as for chat.

`/v1/audio/speech` (OpenAI's JSON body, `response_format: "opus"`) answers a
real Ogg/Opus file (`audio/ogg`): Opus silence at about fifteen characters a
second of the text, which the file's OpusTags carry as `YOURCLAW_TEXT=…`
(`spoken_text` reads it back; the transcription endpoint "hears" it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from yourclaw_common.logging import get_logger

__all__ = [
    "AUTOMATIONS_TOOL",
    "DEFAULT_MODEL",
    "PromptCache",
    "RequestLog",
    "anthropic_as_openai",
    "anthropic_events",
    "anthropic_message",
    "anthropic_usage",
    "build_reply",
    "completion",
    "estimate_tokens",
    "llm_router",
    "ogg_packets",
    "openai_error",
    "pick_user_text",
    "reminder_call",
    "speech_audio",
    "spoken_text",
    "stream_events",
    "transcript_of",
    "usage_of",
]

log = get_logger(__name__)

DEFAULT_MODEL = "echo-1"
_MAX_SLEEP_SECONDS = 3600.0
_MAX_LONG_CHARS = 100_000
# Never kept: they carry credentials.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
)

# OpenClaw adds a user message of runtime context after the user's own
# (src/agents/internal-runtime-context.ts); older versions used a bare header.
_INTERNAL_BLOCK = re.compile(
    r"<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>.*?(?:<<<END_OPENCLAW_INTERNAL_CONTEXT>>>|\Z)",
    re.DOTALL,
)
# OpenClaw appends a status line such as "Runtime: agent=main | model=… | …".
_RUNTIME_LINE = re.compile(r"^Runtime: agent=.*$", re.MULTILINE)
_INTERNAL_PREFIXES = ("OpenClaw runtime context", "[Internal task completion event]")
# OpenClaw's envelope on user turns: "[Wed 2026-03-11 23:51 PDT] hello".
_TIMESTAMP_PREFIX = re.compile(
    r"^\[[A-Za-z]{3} \d{4}-\d{2}-\d{2} \d{2}:\d{2}[^\]]*\]\s*"
)
_SLEEP = re.compile(r"#sleep=(\d+(?:\.\d+)?)")
_FAIL = re.compile(r"#fail(?:=(\d{3}))?\b")
_LONG = re.compile(r"#long=(\d+)")
_REMIND = re.compile(
    r"remind me in (\d+(?:\.\d+)?) ?(s|sec|secs|seconds?|m|min|mins|minutes?)\b"
    r"(?: to (.+))?",
    re.IGNORECASE,
)
_REMINDER_TURN = "REMINDER:"
# Audio signatures the transcript leaves out (Ogg, MP3, WAV, AMR).
_AUDIO_MAGIC = ("OggS", "ID3", "RIFF", "#!AMR")
_AUDIO_BYTES_PER_SECOND = 2000
_UNPRINTABLE = re.compile(r"[^\S ]+|[\x00-\x1f\x7f-\x9f\ufffd]")
# Where the agent's instructions say automations deliver (render_instructions).
_NOTIFY_URL = re.compile(r"to:\s*(https?://\S*/notify(?:/[0-9a-fA-F-]{36})?)(?![\w/-])")
# Speech: OpenAI's limit on `input`, how fast the stand-in "speaks", and the
# Opus packet it speaks with (one 20 ms CELT frame of silence, mono).
_MAX_SPEECH_CHARS = 4096
_SPEECH_CHARS_PER_SECOND = 15
_OPUS_SILENCE = b"\xf8\xff\xfe"
_OPUS_FRAME_SAMPLES = 960  # 20 ms at 48 kHz, the rate Ogg/Opus granules count in
_OPUS_PRE_SKIP = 312
_PACKETS_PER_PAGE = 50
_SPOKEN_TAG = "YOURCLAW_TEXT="
AUTOMATIONS_TOOL = "automations"
_TOOL_CALL = "tool_call"
_SENTENCES = (
    "This is a long reply from the YourClaw dev simulator.",
    "It is made of plain sentences so that splitting can be checked.",
    "Every run produces exactly the same text for the same length.",
    "WhatsApp allows at most sixteen hundred characters per message.",
)


class RequestLog:
    """Model calls received (chat, messages, transcriptions), oldest first; safe
    across threads."""

    def __init__(self, *, max_records: int = 10_000):
        self._lock = threading.Lock()
        self._records: deque[dict[str, Any]] = deque(maxlen=max_records)

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records)

    def clear(self) -> int:
        with self._lock:
            count = len(self._records)
            self._records.clear()
            return count


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    pieces: list[str] = []
    for part in content:
        if isinstance(part, str):
            pieces.append(part)
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind in ("text", "input_text") and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif kind in ("image_url", "input_image", "image"):
                pieces.append("[image]")
    return " ".join(p.strip() for p in pieces if p.strip())


def pick_user_text(messages: list[Any]) -> str:
    """The text the person wrote: the last user turn that is not OpenClaw's own context."""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        text = _INTERNAL_BLOCK.sub("", _content_text(message.get("content"))).strip()
        text = _TIMESTAMP_PREFIX.sub("", text, count=1).strip()
        text = _RUNTIME_LINE.sub("", text).strip()
        if text and not text.startswith(_INTERNAL_PREFIXES):
            return text
    return ""


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_OGG_CRC = _crc_table()


def _ogg_crc(data: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, no reflection."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[(crc >> 24) ^ byte]
    return crc


def _ogg_page(
    packets: list[bytes], *, serial: int, sequence: int, granule: int, flags: int
) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    page = (
        struct.pack(
            "<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0, len(lacing)
        )
        + bytes(lacing)
        + b"".join(packets)
    )
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def speech_audio(text: str) -> bytes:
    """An Ogg/Opus file of silence as long as `text` takes to say (at least a
    second), carrying `text` in its OpusTags."""
    serial = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    head = struct.pack("<8sBBHIhB", b"OpusHead", 1, 1, _OPUS_PRE_SKIP, 48000, 0, 0)
    vendor = b"yourclaw devsim"
    comment = (_SPOKEN_TAG + text).encode()
    tags = (
        b"OpusTags"
        + struct.pack("<I", len(vendor))
        + vendor
        + struct.pack("<II", 1, len(comment))
        + comment
    )
    pages = [
        _ogg_page([head], serial=serial, sequence=0, granule=0, flags=0x02),
        _ogg_page([tags], serial=serial, sequence=1, granule=0, flags=0),
    ]
    seconds = max(1.0, len(text) / _SPEECH_CHARS_PER_SECOND)
    frames = round(seconds * 1000 / 20)
    done = 0
    while done < frames:
        count = min(_PACKETS_PER_PAGE, frames - done)
        done += count
        pages.append(
            _ogg_page(
                [_OPUS_SILENCE] * count,
                serial=serial,
                sequence=len(pages),
                granule=done * _OPUS_FRAME_SAMPLES,
                flags=0x04 if done == frames else 0,
            )
        )
    return b"".join(pages)


def ogg_packets(data: bytes) -> list[bytes]:
    """The packets of an Ogg stream, each page's checksum verified; ValueError
    for anything that is not a well-formed Ogg stream."""
    packets: list[bytes] = []
    partial = b""
    at = 0
    while at < len(data):
        if len(data) - at < 27 or data[at : at + 4] != b"OggS":
            raise ValueError(f"no Ogg page at byte {at}")
        segments = data[at + 26]
        body_at = at + 27 + segments
        lacing = data[at + 27 : body_at]
        end = body_at + sum(lacing)
        if len(lacing) != segments or end > len(data):
            raise ValueError(f"the Ogg page at byte {at} is cut short")
        page = data[at:end]
        (stated,) = struct.unpack("<I", page[22:26])
        if _ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != stated:
            raise ValueError(f"the Ogg page at byte {at} fails its checksum")
        offset = body_at
        for size in lacing:
            partial += data[offset : offset + size]
            offset += size
            if size < 255:
                packets.append(partial)
                partial = b""
        at = end
    if not packets:
        raise ValueError("no Ogg packets")
    return packets


def spoken_text(audio: bytes) -> str | None:
    """The text a `speech_audio` file says; None for any other audio."""
    try:
        packets = ogg_packets(audio)
    except ValueError:
        return None
    if len(packets) < 2 or not packets[0].startswith(b"OpusHead"):
        return None
    tags = packets[1]
    if not tags.startswith(b"OpusTags"):
        return None
    (vendor,) = struct.unpack_from("<I", tags, 8)
    at = 12 + vendor
    (count,) = struct.unpack_from("<I", tags, at)
    at += 4
    for _ in range(count):
        (size,) = struct.unpack_from("<I", tags, at)
        comment = tags[at + 4 : at + 4 + size].decode("utf-8", errors="replace")
        at += 4 + size
        if comment.startswith(_SPOKEN_TAG):
            return comment.removeprefix(_SPOKEN_TAG)
    return None


def transcript_of(audio: bytes) -> str:
    """What the stand-in hears in `audio`: what a file it spoke says, else its
    printable UTF-8 text, without a format signature; "" (silence) when there
    is none."""
    if (said := spoken_text(audio)) is not None:
        return said
    text = audio.decode("utf-8", errors="replace")
    text = " ".join(_UNPRINTABLE.sub(" ", text).split())
    for magic in _AUDIO_MAGIC:
        if text.startswith(magic):
            text = text.removeprefix(magic).strip()
            break
    return text


def _long_text(length: int) -> str:
    out: list[str] = []
    size, i = 0, 0
    while size < length:
        sentence = _SENTENCES[i % len(_SENTENCES)] + " "
        out.append(sentence)
        size += len(sentence)
        i += 1
    text = "".join(out)[:length]
    return text[:-1] + "." if text.endswith(" ") else text


def build_reply(user_text: str) -> str:
    """What the stand-in answers to `user_text`."""
    if _REMINDER_TURN in user_text:
        # The job's own turn (OpenClaw may put a label in front of it).
        what = user_text.partition(_REMINDER_TURN)[2].strip().splitlines()
        return "Reminder: " + (what[0].strip() if what else "")
    if match := _LONG.search(user_text):
        return _long_text(min(int(match.group(1)), _MAX_LONG_CHARS))
    return f"Echo: {user_text}"


def _offers_tool(body: dict[str, Any], name: str) -> bool:
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            function = tool.get("function")
            if isinstance(function, dict) and function.get("name") == name:
                return True
            if tool.get("name") == name:
                return True
    return False


def _notify_url(messages: list[Any]) -> str | None:
    for message in messages:
        if isinstance(message, dict):
            if match := _NOTIFY_URL.search(_content_text(message.get("content"))):
                return match.group(1)
    return None


def reminder_call(body: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The `automations` tool call a model makes for "remind me in …", if any."""
    match = _REMIND.search(text)
    messages = body.get("messages") or []
    direct = _offers_tool(body, AUTOMATIONS_TOOL)
    # OpenClaw may offer long-tail tools only through Tool Search (`tool_call`).
    if match is None or not (direct or _offers_tool(body, _TOOL_CALL)):
        return None
    if _after_tool(body):
        return None  # the tool ran already: answer in words
    amount = float(match.group(1))
    seconds = amount * 60 if match.group(2).lower().startswith("m") else amount
    what = (match.group(3) or "the thing you asked about").strip().rstrip(".!")
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    job: dict[str, Any] = {
        "name": f"Reminder: {what}"[:80],
        "schedule": {"kind": "at", "at": at.isoformat(timespec="seconds")},
        "sessionTarget": "isolated",
        "payload": {"kind": "agentTurn", "message": f"{_REMINDER_TURN} {what}"},
    }
    if url := _notify_url(messages):
        job["delivery"] = {"mode": "webhook", "to": url}
    args: dict[str, Any] = {"action": "add", "job": job}
    name = AUTOMATIONS_TOOL
    if not direct:
        name, args = _TOOL_CALL, {"id": AUTOMATIONS_TOOL, "args": args}
    return {
        "id": "call_" + secrets.token_hex(8),
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(args).decode()},
    }


def _after_tool(body: dict[str, Any]) -> bool:
    """Whether a tool already answered since the person's last message (OpenClaw
    may add its own context message after the tool result)."""
    seen_tool = False
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        if message.get("role") == "tool":
            seen_tool = True
        elif message.get("role") == "user" and pick_user_text([message]):
            return seen_tool
    return seen_tool


# OpenAI caches a prompt prefix from this many tokens on.
_OPENAI_CACHE_MINIMUM = 1024


def anthropic_as_openai(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages create read as a chat completion request (system first, tool
    results as `tool` messages, tools by name), for the shared reply logic."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, list):
            messages.append({"role": role, "content": content})
            continue
        blocks = [b for b in content if isinstance(b, dict)]
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        rest = [b for b in blocks if b not in uses and b not in results]
        messages.extend(
            {
                "role": "tool",
                "tool_call_id": r.get("tool_use_id"),
                "content": r.get("content"),
            }
            for r in results
        )
        if rest or not (uses or results):
            messages.append({"role": role, "content": rest})
        if uses:
            messages.append(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": u.get("id"), "function": {"name": u.get("name")}}
                        for u in uses
                    ],
                }
            )
    tools = [
        {"type": "function", "function": {"name": t.get("name")}}
        for t in body.get("tools") or []
        if isinstance(t, dict)
    ]
    return {"messages": messages, "tools": tools}


def anthropic_usage(
    body: dict[str, Any], reply: str, prompt: tuple[int, int]
) -> dict[str, int]:
    """Anthropic-style usage. With `cache_control` in the request the prefix
    before the last message is written to the cache, or read from it when it
    was sent before; without, everything is plain input."""
    total, cached = prompt
    usage = {
        "input_tokens": total,
        "output_tokens": estimate_tokens(reply),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    if b"cache_control" not in orjson.dumps(body):
        return usage
    messages = body.get("messages") or []
    last = estimate_tokens(orjson.dumps(messages[-1]).decode()) if messages else 0
    fresh = min(total, last)
    usage["input_tokens"] = fresh
    usage["cache_read_input_tokens"] = min(cached, total - fresh)
    usage["cache_creation_input_tokens"] = (
        total - fresh - usage["cache_read_input_tokens"]
    )
    return usage


def _tool_use(tool_call: dict[str, Any]) -> dict[str, Any]:
    function = tool_call["function"]
    return {
        "type": "tool_use",
        "id": "toolu_" + tool_call["id"].removeprefix("call_"),
        "name": function["name"],
        "input": orjson.loads(function["arguments"]),
    }


def anthropic_message(
    *,
    message_id: str,
    model: str,
    reply: str,
    usage: dict[str, int],
    tool_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole (not streamed) Messages response."""
    content = [_tool_use(tool_call)] if tool_call else [{"type": "text", "text": reply}]
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tool_call else "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + _sse({"type": kind, **payload})


def anthropic_events(message: dict[str, Any]) -> list[bytes]:
    """The events that stream `message` (an `anthropic_message`), `message_stop`
    last."""
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**message["usage"], "output_tokens": 1},
    }
    events = [_event("message_start", {"message": start})]
    [block] = message["content"]
    if block["type"] == "tool_use":
        events.append(
            _event(
                "content_block_start",
                {"index": 0, "content_block": {**block, "input": {}}},
            )
        )
        events.append(
            _event(
                "content_block_delta",
                {
                    "index": 0,
                    "delta": {
                        "type": "input_json_delta",
                        "partial_json": orjson.dumps(block["input"]).decode(),
                    },
                },
            )
        )
    else:
        events.append(
            _event(
                "content_block_start",
                {"index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        events.extend(
            _event(
                "content_block_delta",
                {"index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
            for piece in _chunks(block["text"])
        )
    events.append(_event("content_block_stop", {"index": 0}))
    events.append(
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(_event("message_stop", {}))
    return events


def _anthropic_error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}},
        status_code=status,
    )


def openai_error(
    status: int, message: str, *, kind: str, code: str | None = None
) -> JSONResponse:
    """An error response in OpenAI's shape."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
    )


def _failure(status: int) -> JSONResponse:
    if status == 429:
        return openai_error(
            429,
            "Rate limit reached (devsim #fail=429).",
            kind="requests",
            code="rate_limit_exceeded",
        )
    if status < 500:
        return openai_error(
            status,
            f"Request rejected (devsim #fail={status}).",
            kind="invalid_request_error",
        )
    return openai_error(
        status,
        "The server had an error while processing your request (devsim #fail).",
        kind="server_error",
    )


def _chunks(text: str, size: int = 24) -> list[str]:
    out: list[str] = []
    current = ""
    for token in re.findall(r"\S+\s*|\s+", text):
        current += token
        if len(current) >= size:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def estimate_tokens(text: str) -> int:
    """Tokens as the stand-in counts them: about four characters each, at least one."""
    return max(1, -(-len(text) // 4))


def _segments(body: dict[str, Any]) -> list[str]:
    """The prompt in the order a provider caches it: tools and system, then
    each message."""
    head = orjson.dumps(
        {"tools": body.get("tools") or [], "system": body.get("system") or ""},
        option=orjson.OPT_SORT_KEYS,
    ).decode()
    return [head] + [
        orjson.dumps(m, option=orjson.OPT_SORT_KEYS).decode()
        for m in body.get("messages") or []
    ]


class PromptCache:
    """Which prompt prefixes were sent before (a bounded, thread-safe set)."""

    def __init__(self, *, max_entries: int = 100_000):
        self._lock = threading.Lock()
        self._seen: dict[str, None] = {}
        self._max = max_entries

    def read(self, body: dict[str, Any], *, minimum: int = 0) -> tuple[int, int]:
        """(prompt tokens, of which read from cache) for a request, and remember
        its prefixes. A cached prefix under `minimum` tokens counts as uncached
        (OpenAI caches from 1,024)."""
        segments = _segments(body)
        total = estimate_tokens("".join(segments))
        digest = hashlib.sha256()
        prefixes: list[tuple[str, int]] = []
        size = 0
        # The last message is new by definition; the ones before it may be cached.
        for segment in segments:
            digest.update(segment.encode())
            size += len(segment)
            prefixes.append((digest.hexdigest(), size))
        cached_chars = 0
        with self._lock:
            for key, chars in prefixes[:-1]:
                if key in self._seen:
                    cached_chars = chars
            for key, _ in prefixes:
                self._seen[key] = None
            while len(self._seen) > self._max:
                self._seen.pop(next(iter(self._seen)))
        cached = min(total, cached_chars // 4)
        return total, cached if cached >= minimum else 0


def usage_of(
    messages: list[Any], reply: str, *, prompt: tuple[int, int] | None = None
) -> dict[str, int]:
    """OpenAI-style usage: the prompt's size (or `prompt` = (tokens, cached)
    from a PromptCache) and the reply's."""
    if prompt is None:
        text = "".join(
            _content_text(m.get("content")) for m in messages if isinstance(m, dict)
        )
        prompt = (estimate_tokens(text), 0)
    prompt_tokens, cached = prompt
    completion_tokens = estimate_tokens(reply)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    reply: str,
    usage: dict[str, int],
    tool_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole (not streamed) chat completion."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply if tool_call is None else None,
                    "refusal": None,
                    **({"tool_calls": [tool_call]} if tool_call else {}),
                },
                "logprobs": None,
                "finish_reason": "stop" if tool_call is None else "tool_calls",
            }
        ],
        "usage": usage,
        "system_fingerprint": None,
    }


async def _paced(delay: float, events: list[bytes]) -> AsyncIterator[bytes]:
    if delay:
        await asyncio.sleep(delay)
    for event in events:
        yield event


def _event_stream(delay: float, events: list[bytes]) -> StreamingResponse:
    """Server-sent events, after `delay` (the time to first token)."""
    return StreamingResponse(
        _paced(delay, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _Received(NamedTuple):
    id: str
    model: str
    stream: bool
    delay: float


def _receive(
    requests_log: RequestLog,
    request: Request,
    body: dict[str, Any],
    text: str,
    *,
    delay_seconds: float,
    id_prefix: str,
    **fields: Any,
) -> _Received:
    """Name the call, record it in the request log, and work out its delay."""
    received = _Received(
        id=id_prefix + secrets.token_hex(12),
        model=str(body.get("model") or DEFAULT_MODEL),
        stream=body.get("stream") is True,
        delay=_delay(delay_seconds, text),
    )
    requests_log.add(
        {
            "id": received.id,
            "stream": received.stream,
            **fields,
            "received_at": datetime.now(UTC).isoformat(),
            "model": body.get("model"),
            "path": request.url.path,
            "session_key": request.headers.get("x-openclaw-session-key"),
            "headers": {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in _SECRET_HEADERS
            },
            "user_text": text,
            "body": body,
        }
    )
    return received


def _delay(base: float, text: str) -> float:
    """The configured delay plus what `#sleep=N` in the text asks for, capped."""
    if match := _SLEEP.search(text):
        base += float(match.group(1))
    return min(base, _MAX_SLEEP_SECONDS)


async def _failure_asked(text: str, delay: float) -> int | None:
    """The status `#fail[=N]` in the text asks for, after the delay; else None."""
    match = _FAIL.search(text)
    if match is None:
        return None
    if delay:
        await asyncio.sleep(delay)
    return int(match.group(1) or 500)


async def _audio_call(
    requests_log: RequestLog,
    request: Request,
    logged: dict[str, Any],
    text: str,
    *,
    delay_seconds: float,
    id_prefix: str,
) -> tuple[_Received, JSONResponse | None]:
    """An audio endpoint's call, received as `_receive` does, and the error
    `#fail[=N]` in its text asks for, or None once its delay has passed."""
    call = _receive(
        requests_log,
        request,
        logged,
        text,
        delay_seconds=delay_seconds,
        id_prefix=id_prefix,
        has_authorization="authorization" in request.headers,
    )
    if (status := await _failure_asked(text, call.delay)) is not None:
        return call, _failure(status)
    if call.delay:
        await asyncio.sleep(call.delay)
    return call, None


def _answer(
    openai_body: dict[str, Any], text: str
) -> tuple[str, dict[str, Any] | None]:
    """The reply text, or a reminder tool call (then the text is empty)."""
    tool_call = reminder_call(openai_body, text)
    if tool_call is not None:
        return "", tool_call
    if _after_tool(openai_body) and _REMIND.search(text):
        return "Done: I'll remind you.", None
    return build_reply(text), None


def stream_events(
    *,
    completion_id: str,
    created: int,
    model: str,
    reply: str,
    usage: dict[str, int] | None,
    tool_call: dict[str, Any] | None = None,
) -> list[bytes]:
    """A streamed chat completion's `data:` events, `[DONE]` last."""
    events: list[bytes] = []
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
    }
    # With include_usage every chunk carries `usage: null` until the last.
    extra: dict[str, Any] = {"usage": None} if usage is not None else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice], **extra})

    events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
    if tool_call is not None:
        events.append(chunk({"tool_calls": [{"index": 0, **tool_call}]}))
        events.append(chunk({}, "tool_calls"))
    else:
        events.extend(chunk({"content": piece}) for piece in _chunks(reply))
        events.append(chunk({}, "stop"))
    if usage is not None:
        events.append(_sse({**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


def llm_router(
    *, api_key: str | None, delay_seconds: float, requests_log: RequestLog
) -> APIRouter:
    """`/v1/chat/completions`, `/v1/messages` (Anthropic),
    `/v1/audio/transcriptions`, `/v1/audio/speech`, `/v1/models` and the dev-only
    `/_devsim/llm/requests`."""
    router = APIRouter()
    cache = PromptCache()

    def unauthorized(request: Request) -> JSONResponse | None:
        if not api_key:
            return None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = request.headers.get("x-api-key", "")  # Anthropic's header
        if hmac.compare_digest(given.encode(), api_key.encode()):
            return None
        return openai_error(
            401,
            "Incorrect API key provided.",
            kind="invalid_request_error",
            code="invalid_api_key",
        )

    async def json_object(request: Request) -> dict[str, Any] | Response:
        """The request's JSON object, or the refusal to send instead (401,
        400 for a body that is no JSON object)."""
        if (denied := unauthorized(request)) is not None:
            return denied
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return openai_error(
                400,
                "We could not parse the JSON body of your request.",
                kind="invalid_request_error",
            )
        return body

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        if isinstance(body := await json_object(request), Response):
            return body
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return openai_error(
                400,
                "'messages' must be a non-empty array.",
                kind="invalid_request_error",
                code="invalid_value",
            )
        text = pick_user_text(messages)
        call = _receive(
            requests_log,
            request,
            body,
            text,
            delay_seconds=delay_seconds,
            id_prefix="chatcmpl-",
            user=body.get("user"),
            has_authorization="authorization" in request.headers,
        )
        if (status := await _failure_asked(text, call.delay)) is not None:
            return _failure(status)
        reply, tool_call = _answer(body, text)
        usage = usage_of(
            messages, reply, prompt=cache.read(body, minimum=_OPENAI_CACHE_MINIMUM)
        )
        answer: dict[str, Any] = {
            "completion_id": call.id,
            "created": int(time.time()),
            "model": call.model,
            "reply": reply,
            "tool_call": tool_call,
        }
        log.info(
            "devsim.llm.completion", id=call.id, stream=call.stream, model=call.model
        )
        if call.stream:
            options = body.get("stream_options")
            include_usage = (
                isinstance(options, dict) and options.get("include_usage") is True
            )
            return _event_stream(
                call.delay,
                stream_events(usage=usage if include_usage else None, **answer),
            )
        if call.delay:
            await asyncio.sleep(call.delay)
        return JSONResponse(completion(usage=usage, **answer))

    @router.post("/v1/messages")
    async def messages_create(request: Request) -> Response:
        if unauthorized(request) is not None:
            return _anthropic_error(401, "invalid x-api-key", "authentication_error")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _anthropic_error(400, "invalid JSON body", "invalid_request_error")
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("messages"), list)
            or not body["messages"]
            or not isinstance(body.get("max_tokens"), int)
        ):
            return _anthropic_error(
                400,
                "messages: non-empty array and max_tokens: integer are required",
                "invalid_request_error",
            )
        as_openai = anthropic_as_openai(body)
        text = pick_user_text(as_openai["messages"])
        call = _receive(
            requests_log,
            request,
            body,
            text,
            delay_seconds=delay_seconds,
            id_prefix="msg_",
            user=(body.get("metadata") or {}).get("user_id"),
            has_authorization="x-api-key" in request.headers
            or "authorization" in request.headers,
        )
        if (status := await _failure_asked(text, call.delay)) is not None:
            kind = "rate_limit_error" if status == 429 else "api_error"
            return _anthropic_error(status, f"devsim #fail={status}", kind)
        reply, tool_call = _answer(as_openai, text)
        usage = anthropic_usage(body, reply, cache.read(body))
        log.info("devsim.llm.message", id=call.id, stream=call.stream, model=call.model)
        message = anthropic_message(
            message_id=call.id,
            model=call.model,
            reply=reply,
            usage=usage,
            tool_call=tool_call,
        )
        if call.stream:
            return _event_stream(call.delay, anthropic_events(message))
        if call.delay:
            await asyncio.sleep(call.delay)
        return JSONResponse(message)

    def model_object(model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": 0,
            "owned_by": "yourclaw-devsim",
        }

    @router.get("/v1/models")
    async def list_models(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        return JSONResponse({"object": "list", "data": [model_object(DEFAULT_MODEL)]})

    @router.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        return JSONResponse(model_object(model_id))

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        try:
            form = await request.form()
        except Exception:  # a body that is no multipart form
            return openai_error(
                400, "Could not parse multipart form", kind="invalid_request_error"
            )
        upload, model = form.get("file"), form.get("model")
        if isinstance(upload, str) or upload is None or not model:
            await form.close()
            return openai_error(
                400,
                "'file' and 'model' are required.",
                kind="invalid_request_error",
                code="invalid_value",
            )
        audio = await upload.read()
        await form.close()
        text = transcript_of(audio)
        call, failed = await _audio_call(
            requests_log,
            request,
            {
                "model": model,
                "file": {
                    "filename": upload.filename,
                    "content_type": upload.content_type,
                    "bytes": len(audio),
                },
            },
            text,
            delay_seconds=delay_seconds,
            id_prefix="transcription-",
        )
        if failed is not None:
            return failed
        seconds = max(1, len(audio) // _AUDIO_BYTES_PER_SECOND)
        log.info("devsim.llm.transcription", id=call.id, seconds=seconds)
        return JSONResponse(
            {"text": text, "usage": {"type": "duration", "seconds": seconds}}
        )

    @router.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        if isinstance(body := await json_object(request), Response):
            return body
        text, model = body.get("input"), body.get("model")
        if not isinstance(text, str) or not text or not model or not body.get("voice"):
            return openai_error(
                400,
                "'model', 'input' and 'voice' are required.",
                kind="invalid_request_error",
                code="invalid_value",
            )
        if len(text) > _MAX_SPEECH_CHARS:
            return openai_error(
                400,
                f"'input' is longer than {_MAX_SPEECH_CHARS} characters.",
                kind="invalid_request_error",
                code="string_above_max_length",
            )
        if body.get("response_format", "mp3") != "opus":
            return openai_error(
                400,
                "The devsim stand-in speaks only response_format 'opus'.",
                kind="invalid_request_error",
                code="invalid_value",
            )
        call, failed = await _audio_call(
            requests_log,
            request,
            {k: v for k, v in body.items() if k != "input"} | {"characters": len(text)},
            text,
            delay_seconds=delay_seconds,
            id_prefix="speech-",
        )
        if failed is not None:
            return failed
        audio = speech_audio(text)
        log.info("devsim.llm.speech", id=call.id, characters=len(text))
        return Response(audio, media_type="audio/ogg")

    @router.get("/_devsim/llm/requests")
    async def devsim_requests() -> dict[str, Any]:
        return {"requests": requests_log.all()}

    @router.delete("/_devsim/llm/requests")
    async def devsim_clear_requests() -> dict[str, int]:
        return {"deleted": requests_log.clear()}

    return router
