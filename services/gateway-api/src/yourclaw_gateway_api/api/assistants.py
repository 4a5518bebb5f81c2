"""`/api/v1/assistants`: the user's assistant, and the models it may run.

The provisioner owns assistants: these routes read them, and for a change
publish a request and answer 202 (see `service` on idempotency).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from yourclaw_common.models import AVAILABLE_MODELS, DEFAULT_MODEL

from yourclaw_gateway_api import service
from yourclaw_gateway_api.dependencies import CurrentUser, Pool, Publish
from yourclaw_gateway_api.errors import error_responses
from yourclaw_gateway_api.schemas import (
    AssistantAccepted,
    AssistantOut,
    ModelChange,
    ModelOut,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["assistants"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Retries with the same key make one request.",
    ),
]

_PUBLISH_FAILED = {503: "PUBLISH_FAILED: the request could not be queued; retry"}
_NO_SUBSCRIPTION = {
    402: "SUBSCRIPTION_REQUIRED: subscribe (POST /checkout) first",
}
_NO_ASSISTANT = {404: "ASSISTANT_NOT_FOUND: the user has no assistant"}


@router.get("/models", summary="The models an assistant may run")
async def list_models() -> list[ModelOut]:
    return [
        ModelOut(
            id=m.id,
            display_name=m.display_name,
            description=m.description,
            provider=m.provider,
            default=m.id == DEFAULT_MODEL,
        )
        for m in AVAILABLE_MODELS
    ]


@router.get("/assistants", summary="The user's assistant (status NONE if none)")
async def get_assistant(user: CurrentUser, pool: Pool) -> AssistantOut:
    async with pool.acquire() as conn:
        return await service.assistant(conn, user.id)


@router.post(
    "/assistants",
    status_code=202,
    summary="Create the assistant, or re-create the existing one",
    responses=error_responses(_NO_SUBSCRIPTION | _PUBLISH_FAILED),
)
async def create_assistant(
    user: CurrentUser, pool: Pool, publish: Publish, key: IdempotencyKey = None
) -> AssistantAccepted:
    async with pool.acquire() as conn:
        await service.provision(conn, publish, user.id, idempotency_key=key)
    return AssistantAccepted(status="PROVISIONING")


@router.patch(
    "/assistants",
    status_code=202,
    summary="Switch the assistant to another model",
    responses=error_responses(_NO_SUBSCRIPTION | _NO_ASSISTANT | _PUBLISH_FAILED),
)
async def change_model(
    body: ModelChange,
    user: CurrentUser,
    pool: Pool,
    publish: Publish,
    key: IdempotencyKey = None,
) -> AssistantAccepted:
    async with pool.acquire() as conn:
        await service.change_model(
            conn, publish, user.id, body.model, idempotency_key=key
        )
    return AssistantAccepted(status="PROVISIONING")


@router.delete(
    "/assistants",
    status_code=202,
    summary="Delete the assistant and its container",
    responses=error_responses(_NO_ASSISTANT | _PUBLISH_FAILED),
)
async def delete_assistant(
    user: CurrentUser, pool: Pool, publish: Publish, key: IdempotencyKey = None
) -> AssistantAccepted:
    async with pool.acquire() as conn:
        await service.deprovision(conn, publish, user.id, idempotency_key=key)
    return AssistantAccepted(status="DEPROVISIONING")
