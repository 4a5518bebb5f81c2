"""`GET /api/v1/health`: 200 only when Postgres and JetStream both answer."""

from __future__ import annotations

import asyncio

import asyncpg
from fastapi import APIRouter
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from starlette.responses import Response

from yourclaw_gateway_api.dependencies import JetStream, Nats, Pool
from yourclaw_gateway_api.errors import json_response

__all__ = ["check_dependencies", "dependency_response", "router"]

_POSTGRES_TIMEOUT = 2.0
_NATS_TIMEOUT = 1.0

router = APIRouter(prefix="/api/v1", tags=["health"])


async def _postgres_ok(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(_POSTGRES_TIMEOUT):
            async with pool.acquire() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
    except Exception:
        return False


async def _nats_ok(nc: NATS, js: JetStreamContext) -> bool:
    # Connected is not enough: JetStream may be disabled or have lost its meta leader.
    if not nc.is_connected:
        return False
    try:
        async with asyncio.timeout(_NATS_TIMEOUT):
            await js.account_info()
    except Exception:
        return False
    return True


async def check_dependencies(
    pool: asyncpg.Pool, nc: NATS, js: JetStreamContext
) -> dict[str, bool]:
    postgres, nats_up = await asyncio.gather(_postgres_ok(pool), _nats_ok(nc, js))
    return {"postgres": postgres, "nats": nats_up}


def dependency_response(checks: dict[str, bool]) -> Response:
    down = [name for name, ok in checks.items() if not ok]
    if not down:
        return json_response(200, {"status": "ok", "checks": checks})
    return json_response(
        503,
        {
            "detail": "unavailable: " + ", ".join(down),
            "code": "DEPENDENCY_DOWN",
            "checks": checks,
        },
    )


@router.get("/health")
async def health(pool: Pool, nc: Nats, js: JetStream) -> Response:
    return dependency_response(await check_dependencies(pool, nc, js))
