"""What the lifespan opens, and the `Depends` aliases endpoints take it through."""

from __future__ import annotations

from typing import Annotated, TypedDict

import asyncpg
from fastapi import Depends, Request
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

__all__ = ["JetStream", "Nats", "Pool", "State"]


class State(TypedDict):
    """Yielded by the lifespan; the ASGI server copies it into every request scope."""

    pool: asyncpg.Pool
    nc: NATS
    js: JetStreamContext


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.state.pool
    return pool


def _nats(request: Request) -> NATS:
    nc: NATS = request.state.nc
    return nc


def _jetstream(request: Request) -> JetStreamContext:
    js: JetStreamContext = request.state.js
    return js


Pool = Annotated[asyncpg.Pool, Depends(_pool)]
Nats = Annotated[NATS, Depends(_nats)]
JetStream = Annotated[JetStreamContext, Depends(_jetstream)]
