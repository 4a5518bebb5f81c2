"""Bare ASGI pieces the paths in front of FastAPI share (`app.py`, `edge.py`,
the lean webhooks): read a body under a limit, answer JSON, know the
status an app answered."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson
from starlette.types import Message, Receive, Scope, Send

__all__ = [
    "DRAIN_BYTES",
    "BodyTooLarge",
    "Disconnected",
    "Headers",
    "StatusRecorder",
    "declared_length",
    "fixed_response",
    "read_body",
    "send_json",
]

Headers = Iterable[tuple[bytes, bytes]]

# Read and dropped past the limit so the client gets our 413 rather than a reset.
DRAIN_BYTES = 1024 * 1024


class Disconnected(Exception):
    """The client left before its body was read."""


class BodyTooLarge(Exception):
    """The body is over the limit; `close` when the connection must be closed
    because the rest of it was not read."""

    def __init__(self, *, close: bool):
        super().__init__("body too large")
        self.close = close


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, if it sent a plain one."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(receive: Receive, *, limit: int, declared: int | None) -> bytes:
    """The whole body, or `BodyTooLarge` / `Disconnected`.

    Closing with unread bytes in the socket makes the kernel send RST, and the
    client may lose our 413 with it; so a body up to DRAIN_BYTES over the limit
    is read and dropped, and only a bigger one costs the connection.
    """
    drain_limit = limit + DRAIN_BYTES
    if declared is not None and declared > drain_limit:
        raise BodyTooLarge(close=True)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > drain_limit and more:
            raise BodyTooLarge(close=True)
    if size > limit:
        raise BodyTooLarge(close=False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def fixed_response(
    status: int, body: bytes, content_type: bytes, headers: Headers = ()
) -> tuple[Message, Message]:
    """The two messages of an answer that never changes, built once."""
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


async def send_json(
    send: Send, status: int, body: Mapping[str, str], headers: Headers = ()
) -> None:
    start, end = fixed_response(
        status, orjson.dumps(body), b"application/json", headers
    )
    await send(start)
    await send(end)


class StatusRecorder:
    """A `send` that passes every message on and keeps the status answered (0
    until the answer starts, and if the client left before it)."""

    __slots__ = ("_send", "status")

    def __init__(self, send: Send):
        self._send = send
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)
