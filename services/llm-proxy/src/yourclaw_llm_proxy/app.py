"""The tenant-facing API (model calls, automation webhooks) and main().

main(): settings → pg pool + NATS (migrations, topology, /metrics /healthz
/readyz on METRICS_PORT) → one httpx client → the API on
LLM_PROXY_HOST:LLM_PROXY_PORT + the outbox relay → wait for SIGTERM → drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Generator
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from yourclaw_common.crypto import SecretBox
from yourclaw_common.logging import configure_logging, get_logger
from yourclaw_common.outbox import relay_forever
from yourclaw_common.runtime import install_signal_handlers, open_runtime, tune_gc

from yourclaw_llm_proxy import metrics
from yourclaw_llm_proxy.caps import RateLimiter
from yourclaw_llm_proxy.credentials import CredentialStore, Tenant
from yourclaw_llm_proxy.errors import (
    AllowanceExhausted,
    BadRequest,
    Forbidden,
    HTTPError,
    NotFound,
    PayloadTooLarge,
    ProviderNotConfigured,
    TooManyRequests,
    Unauthorized,
    UnknownModel,
    error_payload,
)
from yourclaw_llm_proxy.metering import (
    Call,
    Spend,
    StreamUsage,
    month_of,
    next_month,
    notify_cap_reached,
    record,
    speech_usage,
    spend_of,
    usage_from_body,
)
from yourclaw_llm_proxy.prices import Provider, Usage, price_of
from yourclaw_llm_proxy.settings import LlmProxySettings
from yourclaw_llm_proxy.upstream import ENDPOINTS, Upstreams

__all__ = ["Proxy", "build_app", "main", "run"]

log = get_logger(__name__)

# Notify payloads are a finished automation's summary: small.
_MAX_NOTIFY_BYTES = 256 * 1024
# Upstream response headers a client may need; the rest stay here.
_RESPONSE_HEADERS = ("content-type", "request-id", "x-request-id", "retry-after")
# What a platform service may call with LLM_PROXY_SERVICE_TOKEN (messaging:
# voice notes heard, voice replies spoken), and the header naming the user it
# calls for.
SERVICE_ENDPOINTS = frozenset({"audio/transcriptions", "audio/speech"})
# OpenAI's own limit on the text of one speech call.
MAX_SPEECH_CHARS = 4096
USER_HEADER = "x-yourclaw-user"


def _json_error(
    status: int, detail: str, code: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(error_payload(status, detail, code)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _token(request: Request) -> str:
    """The proxy credential, sent as OpenAI (Bearer) or Anthropic (x-api-key)
    clients send their key."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body over {limit} bytes", code="PAYLOAD_TOO_LARGE"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body over {limit} bytes", code="PAYLOAD_TOO_LARGE"
            )
        chunks.append(chunk)
    return b"".join(chunks)


class Proxy:
    """The request handlers, with what they share."""

    def __init__(
        self,
        settings: LlmProxySettings,
        pool: asyncpg.Pool,
        http: httpx.AsyncClient,
        *,
        box: SecretBox | None,
    ):
        self.settings = settings
        self.pool = pool
        self.http = http
        self.upstreams = Upstreams(settings)
        self.credentials = CredentialStore(
            pool, box, ttl_seconds=settings.llm_proxy_credential_cache_seconds
        )
        self.limits = RateLimiter(
            per_minute=settings.llm_proxy_rate_limit_per_min,
            concurrent=settings.llm_proxy_max_concurrent,
        )
        self.allowance_microusd = round(settings.llm_monthly_allowance_usd * 1e6)
        self._background: set[asyncio.Task[None]] = set()
        # Each user's spend, read at most every LLM_PROXY_CREDENTIAL_CACHE_SECONDS
        # and dropped when this replica meters one of their calls: a call costs
        # no query most of the time, and another replica's spend is late by at
        # most that long.
        self._spend: dict[UUID, tuple[float, date, Spend]] = {}
        self._spend_ttl = settings.llm_proxy_credential_cache_seconds

    # Model calls.

    async def model_call(self, request: Request) -> Response:
        started = time.perf_counter()
        prefix = request.path_params.get("provider")
        endpoint: str = request.path_params["endpoint"]
        if endpoint not in ENDPOINTS or (
            prefix is not None and prefix not in Provider.__members__.values()
        ):
            raise NotFound(f"no such endpoint: {request.url.path}")
        tenant = await self._caller(request, endpoint)
        body = await _read_body(request, self.settings.llm_proxy_max_body_bytes)
        model, payload = await self._model_of(request, endpoint, body)
        price = price_of(model)
        if (
            price is None
            or price.provider not in ENDPOINTS[endpoint]
            or (prefix is not None and price.provider != prefix)
        ):
            raise UnknownModel(
                f"model {model!r} is not served at {request.url.path}",
                model=model,
            )
        provider = price.provider
        stream = bool(payload and payload.get("stream") is True)
        if (
            stream
            and payload is not None
            and provider is not Provider.ANTHROPIC
            and not _includes_usage(payload)
        ):
            # Without it an OpenAI stream carries no usage to meter.
            payload["stream_options"] = {
                **(payload.get("stream_options") or {}),
                "include_usage": True,
            }
            body = orjson.dumps(payload)

        retry = self.limits.retry_after(tenant.assistant_id)
        if retry:
            raise TooManyRequests(
                f"over {self.limits.per_minute} model calls a minute; retry in "
                f"{retry:.0f} s",
                code="RATE_LIMITED",
                headers={"Retry-After": str(max(1, round(retry)))},
            )
        if not self.limits.acquire(tenant.assistant_id):
            raise TooManyRequests(
                f"over {self.limits.concurrent} model calls at once",
                code="TOO_MANY_CONCURRENT",
                headers={"Retry-After": "1"},
            )
        released = False
        try:
            upstream = self.upstreams[provider]
            byok_key = tenant.byok.get(provider)
            key = byok_key or upstream.platform_key
            if not key:
                raise ProviderNotConfigured(
                    f"no key configured for {provider.value}", provider=provider
                )
            await self._check_allowance(tenant, byok=byok_key is not None)
            outgoing = self.http.build_request(
                "POST",
                upstream.url(endpoint),
                headers=upstream.headers(dict(request.headers), key),
                content=body,
            )
            metrics.OVERHEAD_SECONDS.observe(time.perf_counter() - started)
            sent = time.perf_counter()
            try:
                answer = await self.http.send(outgoing, stream=True)
            except httpx.HTTPError as exc:
                metrics.CALLS.labels(provider.value, endpoint, "upstream_error").inc()
                log.warning(
                    "llm_proxy.upstream_failed",
                    provider=provider.value,
                    error=type(exc).__name__,
                )
                return _json_error(
                    502,
                    f"the {provider.value} API did not answer; try again",
                    "UPSTREAM_UNAVAILABLE",
                )
            metrics.UPSTREAM_SECONDS.labels(provider.value).observe(
                time.perf_counter() - sent
            )
            call = Call(
                user_id=tenant.user_id,
                assistant_id=tenant.assistant_id,
                provider=provider,
                model=model,
                endpoint=endpoint,
                byok=byok_key is not None,
                status=answer.status_code,
                stream=stream,
                usage=Usage(),
                price=price,
            )
            headers = {
                h: answer.headers[h] for h in _RESPONSE_HEADERS if h in answer.headers
            }
            is_sse = answer.headers.get("content-type", "").startswith(
                "text/event-stream"
            )
            if answer.status_code == 200 and is_sse:
                released = True  # the stream releases it when it ends
                return StreamingResponse(
                    self._relay(answer, tenant, call),
                    status_code=200,
                    headers={**headers, "cache-control": "no-cache"},
                )
            try:
                content = await answer.aread()
            finally:
                await answer.aclose()
            self._outcome(call)
            if answer.status_code < 300:
                usage = (
                    speech_usage(payload)
                    if endpoint == "audio/speech" and payload is not None
                    else usage_from_body(provider, content)
                )
                if usage is not None:
                    self._meter(replace(call, usage=usage))
            return Response(content, status_code=answer.status_code, headers=headers)
        finally:
            if not released:
                self.limits.release(tenant.assistant_id)

    async def _caller(self, request: Request, endpoint: str) -> Tenant:
        """The tenant a call is for: the assistant whose credential it carries,
        or, with the service credential, the user its `X-YourClaw-User` names
        (the header means nothing with any other credential)."""
        token = _token(request)
        service = self.settings.llm_proxy_service_token.get_secret_value()
        if service and hmac.compare_digest(token.encode(), service.encode()):
            if endpoint not in SERVICE_ENDPOINTS:
                raise Forbidden(
                    f"the service credential may not call /{endpoint}",
                    code="SERVICE_ENDPOINT_FORBIDDEN",
                )
            try:
                user_id = UUID(request.headers.get(USER_HEADER, ""))
            except ValueError as exc:
                raise BadRequest(
                    f"a service call names its user in {USER_HEADER} (a uuid)",
                    code="MISSING_USER",
                ) from exc
            tenant = await self.credentials.on_behalf_of(user_id)
            if tenant is None:
                raise Forbidden(
                    "that user has no assistant to meter the call to",
                    code="USER_WITHOUT_ASSISTANT",
                )
            return tenant
        tenant = await self.credentials.tenant(token)
        if tenant is None:
            raise Unauthorized(
                "missing, wrong or revoked proxy credential", code="INVALID_CREDENTIAL"
            )
        return tenant

    async def _relay(
        self, answer: httpx.Response, tenant: Tenant, call: Call
    ) -> AsyncIterator[bytes]:
        """The provider's events, each passed on as it arrives."""
        scanner = StreamUsage(call.provider)
        metrics.IN_FLIGHT.inc()
        try:
            async for chunk in answer.aiter_raw():
                scanner.feed(chunk)
                yield chunk
        finally:
            metrics.IN_FLIGHT.dec()
            await answer.aclose()
            self.limits.release(tenant.assistant_id)
            self._outcome(call)
            # Metered even when the tenant hung up: the provider charged it.
            if scanner.usage is not None:
                self._meter(replace(call, usage=scanner.usage))

    async def _model_of(
        self, request: Request, endpoint: str, body: bytes
    ) -> tuple[str, dict[str, Any] | None]:
        """The requested model, and the JSON body (None for a form upload)."""
        if endpoint == "audio/transcriptions":

            async def replay() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            try:
                # The body was read already (under the size limit): parse that.
                form = await Request(request.scope, replay).form()
            except Exception as exc:
                raise BadRequest(
                    "expected a multipart form with `file` and `model`",
                    code="INVALID_FORM",
                ) from exc
            model = form.get("model")
            await form.close()
            if not isinstance(model, str) or not model:
                raise BadRequest("the form has no `model`", code="MISSING_MODEL")
            return model, None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("the body is not valid JSON", code="INVALID_JSON") from exc
        if not isinstance(payload, dict):
            raise BadRequest("the body must be a JSON object", code="INVALID_JSON")
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("the body has no `model`", code="MISSING_MODEL")
        if endpoint == "audio/speech":
            _check_speech(payload)
        return model, payload

    async def _spend_of(self, user_id: UUID, now: datetime) -> Spend:
        clock, month = time.monotonic(), month_of(now)
        cached = self._spend.get(user_id)
        # A new month starts from nothing, however fresh the cached figure.
        if cached is not None and cached[0] > clock and cached[1] == month:
            return cached[2]
        async with self.pool.acquire() as conn:
            spend = await spend_of(conn, user_id, at=now)
        if self._spend_ttl > 0:
            if len(self._spend) >= 100_000:
                self._spend.clear()
            self._spend[user_id] = (clock + self._spend_ttl, month, spend)
        return spend

    async def _check_allowance(self, tenant: Tenant, *, byok: bool) -> None:
        now = datetime.now(UTC)
        spend = await self._spend_of(tenant.user_id, now)
        reached = spend.reached(byok=byok, allowance=self.allowance_microusd)
        if reached is None:
            return
        month = month_of(now)
        async with self.pool.acquire() as conn, conn.transaction():
            await notify_cap_reached(
                conn,
                tenant.user_id,
                month,
                reached,
                assistant_id=tenant.assistant_id,
                service=self.settings.service_name,
            )
        resets = next_month(month)
        which = "cap you set" if reached[1] == spend.cap else "allowance"
        raise AllowanceExhausted(
            f"this month's {which} of ${reached[1] / 1e6:.2f} is used up; "
            f"it renews on {resets.date().isoformat()}",
            resets_at=resets.isoformat(),
        )

    def _outcome(self, call: Call) -> None:
        outcome = (
            "ok"
            if call.status < 400
            else "upstream_4xx"
            if call.status < 500
            else "upstream_5xx"
        )
        metrics.CALLS.labels(call.provider.value, call.endpoint, outcome).inc()

    def _meter(self, call: Call) -> None:
        """Record the call after the answer has gone, off the tenant's path."""
        self._spawn(self._record(call))

    async def _record(self, call: Call) -> None:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await record(
                    conn,
                    call,
                    allowance_microusd=self.allowance_microusd,
                    service=self.settings.service_name,
                )
        except Exception:
            log.exception(
                "llm_proxy.meter_failed",
                user_id=str(call.user_id),
                model=call.model,
            )
        finally:
            # Read again on the user's next call, committed spend included.
            self._spend.pop(call.user_id, None)

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for the metering still in flight."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # Automation webhooks.

    async def notify(self, request: Request) -> Response:
        """Pass an automation's finished run on to gateway-api: tenants reach no
        platform service but this proxy. gateway-api checks the bearer token."""
        try:
            assistant_id = UUID(request.path_params["assistant_id"])
        except ValueError as exc:
            raise NotFound("no such assistant") from exc
        body = await _read_body(request, _MAX_NOTIFY_BYTES)
        headers = {
            h: request.headers[h]
            for h in ("authorization", "content-type")
            if h in request.headers
        }
        try:
            answer = await self.http.post(
                f"{self.settings.gateway_api_url}/api/v1/internal/assistants/"
                f"{assistant_id}/notify",
                content=body,
                headers=headers,
                timeout=30,
            )
        except httpx.HTTPError as exc:
            log.warning("llm_proxy.notify_failed", error=type(exc).__name__)
            return _json_error(
                502, "could not deliver the notification; retry", "UPSTREAM_UNAVAILABLE"
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            headers={
                h: answer.headers[h]
                for h in ("content-type", "retry-after")
                if h in answer.headers
            },
        )


def _check_speech(payload: dict[str, Any]) -> None:
    text = payload.get("input")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("the body has no `input` text", code="MISSING_INPUT")
    if len(text) > MAX_SPEECH_CHARS:
        raise BadRequest(
            f"`input` is over {MAX_SPEECH_CHARS} characters", code="INPUT_TOO_LONG"
        )


def _includes_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    metrics.REFUSALS.labels(exc.code).inc()
    return _json_error(exc.status_code, exc.detail, exc.code, exc.headers)


async def _on_starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(
        exc.status_code, "BAD_REQUEST"
    )
    return _json_error(exc.status_code, str(exc.detail), code)


async def _on_disconnect(request: Request, exc: Exception) -> Response:
    return Response(status_code=499)


def build_app(proxy: Proxy) -> Starlette:
    """Only the tenant-facing routes: no /metrics or health probes here."""
    return Starlette(
        routes=[
            Route("/v1/{endpoint:path}", proxy.model_call, methods=["POST"]),
            Route("/{provider}/v1/{endpoint:path}", proxy.model_call, methods=["POST"]),
            Route("/notify/{assistant_id}", proxy.notify, methods=["POST"]),
        ],
        exception_handlers={
            HTTPError: _on_http_error,
            HTTPException: _on_starlette_error,
            ClientDisconnect: _on_disconnect,
        },
    )


def _http_client(settings: LlmProxySettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.llm_proxy_read_timeout_seconds,
            connect=settings.llm_proxy_connect_timeout_seconds,
        ),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        # Provider keys must not follow a redirect elsewhere.
        follow_redirects=False,
        trust_env=False,
    )


class _Server(uvicorn.Server):
    # run()'s caller owns SIGINT/SIGTERM, not uvicorn.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run(settings: LlmProxySettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set (tests call this directly)."""
    key = settings.encryption_key.get_secret_value()
    box = SecretBox(key) if key else None
    async with (
        open_runtime(settings, stop=stop, consumers=[]) as runtime,
        _http_client(settings) as http,
    ):
        proxy = Proxy(settings, runtime.pool, http, box=box)
        config = uvicorn.Config(
            build_app(proxy),
            host=settings.llm_proxy_host,
            port=settings.llm_proxy_port,
            loop="none",
            http="httptools",
            ws="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=30,
        )
        server = _Server(config)
        log.info(
            "llm_proxy.started",
            host=settings.llm_proxy_host,
            port=settings.llm_proxy_port,
            dev_upstream=bool(settings.dev_llm_base_url),
        )
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(server.serve())
            tg.create_task(
                relay_forever(
                    runtime.pool,
                    runtime.js,
                    service=settings.service_name,
                    stop=stop,
                )
            )
            stopping = tg.create_task(stop.wait())
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            stop.set()
        await proxy.drain()


async def main() -> None:
    settings = LlmProxySettings()
    configure_logging(settings.service_name, settings.log_level)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    tune_gc()
    await run(settings, stop)
