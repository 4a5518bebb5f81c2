"""`/api/v1/users/me`: the signed-in user's profile and WhatsApp number."""

from __future__ import annotations

from fastapi import APIRouter

from yourclaw_gateway_api import service
from yourclaw_gateway_api.dependencies import CurrentUser, Pool, SensitiveUser
from yourclaw_gateway_api.errors import error_responses
from yourclaw_gateway_api.schemas import PhoneIn, PhoneOut, UserOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.get(
    "/me",
    summary="The signed-in user: profile, phone, subscription and assistant status",
    responses=error_responses({404: "USER_NOT_FOUND: the account was removed"}),
)
async def get_me(user: CurrentUser, pool: Pool) -> UserOut:
    async with pool.acquire() as conn:
        return await service.me(conn, user.id)


@router.post(
    "/me/phone",
    summary="Set (or change) the user's WhatsApp number",
    responses=error_responses(
        {
            409: "PHONE_TAKEN: the number is linked to another account",
            422: "INVALID_PHONE: not a phone number with its country code; "
            "`detail` says what to fix",
        }
    ),
)
async def set_phone(body: PhoneIn, user: SensitiveUser, pool: Pool) -> PhoneOut:
    async with pool.acquire() as conn, conn.transaction():
        return await service.set_phone(conn, user.id, body.phone)
