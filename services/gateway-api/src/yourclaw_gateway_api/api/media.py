"""`/api/v1/media/<id>.ogg`: spoken replies messaging keeps for Twilio to fetch
(a WhatsApp voice message needs a public MediaUrl). No sign-in: the link's
HMAC signature (MEDIA_URL_SIGNING_KEY, which only messaging and gateway-api
hold) and its expiry are the credential."""

from __future__ import annotations

import time
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response
from yourclaw_common.errors import Forbidden, NotFound
from yourclaw_common.media_links import MEDIA_PATH, media_signature_ok

from yourclaw_gateway_api import repository
from yourclaw_gateway_api.dependencies import Pool, Settings
from yourclaw_gateway_api.errors import error_responses

__all__ = ["router"]

router = APIRouter(prefix=MEDIA_PATH, tags=["media"])


@router.get(
    "/{name}",
    summary="A spoken reply, by the signed link messaging gave Twilio",
    response_class=Response,
    responses={
        200: {"content": {"audio/ogg": {}}, "description": "The audio."},
        **error_responses(
            {
                403: "INVALID_SIGNATURE: the link was not signed by us",
                404: "MEDIA_NOT_FOUND: no such media, or its link has expired",
            }
        ),
    },
)
async def get_media(
    name: str,
    pool: Pool,
    settings: Settings,
    exp: Annotated[int, Query(description="Expiry, unix seconds.")],
    sig: Annotated[str, Query(max_length=128, description="HMAC-SHA256, hex.")],
) -> Response:
    stem, dot, _suffix = name.partition(".")
    try:
        media_id = UUID(stem) if dot else None
    except ValueError:
        media_id = None
    if media_id is None:
        raise NotFound("no such media", code="MEDIA_NOT_FOUND")
    key = settings.media_url_signing_key.get_secret_value()
    if not media_signature_ok(key, media_id, exp, sig):
        raise Forbidden(
            "this media link was not signed by us", code="INVALID_SIGNATURE"
        )
    if exp < time.time():
        raise NotFound("this media link has expired", code="MEDIA_NOT_FOUND")
    async with pool.acquire() as conn:
        row = await repository.voice_reply_media(conn, media_id)
    if row is None:
        raise NotFound("no such media", code="MEDIA_NOT_FOUND")
    return Response(
        bytes(row["content"]),
        media_type=row["content_type"],
        headers={"cache-control": "private, max-age=300"},
    )
