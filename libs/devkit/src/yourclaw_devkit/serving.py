"""Serve an ASGI app with uvicorn on the running event loop (tests, `make up`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn
from yourclaw_common.embedded import free_port

__all__ = ["running_app"]


class _EmbeddedServer(uvicorn.Server):
    # Inside another program the host owns SIGINT/SIGTERM, not this server.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def running_app(
    app: Any, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve `app` (on a free port unless given) until the block ends; yields its base URL."""
    port = port or free_port(host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    try:
        # uvicorn exposes only a flag, no event to wait on.
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if not server.started:
            try:
                await task
            except SystemExit as exc:  # uvicorn exits when it cannot bind
                raise RuntimeError(f"could not serve on {host}:{port}") from exc
            raise RuntimeError(f"server stopped before serving on {host}:{port}")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(SystemExit):
            await task
