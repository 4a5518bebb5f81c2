"""`GET /api/v1/health`: 200 only when Postgres and JetStream both answer."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response
from yourclaw_common.runtime import check_dependencies

from yourclaw_gateway_api.dependencies import JetStream, Nats, Pool
from yourclaw_gateway_api.errors import json_response

__all__ = [
    "DEPENDENCY_RESPONSES",
    "check_dependencies",
    "dependency_response",
    "health",
    "router",
]

router = APIRouter(prefix="/api/v1", tags=["health"])


class Healthy(BaseModel):
    status: Literal["ok"]
    checks: dict[str, bool]


class DependencyDown(BaseModel):
    detail: str
    code: Literal["DEPENDENCY_DOWN"]
    checks: dict[str, bool]


DEPENDENCY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Healthy, "description": "Postgres and JetStream answer."},
    503: {"model": DependencyDown, "description": "DEPENDENCY_DOWN: see `checks`."},
}


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


@router.get(
    "/health",
    summary="Service health: Postgres and JetStream",
    responses=DEPENDENCY_RESPONSES,
)
async def health(pool: Pool, nc: Nats, js: JetStream) -> Response:
    return dependency_response(await check_dependencies(pool, nc, js))
