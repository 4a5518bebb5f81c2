"""The OpenAPI document, made to say what the server really does.

FastAPI documents the routes it serves; this adds what it cannot see:
- the errors every route shares, all as `{"detail","code"}` (FastAPI's own 422
  schema is not what we send), the 401 of authenticated routes, the 400 and 413
  of routes with a body, the 429 of /api/v1 (rate limits), the 500 anything can
  answer, the 503 with Retry-After of routes while PostgreSQL is down;
- the `X-Request-Id` header of every answer that passes through `edge.py`;
- the paths `GatewayApp` answers before FastAPI: the Twilio and Telegram
  webhooks and `/healthz`.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from yourclaw_gateway_api.edge import API_PREFIX, REQUEST_ID_HEADER, WEBHOOKS_PREFIX
from yourclaw_gateway_api.errors import ErrorBody
from yourclaw_gateway_api.webhooks.telegram import SECRET_HEADER, TELEGRAM_WEBHOOK_PATH
from yourclaw_gateway_api.webhooks.twilio import (
    TWILIO_STATUS_PATH,
    TWILIO_WHATSAPP_PATH,
)

__all__ = ["LIVENESS_PATH", "install_openapi"]

LIVENESS_PATH = "/healthz"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_ERROR_CONTENT = {"application/json": {"schema": _ERROR_REF}}
_REQUEST_ID = {
    "description": "The request's id, as in the server's logs.",
    "schema": {"type": "string"},
}
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


def _error(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _ERROR_CONTENT}
    if headers:
        response["headers"] = {name.replace("_", "-"): h for name, h in headers.items()}
    return response


_SHARED = {
    "400": _error("BAD_REQUEST: the body cannot be parsed (not UTF-8 JSON)."),
    "401": _error(
        "AUTH_REQUIRED: no bearer token; INVALID_TOKEN: the token is not one we "
        "accept; TOKEN_EXPIRED: sign in again (refresh the session).",
        WWW_Authenticate={"schema": {"type": "string"}},
    ),
    "413": _error("PAYLOAD_TOO_LARGE: the body is over the limit."),
    "422": _error("VALIDATION_ERROR: the request does not match this document."),
    "429": _error(
        "RATE_LIMITED: too many requests from this address or account.",
        Retry_After=_RETRY_AFTER,
    ),
    "500": _error("INTERNAL_ERROR: a bug on our side; it has been logged."),
}
_AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE: the token cannot be checked right now; retry."
_DATABASE_UNAVAILABLE = (
    "DATABASE_UNAVAILABLE: PostgreSQL is down or restarting; retry after "
    "Retry-After seconds."
)

_TWILIO_FIELDS = (
    "MessageSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "ProfileName",
    "WaId",
)

_TWILIO_SIGNATURE = {
    "name": "X-Twilio-Signature",
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
}


def _lean_webhook(
    *,
    summary: str,
    description: str,
    operation_id: str,
    parameters: list[dict[str, Any]],
    body: dict[str, Any],
    ok: dict[str, Any],
    errors: dict[str, str],
) -> dict[str, Any]:
    """A webhook as its lean handler (`webhooks/lean.py`) answers it: `body` the
    request's content by media type, `ok` the 200, `errors` its own error codes
    by status (those all lean webhooks share are added)."""
    return {
        "post": {
            "tags": ["webhooks"],
            "summary": summary,
            "description": description,
            "operationId": operation_id,
            "parameters": parameters,
            "requestBody": {"required": True, "content": body},
            "responses": {
                "200": ok,
                **{status: _error(text) for status, text in errors.items()},
                "405": _error("METHOD_NOT_ALLOWED: POST only."),
                "413": _SHARED["413"],
                "429": _SHARED["429"],
                "500": _SHARED["500"],
            },
        }
    }


def _twilio_webhook(
    *,
    summary: str,
    description: str,
    operation_id: str,
    fields: dict[str, Any],
    required: list[str],
    bad_request: str,
    queued: str,
    query: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Twilio webhook as the lean handler in `webhooks/twilio.py` answers it."""
    form = {
        "type": "object",
        "properties": fields,
        "required": required,
        "additionalProperties": {"type": "string"},
    }
    return _lean_webhook(
        summary=summary,
        description=description,
        operation_id=operation_id,
        parameters=[_TWILIO_SIGNATURE, *(query or [])],
        body={"application/x-www-form-urlencoded": {"schema": form}},
        ok={
            "description": "Queued: an empty TwiML response.",
            "content": {"text/xml": {"schema": {"type": "string"}}},
        },
        errors={
            "400": f"BAD_REQUEST: {bad_request} INVALID_CHARACTER: a field holds "
            "a NUL character; FIELD_TOO_LONG: a sid over 64 or another field over "
            "4,096 characters.",
            "403": "INVALID_SIGNATURE: missing or wrong X-Twilio-Signature; "
            "TWILIO_NOT_CONFIGURED: no TWILIO_AUTH_TOKEN on this server.",
            "415": "UNSUPPORTED_MEDIA_TYPE: a form body is expected.",
            "503": f"PUBLISH_FAILED: could not queue the {queued}; Twilio retries.",
        },
    )


# The handler reads the header and the body itself; this says what it expects.
_TELEGRAM_WEBHOOK = _lean_webhook(
    summary="Telegram Bot API updates (secret token)",
    description="Checked against the secret_token given to setWebhook; a "
    "message from a private chat is queued on `inbound.telegram` (`/start "
    "<code>` links the chat first), any other update is acknowledged and "
    "dropped.",
    operation_id="telegram_webhook",
    parameters=[
        {
            "name": SECRET_HEADER,
            "in": "header",
            "required": True,
            "description": "The secret_token given to setWebhook.",
            "schema": {"type": "string"},
        }
    ],
    body={
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["update_id"],
                "properties": {"update_id": {"type": "integer"}},
            }
        }
    },
    ok={
        "description": "Received: queued, or an update we ignore.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "received": {"const": True},
                        "queued": {"type": "boolean"},
                    },
                    "required": ["received", "queued"],
                }
            }
        },
    },
    errors={
        "400": "INVALID_UPDATE: the body is not a Telegram Update.",
        "401": f"INVALID_SECRET_TOKEN: {SECRET_HEADER} is missing or wrong.",
        "403": "TELEGRAM_NOT_CONFIGURED: no bot token or webhook secret is set.",
        "503": "PUBLISH_FAILED, LINK_CHECK_FAILED: could not queue the update; "
        "Telegram retries.",
    },
)


_GATEWAY_PATHS: dict[str, Any] = {
    TWILIO_WHATSAPP_PATH: _twilio_webhook(
        summary="Twilio: an inbound WhatsApp message (signed by Twilio)",
        description="Verified with X-Twilio-Signature over PUBLIC_BASE_URL "
        "and every form field, queued on `inbound.whatsapp`, answered with "
        "empty TwiML; the reply goes out later through the Messages API.",
        operation_id="twilio_whatsapp_webhook",
        fields={name: {"type": "string"} for name in _TWILIO_FIELDS},
        required=["MessageSid", "From"],
        bad_request="MessageSid or From is missing; INVALID_NUM_MEDIA: "
        "NumMedia is not a count from 0 to 10.",
        queued="message",
    ),
    TWILIO_STATUS_PATH: _twilio_webhook(
        summary="Twilio: a status callback for a message we sent (signed)",
        description="Checked exactly as the inbound webhook (X-Twilio-Signature "
        "over the URL Twilio called, query included, and every form field), "
        "queued on `inbound.whatsapp_status` and answered with empty TwiML; "
        "messaging applies it, never backwards.",
        operation_id="twilio_status_webhook",
        fields={
            name: {"type": "string"}
            for name in ("MessageSid", "MessageStatus", "ErrorCode")
        },
        required=["MessageSid", "MessageStatus"],
        bad_request="no MessageSid or MessageStatus.",
        queued="callback",
        query=[
            {
                "name": "message_id",
                "in": "query",
                "required": False,
                "description": "Ours: messaging puts the message's id on each "
                "send's StatusCallback URL. Not a UUID: the callback is still "
                "applied, by MessageSid alone.",
                "schema": {"type": "string"},
            }
        ],
    ),
    TELEGRAM_WEBHOOK_PATH: _TELEGRAM_WEBHOOK,
    LIVENESS_PATH: {
        "get": {
            "tags": ["ops"],
            "summary": "Liveness: the process answers (dependencies: /readyz)",
            "operationId": "liveness",
            "responses": {
                "200": {
                    "description": "Alive.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"status": {"const": "ok"}},
                                "required": ["status"],
                            }
                        }
                    },
                }
            },
        }
    },
}


def _shared(status: str) -> dict[str, Any]:
    return copy.deepcopy(_SHARED[status])


def _complete(path: str, operation: dict[str, Any], *, jwks: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "422" in responses:
        own = responses["422"].get("description", "")
        responses["422"] = _shared("422")
        if own and own != "Validation Error":  # FastAPI's own, for every body
            responses["422"]["description"] = (
                f"{own}; {responses['422']['description']}"
            )
    if operation.get("security"):
        responses.setdefault("401", _shared("401"))
        if jwks:
            if "503" in responses:
                described = responses["503"]["description"]
                responses["503"] = _error(f"{described}; {_AUTH_UNAVAILABLE}")
            else:
                responses["503"] = _error(_AUTH_UNAVAILABLE)
    if not path.startswith(WEBHOOKS_PREFIX) and path != LIVENESS_PATH:
        if "503" in responses:
            described = responses["503"]["description"]
            responses["503"] = _error(f"{described}; {_DATABASE_UNAVAILABLE}")
        else:
            responses["503"] = _error(_DATABASE_UNAVAILABLE)
        responses["503"]["headers"] = {
            "Retry-After": {**_RETRY_AFTER, "required": False}
        }
    if "requestBody" in operation:
        responses.setdefault("400", _shared("400"))
    if "requestBody" in operation or path.startswith(WEBHOOKS_PREFIX):
        responses.setdefault("413", _shared("413"))
    if path.startswith(API_PREFIX):
        responses.setdefault("429", _shared("429"))
    responses.setdefault("500", _shared("500"))
    for response in responses.values():
        response.setdefault("headers", {})[REQUEST_ID_HEADER] = _REQUEST_ID


def install_openapi(
    api: FastAPI, *, jwks: bool, llm_allowance_usd: float | None = None
) -> None:
    """Serve the completed document at /openapi.json (`jwks`: tokens may be
    checked against a JWKS, so authenticated routes may answer 503;
    `llm_allowance_usd`: the most a user's own cap may be, a setting)."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema:
            return api.openapi_schema
        document = get_openapi(
            title=api.title,
            version=api.version,
            description=api.description,
            routes=api.routes,
            tags=api.openapi_tags,
        )
        for path, item in document.get("paths", {}).items():
            for operation in item.values():
                _complete(path, operation, jwks=jwks)
        document["paths"] = {
            **document.get("paths", {}),
            **copy.deepcopy(_GATEWAY_PATHS),
        }
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["ErrorBody"] = ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        if llm_allowance_usd is not None and "LlmCapIn" in schemas:
            cap = schemas["LlmCapIn"]["properties"]["cap_usd"]
            for branch in cap.get("anyOf", [cap]):
                if branch.get("type") == "number":
                    branch["maximum"] = llm_allowance_usd
        api.openapi_schema = document
        return document

    api.openapi = openapi  # type: ignore[method-assign]
