"""Probes and metrics for the platform: /readyz, /metrics (/healthz is served in
`app.py`, before FastAPI, so liveness costs nothing)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from yourclaw_gateway_api.api.health import DEPENDENCY_RESPONSES, health

__all__ = ["router"]

router = APIRouter(tags=["ops"])


# The same check as /api/v1/health, where the platform's probes look for it.
router.add_api_route(
    "/readyz",
    health,
    summary="Readiness: Postgres and JetStream answer",
    responses=DEPENDENCY_RESPONSES,
    name="readyz",
)


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
