"""`GET /api/v1/health`: 200 only when Postgres and JetStream both answer."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response
from yourclaw_common.runtime import check_dependencies

from yourclaw_gateway_api.dependencies import JetStream, Nats, Pool
from yourclaw_gateway_api.errors import json_response

__all__ = ["check_dependencies", "dependency_response", "router"]

router = APIRouter(prefix="/api/v1", tags=["health"])


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
