"""`/api/v1/internal`: what the assistants' own gateways call.

`POST /assistants/{id}/notify` is each assistant's automation webhook
(`cron.webhookToken` in its OpenClaw config is the per-assistant notify
secret): a finished run becomes an `outbound.whatsapp` event, which messaging
delivers under the 24-hour window rules and the limits.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel
from yourclaw_common.crypto import SecretBoxError
from yourclaw_common.errors import BadRequest, ServiceUnavailable, Unauthorized
from yourclaw_common.events import OutboundWhatsApp, provider_event_id
from yourclaw_common.logging import get_logger

from yourclaw_gateway_api.dependencies import Box, Pool, Publish
from yourclaw_gateway_api.errors import error_responses

__all__ = ["NotifyReceipt", "router"]

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1/internal", tags=["internal"])

# WhatsApp messages are split by messaging; this only bounds what we queue.
_MAX_TEXT_CHARS = 20_000


class NotifyReceipt(BaseModel):
    """Whether a WhatsApp message was queued (a run with nothing to say is not)."""

    queued: bool


def _bad_token() -> Unauthorized:
    # One answer for an unknown assistant and a wrong secret: ids are not probed.
    return Unauthorized("missing or invalid notify token", code="INVALID_NOTIFY_TOKEN")


def _text_of(payload: dict[str, Any]) -> str:
    """The message in an OpenClaw automation's finished-run payload (or `{text}`)."""
    for key in ("summary", "text", "message"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    if payload.get("status") == "error":
        job = payload.get("job")
        name = job.get("name") if isinstance(job, dict) else None
        what = f'"{name}"' if isinstance(name, str) and name else "a scheduled task"
        return (
            f"Your assistant couldn't finish {what}. "
            "Ask it here what went wrong, or to try again."
        )
    return ""


def _event_id(assistant_id: uuid.UUID, payload: dict[str, Any]) -> uuid.UUID:
    """OpenClaw may post one run twice: its job and run give one event id."""
    job = payload.get("jobId")
    run = payload.get("runId") or payload.get("runAtMs") or payload.get("ts")
    if isinstance(job, str) and job and run is not None:
        return provider_event_id(f"notify:{assistant_id}:{job}:{run}")
    return uuid.uuid4()


@router.post(
    "/assistants/{assistant_id}/notify",
    status_code=202,
    summary="An assistant's automation finished: tell its user in their chat",
    responses=error_responses(
        {
            401: "INVALID_NOTIFY_TOKEN: missing or wrong bearer token",
            503: "PUBLISH_FAILED or ENCRYPTION_NOT_CONFIGURED: retry later",
        }
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "OpenClaw's finished-run event "
                        "(`summary`, `status`, `jobId`, `runAtMs`, …) or `{text}`.",
                    }
                }
            },
        }
    },
)
async def notify(
    assistant_id: uuid.UUID,
    request: Request,
    pool: Pool,
    publish: Publish,
    box: Box,
    authorization: Annotated[str | None, Header()] = None,
) -> NotifyReceipt:
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise _bad_token()
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT user_id, notify_secret_encrypted FROM assistants WHERE id = $1",
            assistant_id,
        )
    if row is None or not row["notify_secret_encrypted"]:
        raise _bad_token()
    try:
        secret = box.decrypt(row["notify_secret_encrypted"], owner=str(row["user_id"]))
    except SecretBoxError:
        log.error("gateway.notify.secret_unreadable", assistant_id=str(assistant_id))
        raise ServiceUnavailable(
            "the notify secret cannot be read", code="SECRET_UNREADABLE"
        ) from None
    if not hmac.compare_digest(given.strip().encode(), secret.encode()):
        log.warning("gateway.notify.bad_token", assistant_id=str(assistant_id))
        raise _bad_token()
    try:
        payload = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON", code="INVALID_BODY") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object", code="INVALID_BODY")
    text = _text_of(payload)
    if not text:
        return NotifyReceipt(queued=False)
    event = OutboundWhatsApp(
        event_id=_event_id(assistant_id, payload),
        user_id=row["user_id"],
        body=text[:_MAX_TEXT_CHARS],
        kind="assistant_notification",
        assistant_id=assistant_id,
    )
    await publish(event, what="message", assistant_id=str(assistant_id))
    log.info(
        "gateway.notify.queued",
        assistant_id=str(assistant_id),
        event_id=str(event.event_id),
    )
    return NotifyReceipt(queued=True)
