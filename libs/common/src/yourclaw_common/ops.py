"""A small HTTP server for worker services: /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from yourclaw_common.logging import get_logger

__all__ = ["ReadyCheck", "serve_ops"]

log = get_logger(__name__)

# Returns {dependency: up?}; ready only when every value is True.
ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _route(path: str, ready: ReadyCheck) -> bytes:
    if path == "/metrics":
        return _response("200 OK", generate_latest(), CONTENT_TYPE_LATEST)
    if path == "/healthz":
        return _response("200 OK", b'{"status":"ok"}', "application/json")
    if path == "/readyz":
        try:
            checks = await asyncio.wait_for(ready(), timeout=3)
        except Exception:
            checks = {"checks": False}
        ok = all(checks.values())
        body = orjson.dumps({"status": "ok" if ok else "unavailable", "checks": checks})
        return _response(
            "200 OK" if ok else "503 Service Unavailable", body, "application/json"
        )
    return _response(
        "404 Not Found",
        b'{"detail":"not found","code":"NOT_FOUND"}',
        "application/json",
    )


async def serve_ops(host: str, port: int, ready: ReadyCheck) -> asyncio.Server:
    """Start the server; the caller closes it on shutdown."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            parts = line.decode("latin-1").split()
            # Drain the headers; the routes take no body.
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else "/"
            writer.write(await _route(path, ready))
            await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            log.debug("ops.request_failed", error=str(exc))
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("ops.listening", host=host, port=server.sockets[0].getsockname()[1])
    return server
