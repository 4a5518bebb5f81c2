"""Probes and metrics for the platform: /readyz, /metrics (/healthz is served in
`app.py`, before FastAPI, so liveness costs nothing)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from yourclaw_gateway_api.api.health import (
    DEPENDENCY_RESPONSES,
    check_dependencies,
    dependency_response,
)
from yourclaw_gateway_api.dependencies import JetStream, Nats, Pool

__all__ = ["router"]

router = APIRouter(tags=["ops"])


@router.get(
    "/readyz",
    summary="Readiness: Postgres and JetStream answer",
    responses=DEPENDENCY_RESPONSES,
)
async def readyz(pool: Pool, nc: Nats, js: JetStream) -> Response:
    return dependency_response(await check_dependencies(pool, nc, js))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text format.",
            "content": {
                CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}
            },
        }
    },
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
