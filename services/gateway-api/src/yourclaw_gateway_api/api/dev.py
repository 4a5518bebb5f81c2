"""`POST /api/v1/dev/login`: sign in with just an email, for local runs.

Mounted only with DEV_LOGIN_ENABLED; its tokens come from a separate issuer and
key, which the verifier knows only then.
"""

from __future__ import annotations

from fastapi import APIRouter

from yourclaw_gateway_api.dependencies import Dev, SensitiveIp
from yourclaw_gateway_api.schemas import DevLoginIn, DevLoginOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/dev", tags=["dev"])


@router.post(
    "/login",
    summary="Local runs only: a token for any email, no password",
    dependencies=[SensitiveIp],
)
async def dev_login(body: DevLoginIn, dev: Dev) -> DevLoginOut:
    token, user = dev.mint(body.email)
    return DevLoginOut(access_token=token, expires_in=dev.ttl_seconds, user_id=user.id)
