"""What the lifespan opens, and the `Depends` aliases endpoints take it through."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import asyncpg
import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from yourclaw_common.crypto import SecretBox
from yourclaw_common.errors import ServiceUnavailable, TooManyRequests

from yourclaw_gateway_api import service
from yourclaw_gateway_api.auth import (
    DevIssuer,
    KnownUsers,
    TokenUser,
    TokenVerifier,
    auth_required,
)
from yourclaw_gateway_api.metrics import API_RATE_LIMITED
from yourclaw_gateway_api.publishing import Publisher
from yourclaw_gateway_api.ratelimit import ApiLimits, ClientIp, RateLimiter
from yourclaw_gateway_api.settings import GatewaySettings

__all__ = [
    "Box",
    "CurrentUser",
    "Dev",
    "JetStream",
    "Nats",
    "Pool",
    "Publish",
    "SensitiveIp",
    "SensitiveUser",
    "Settings",
    "State",
]


class State(TypedDict):
    """Yielded by the lifespan; the ASGI server copies it into every request scope."""

    pool: asyncpg.Pool
    nc: NATS
    js: JetStreamContext
    settings: GatewaySettings
    http: httpx.AsyncClient
    verifier: TokenVerifier
    known_users: KnownUsers
    # None when ENCRYPTION_KEY is not set: BYOK answers 503 then.
    box: SecretBox | None
    # None unless DEV_LOGIN_ENABLED.
    dev: DevIssuer | None
    limits: ApiLimits
    client_ip: ClientIp
    publish: Publisher


def _from_state(name: str) -> Callable[[Request], Any]:
    """A dependency that hands an endpoint what the lifespan yielded as `name`
    (the alias that uses it gives the type)."""

    def get(request: Request) -> Any:
        return getattr(request.state, name)

    return get


def _box(request: Request) -> SecretBox:
    box: SecretBox | None = request.state.box
    if box is None:
        raise ServiceUnavailable(
            "storing keys is not configured on this server",
            code="ENCRYPTION_NOT_CONFIGURED",
        )
    return box


# Declares the scheme in OpenAPI; we raise our own 401 with a code.
_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A Supabase access token (or, in local runs, a dev sign-in token).",
)


def _spend(limiter: RateLimiter | None, key: str, name: str) -> None:
    if limiter is None:
        return
    wait = limiter.retry_after(key)
    if wait:
        API_RATE_LIMITED.labels(name).inc()
        # The same answer whichever budget ran out: it names no account.
        raise TooManyRequests(
            "too many requests, retry later",
            code="RATE_LIMITED",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def _sensitive_ip(request: Request) -> None:
    limits: ApiLimits = request.state.limits
    client_ip: ClientIp = request.state.client_ip
    _spend(limits.sensitive_ip, client_ip(request.scope), "sensitive_ip")


async def _current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenUser:
    if credentials is None:
        raise auth_required()
    verifier: TokenVerifier = request.state.verifier
    user = await verifier.verify(credentials.credentials)
    request.state.user_id = str(user.id)  # for the request's log line
    limits: ApiLimits = request.state.limits
    _spend(limits.user, str(user.id), "user")
    known: KnownUsers = request.state.known_users
    if user not in known:
        pool: asyncpg.Pool = request.state.pool
        async with pool.acquire() as conn:
            await service.ensure_user(conn, user)
        known.add(user)
    return user


async def _sensitive_user(
    request: Request,
    user: Annotated[TokenUser, Depends(_current_user)],
    _: Annotated[None, Depends(_sensitive_ip)],
) -> TokenUser:
    limits: ApiLimits = request.state.limits
    _spend(limits.sensitive_user, str(user.id), "sensitive_user")
    return user


Pool = Annotated[asyncpg.Pool, Depends(_from_state("pool"))]
Nats = Annotated[NATS, Depends(_from_state("nc"))]
JetStream = Annotated[JetStreamContext, Depends(_from_state("js"))]
Settings = Annotated[GatewaySettings, Depends(_from_state("settings"))]
# Publishes an event, or raises 503 PUBLISH_FAILED.
Publish = Annotated[Publisher, Depends(_from_state("publish"))]
Box = Annotated[SecretBox, Depends(_box)]
# Only on routes mounted when DEV_LOGIN_ENABLED.
Dev = Annotated[DevIssuer, Depends(_from_state("dev"))]
CurrentUser = Annotated[TokenUser, Depends(_current_user)]
# The signed-in user of a sensitive route (phone, API keys, checkout, portal):
# their and their IP's tight budgets are spent too.
SensitiveUser = Annotated[TokenUser, Depends(_sensitive_user)]
# For a sensitive route without a user (dev sign-in): the IP's tight budget.
SensitiveIp = Depends(_sensitive_ip)
