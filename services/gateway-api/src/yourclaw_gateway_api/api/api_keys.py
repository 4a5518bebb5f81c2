"""`/api/v1/api-keys`: bring-your-own LLM keys. Stored encrypted and bound to the
user; never returned (provider, last 4 characters and date only). A change
re-provisions a READY (or sleeping) assistant so it runs with the new keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response
from yourclaw_common.models import LlmProvider

from yourclaw_gateway_api import service
from yourclaw_gateway_api.dependencies import (
    Box,
    CurrentUser,
    Pool,
    SensitiveUser,
    Settings,
)
from yourclaw_gateway_api.errors import error_responses
from yourclaw_gateway_api.schemas import ApiKeyIn, ApiKeyOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])


@router.get("", summary="The user's keys, without their values")
async def list_api_keys(user: CurrentUser, pool: Pool) -> list[ApiKeyOut]:
    async with pool.acquire() as conn:
        return await service.api_keys(conn, user.id)


@router.post(
    "",
    status_code=201,
    summary="Add or replace the user's key for a provider",
    responses=error_responses(
        {503: "ENCRYPTION_NOT_CONFIGURED: this server cannot store keys"}
    ),
)
async def store_api_key(
    body: Annotated[ApiKeyIn, Body()],
    user: SensitiveUser,
    pool: Pool,
    box: Box,
    settings: Settings,
) -> ApiKeyOut:
    async with pool.acquire() as conn, conn.transaction():
        return await service.store_api_key(
            conn,
            box,
            user.id,
            LlmProvider(body.provider),
            body.key,
            service=settings.service_name,
        )


@router.delete(
    "/{provider}",
    status_code=204,
    summary="Remove the user's key for a provider (the shared key is used again)",
    responses=error_responses({404: "API_KEY_NOT_FOUND: no key for that provider"}),
)
async def delete_api_key(
    provider: LlmProvider, user: SensitiveUser, pool: Pool, settings: Settings
) -> Response:
    async with pool.acquire() as conn, conn.transaction():
        await service.remove_api_key(
            conn, user.id, provider, service=settings.service_name
        )
    return Response(status_code=204)
