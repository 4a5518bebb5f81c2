"""`POST /api/v1/webhooks/twilio/status`: Twilio's delivery status callbacks.

Checked exactly as the inbound webhook is (`X-Twilio-Signature` over the URL
Twilio called and every POST parameter), then published as
`inbound.whatsapp_status`; messaging applies it (never backwards).
"""

from __future__ import annotations

from time import perf_counter
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from yourclaw_common.errors import (
    BadRequest,
    Forbidden,
    HTTPError,
    ServiceUnavailable,
)
from yourclaw_common.events import InboundWhatsAppStatus, provider_event_id
from yourclaw_common.logging import get_logger
from yourclaw_common.nats import publish

from yourclaw_gateway_api.dependencies import JetStream
from yourclaw_gateway_api.metrics import (
    WEBHOOK_PUBLISH_SECONDS,
    WEBHOOK_SIGNATURE_FAILURES,
    WebhookOutcome,
    webhook_requests,
)
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.form import parse_form
from yourclaw_gateway_api.webhooks.twilio_signature import TwilioSignature

__all__ = ["TWILIO_STATUS_PATH", "twilio_status_router"]

log = get_logger(__name__)

TWILIO_STATUS_PATH = "/api/v1/webhooks/twilio/status"
_PROVIDER = "twilio_status"
_FORM = "application/x-www-form-urlencoded"
_TWIML = b"<Response></Response>"


class UnsupportedMediaType(HTTPError):
    """The body is not a form."""

    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


def _message_id(raw: str | None) -> UUID | None:
    """The `message_id` we put on the callback URL; a signed callback is never
    refused over it (the URL is ours to have got wrong, not Twilio's)."""
    try:
        return UUID(raw) if raw else None
    except ValueError:
        return None


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        },
    }


def twilio_status_router(settings: GatewaySettings) -> APIRouter:
    """The status callback route, bound to the configured Twilio auth token."""
    token = settings.twilio_auth_token.get_secret_value()
    # No token means no check is possible: every request is refused.
    signature = (
        TwilioSignature(token, settings.public_base_url + TWILIO_STATUS_PATH)
        if token
        else None
    )
    publish_timeout = settings.webhook_publish_timeout_seconds
    requests = webhook_requests(_PROVIDER)
    signature_failures = WEBHOOK_SIGNATURE_FAILURES.labels(_PROVIDER)
    publish_seconds = WEBHOOK_PUBLISH_SECONDS.labels(_PROVIDER)

    router = APIRouter(tags=["webhooks"])

    @router.post(
        TWILIO_STATUS_PATH,
        response_class=Response,
        summary="Twilio message status callbacks (signed)",
        responses={
            200: {
                "description": "Queued; an empty TwiML response",
                "content": {"text/xml": {"schema": {"type": "string"}}},
            },
            400: _error("Signed, but no MessageSid or MessageStatus"),
            403: _error("Missing or invalid X-Twilio-Signature"),
            415: _error("Not a form body"),
            503: _error("Could not queue the callback; Twilio retries"),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    _FORM: {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "MessageSid": {"type": "string"},
                                "MessageStatus": {"type": "string"},
                                "ErrorCode": {"type": "string"},
                            },
                            "additionalProperties": {"type": "string"},
                        }
                    }
                },
            }
        },
    )
    async def twilio_status(
        request: Request,
        js: JetStream,
        x_twilio_signature: Annotated[str | None, Header()] = None,
        message_id: Annotated[
            str | None,
            Query(
                description="Ours: messaging puts the message's id on each "
                "send's StatusCallback URL. Not a UUID: the callback is still "
                "applied, by MessageSid alone."
            ),
        ] = None,
    ) -> Response:
        if signature is None:
            requests[WebhookOutcome.NOT_CONFIGURED].inc()
            raise Forbidden(
                "the Twilio webhook is not configured", code="TWILIO_NOT_CONFIGURED"
            )
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != _FORM:
            requests[WebhookOutcome.UNSUPPORTED_MEDIA_TYPE].inc()
            raise UnsupportedMediaType("expected application/x-www-form-urlencoded")
        body = await request.body()
        if not x_twilio_signature:
            raise _invalid_signature(requests, signature_failures, "missing")
        try:
            pairs = parse_form(body.decode())
        except UnicodeDecodeError:
            requests[WebhookOutcome.BAD_REQUEST].inc()
            raise BadRequest("the body is not UTF-8") from None
        if not signature.is_valid(
            x_twilio_signature.encode(), pairs, query=request.url.query, body=body
        ):
            raise _invalid_signature(requests, signature_failures, "mismatch")
        params = dict(pairs)
        sid = params.get("MessageSid") or params.get("SmsSid")
        status = params.get("MessageStatus") or params.get("SmsStatus")
        if not sid or not status:
            requests[WebhookOutcome.BAD_REQUEST].inc()
            raise BadRequest("MessageSid and MessageStatus are required")
        event = InboundWhatsAppStatus(
            # Twilio retries a callback with the same sid and status: one event.
            event_id=provider_event_id(f"{sid}:{status}"),
            message_sid=sid,
            message_status=status,
            error_code=params.get("ErrorCode") or None,
            params=params,
            message_id=_message_id(message_id),
        )
        started = perf_counter()
        try:
            await publish(js, event, timeout=publish_timeout)
        except Exception as exc:
            requests[WebhookOutcome.PUBLISH_FAILED].inc()
            log.warning(
                "gateway.twilio_status.publish_failed",
                message_sid=sid,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            raise ServiceUnavailable(
                "could not queue the callback, retry later", code="PUBLISH_FAILED"
            ) from exc
        finally:
            publish_seconds.observe(perf_counter() - started)
        requests[WebhookOutcome.ACCEPTED].inc()
        log.debug("gateway.twilio_status.accepted", message_sid=sid, status=status)
        return Response(_TWIML, media_type="text/xml")

    return router


def _invalid_signature(requests: Any, failures: Any, reason: str) -> Forbidden:
    requests[WebhookOutcome.INVALID_SIGNATURE].inc()
    failures.inc()
    log.warning("gateway.twilio_status.rejected", reason=reason)
    return Forbidden("invalid Twilio signature", code="INVALID_SIGNATURE")
