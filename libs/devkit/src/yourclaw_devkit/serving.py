"""Serve an ASGI app with uvicorn on the running event loop (tests, `make up`);
run a service's `run(settings, stop)` in-process (tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Mapping
from typing import Any, TypeVar

import uvicorn
from yourclaw_common.embedded import free_port

__all__ = ["InProcess", "running_app", "settings_of"]

_S = TypeVar("_S")


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


def settings_of(cls: Callable[..., _S], env: Mapping[str, str], **overrides: Any) -> _S:
    """A service's settings from `env` (variable names) and `overrides` (field
    names), without reading any `.env` file."""
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    values.update(overrides)
    return cls(_env_file=None, **values)


class InProcess:
    """Services run in-process as `run(settings, stop)`, all stopped by `stop()`."""

    def __init__(self) -> None:
        self._running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(
        self,
        run: Callable[[_S, asyncio.Event], Coroutine[Any, Any, None]],
        settings: _S,
    ) -> asyncio.Task[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings, stop))
        self._running.append((stop, task))
        return task

    async def stop(self) -> None:
        """Ask every service to stop and wait for them; their errors are dropped
        (a test that cares awaits the task `start` returned)."""
        for stop, _ in self._running:
            stop.set()
        await asyncio.gather(*(t for _, t in self._running), return_exceptions=True)
        self._running.clear()
