"""The gateway under real uvicorn on a free loopback port, a Twilio stand-in
that signs requests with twilio's own `RequestValidator`, and a Supabase
stand-in: a JWKS endpoint on loopback and the keys to mint its tokens."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import orjson
import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from twilio.request_validator import RequestValidator
from yourclaw_common.embedded import free_port
from yourclaw_common.events import Stream
from yourclaw_common.logging import configure_logging
from yourclaw_devkit.pytest_plugin import stream_size
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.twilio_sim import inbound_whatsapp_form
from yourclaw_gateway_api.app import GatewayApp, create_app
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.twilio import TWILIO_WHATSAPP_PATH

TOKEN = "test-auth-token-0123456789abcdef"


class FormParams:
    """POST params with repeated names, as twilio's validator reads them (`getall`)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.pairs = list(pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self.pairs))

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def getall(self, name: str) -> list[str]:
        return [value for n, value in self.pairs if n == name]


def twilio_signature(
    url: str, params: Iterable[tuple[str, str]] | str, token: str = TOKEN
) -> str:
    validator = RequestValidator(token)
    if isinstance(params, str):
        return validator.compute_signature(url, {})
    return validator.compute_signature(url, FormParams(params))


def inbound_params(sid: str = "SM" + "a" * 32, **overrides: str) -> dict[str, str]:
    """A WhatsApp message from Ada (+15551234567), as Twilio posts it."""
    form = inbound_whatsapp_form(
        phone="+15551234567",
        body="Hello there",
        to="whatsapp:+14155238886",
        account_sid="AC" + "b" * 32,
        message_sid=sid,
        profile_name="Ada",
    )
    return {**form, **overrides}


@dataclass
class Gateway:
    """A running gateway: where it listens and the URL Twilio would sign."""

    url: str
    public_url: str
    app: GatewayApp
    settings: GatewaySettings
    client: httpx.AsyncClient
    token: str = TOKEN
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def webhook_url(self) -> str:
        return self.public_url + TWILIO_WHATSAPP_PATH

    async def post_twilio(
        self,
        params: dict[str, str] | list[tuple[str, str]],
        *,
        signed_url: str | None = None,
        query: str = "",
        token: str | None = None,
        signature: str | None = None,
        tamper: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
        headers: dict[str, str] | None = None,
        webhook: str = TWILIO_WHATSAPP_PATH,
    ) -> httpx.Response:
        """POST a form signed like Twilio would (for `signed_url`, default: ours)
        to the `webhook` path."""
        pairs = list(params.items()) if isinstance(params, dict) else list(params)
        path = webhook + (f"?{query}" if query else "")
        if signature is None:
            url = signed_url or self.public_url + path
            signature = twilio_signature(url, pairs, token or self.token)
        sent = tamper(pairs) if tamper else pairs
        request_headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signature,
            **(headers or {}),
        }
        return await self.client.post(
            path, content=urlencode(sent).encode(), headers=request_headers
        )


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def start_gateway(service_env: dict[str, str]) -> GatewayFactory:
    """Start a gateway with settings overrides; `public_base_url=None` means
    its own loopback address."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Gateway]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        values: dict[str, Any] = {
            "database_url": service_env["DATABASE_URL"],
            "nats_url": service_env["NATS_URL"],
            "twilio_auth_token": TOKEN,
            "public_base_url": url,
            "db_pool_max_size": 4,
            "api_port": port,
            "encryption_key": service_env["ENCRYPTION_KEY"],
            # Tests share one client IP and a few users: /api/v1's limits are
            # off unless a test sets them (test_ratelimit.py).
            "api_rate_limit_ip_per_minute": 0,
            "api_rate_limit_user_per_minute": 0,
            "api_sensitive_rate_limit_ip_per_minute": 0,
            "api_sensitive_rate_limit_user_per_minute": 0,
        }
        values.update(overrides)
        settings = GatewaySettings(**values)
        app = create_app(settings)
        assert isinstance(app, GatewayApp)
        async with (
            running_app(app, port=port),
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            yield Gateway(
                url=url,
                public_url=settings.public_base_url,
                app=app,
                settings=settings,
                client=client,
                token=settings.twilio_auth_token.get_secret_value() or TOKEN,
            )

    return start


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(
    start_gateway: GatewayFactory, js: JetStreamContext
) -> AsyncIterator[Gateway]:
    """The default gateway, on a JetStream whose streams were just reset."""
    async with start_gateway() as gw:
        yield gw


@pytest.fixture
def stored(js: JetStreamContext) -> Callable[[], Any]:
    """How many messages the INBOUND stream holds now."""
    return lambda: stream_size(js, Stream.INBOUND)


@pytest.fixture(scope="session")
def twilio() -> SimpleNamespace:
    """Test helpers (conftest cannot be imported under --import-mode=importlib)."""
    return SimpleNamespace(
        token=TOKEN,
        FormParams=FormParams,
        sign=twilio_signature,
        inbound_params=inbound_params,
        # What every webhook answers (403) to a missing or wrong signature.
        bad_signature={
            "detail": "invalid Twilio signature",
            "code": "INVALID_SIGNATURE",
        },
    )


# --- Supabase: a JWKS endpoint on loopback, and real Supabase-shaped tokens ---

SUPABASE_JWT_SECRET = "legacy-supabase-jwt-secret-0123456789abcdef"
DEV_LOGIN_SECRET = "dev-login-secret-0123456789abcdef-0123456789"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]


def _signing_key(kid: str, alg: str) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    if alg == "ES256":
        private: Any = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, alg, private, {**jwk, "kid": kid, "alg": alg, "use": "sig"})


@dataclass
class Supabase:
    """A Supabase project as the gateway sees it: its URL (serving the JWKS of
    `published` keys) and what its Auth server would sign tokens with."""

    url: str
    keys: dict[str, SigningKey]
    published: list[str]
    jwks_requests: list[float] = field(default_factory=list)
    jwt_secret: str = SUPABASE_JWT_SECRET

    @property
    def issuer(self) -> str:
        return f"{self.url}/auth/v1"

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "authenticated",
            "sub": str(uuid.uuid4()),
            "email": "ada@example.com",
            "phone": "",
            "role": "authenticated",
            "aal": "aal1",
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        *,
        alg: str = "ES256",
        kid: str | None = None,
        key: Any = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token as Supabase Auth signs it (`alg` HS256: the legacy secret)."""
        payload = self.claims(**claims)
        if alg == "HS256":
            return jwt.encode(payload, key or self.jwt_secret, algorithm="HS256")
        signing = self.keys[kid or ("es" if alg == "ES256" else "rs")]
        return jwt.encode(
            payload,
            key or signing.private,
            algorithm=alg,
            headers={"kid": signing.kid, **(headers or {})},
        )

    def user_token(self, user_id: uuid.UUID | str, **claims: Any) -> str:
        return self.token(sub=str(user_id), **claims)


@pytest.fixture(scope="session")
def supabase_keys() -> dict[str, SigningKey]:
    return {
        "es": _signing_key("es-key-1", "ES256"),
        "rs": _signing_key("rs-key-1", "RS256"),
        "es2": _signing_key("es-key-2", "ES256"),
    }


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def supabase_server(
    supabase_keys: dict[str, SigningKey],
) -> AsyncIterator[Supabase]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    project = Supabase(url="", keys=supabase_keys, published=["es", "rs"])

    async def jwks(request: Request) -> JSONResponse:
        project.jwks_requests.append(time.monotonic())
        return JSONResponse(
            {"keys": [project.keys[name].jwk for name in project.published]}
        )

    app = Starlette(routes=[Route("/auth/v1/.well-known/jwks.json", jwks)])
    async with running_app(app) as url:
        project.url = url
        yield project


@pytest.fixture
def supabase(supabase_server: Supabase) -> Supabase:
    """The Supabase stand-in, with its default keys published and no fetches seen."""
    supabase_server.published[:] = ["es", "rs"]
    supabase_server.jwks_requests.clear()
    return supabase_server


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    start_gateway: GatewayFactory,
    supabase: Supabase,
    clean_db: Any,
    js: JetStreamContext,
) -> AsyncIterator[Gateway]:
    """A gateway that trusts the Supabase stand-in (JWKS and legacy secret), on an
    emptied database and freshly reset streams."""
    async with start_gateway(
        supabase_url=supabase.url, supabase_jwt_secret=SUPABASE_JWT_SECRET
    ) as gw:
        gw.extra["supabase"] = supabase
        yield gw


@pytest.fixture(scope="session")
def dev_login() -> dict[str, Any]:
    """Settings that turn dev sign-in on."""
    return {
        "yourclaw_env": "dev",
        "dev_login_enabled": True,
        "dev_login_secret": DEV_LOGIN_SECRET,
    }


@dataclass
class Caller:
    """A signed-in user: their id and the headers their browser would send."""

    id: uuid.UUID
    token: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def sign_in(supabase: Supabase) -> Callable[..., Caller]:
    """A new user, signed in with a Supabase ES256 access token."""

    def make(email: str | None = None, **claims: Any) -> Caller:
        user_id = uuid.uuid4()
        email = email or f"user-{user_id.hex[:8]}@example.com"
        return Caller(
            user_id, supabase.user_token(user_id, email=email, **claims), email
        )

    return make


async def insert_subscription(
    pool: Any, user_id: uuid.UUID, status: str = "ACTIVE"
) -> None:
    """What billing would have written (gateway-api only reads it)."""
    await pool.execute(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
    )
    await pool.execute(
        """
        INSERT INTO subscriptions (user_id, stripe_customer_id, stripe_subscription_id,
                                   status, current_period_end)
        VALUES ($1, $2, $3, $4, now() + interval '30 days')
        """,
        user_id,
        f"cus_{user_id.hex[:12]}",
        f"sub_{user_id.hex[:12]}",
        status,
    )


async def insert_assistant(
    pool: Any, user_id: uuid.UUID, status: str = "READY", **columns: Any
) -> uuid.UUID:
    """What the provisioner would have written (gateway-api only reads it); the
    assistant's id."""
    await pool.execute(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
    )
    names = ["user_id", "status", *columns]
    values = [user_id, status, *columns.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    assistant_id: uuid.UUID = await pool.fetchval(
        f"INSERT INTO assistants ({', '.join(names)}) VALUES ({placeholders}) "
        "RETURNING id",
        *values,
    )
    return assistant_id


async def stream_events(
    js: JetStreamContext, stream: str, subject: str
) -> list[dict[str, Any]]:
    """Every message stored on `subject` (of `stream`), decoded, with its headers."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    found: list[dict[str, Any]] = []
    if not info.state.messages:
        return found
    for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        if msg.subject == subject:
            found.append(
                {**orjson.loads(msg.data), "_headers": dict(msg.headers or {})}
            )
    return found


@pytest.fixture(scope="session")
def db() -> SimpleNamespace:
    """Rows other services own, written as they would write them."""
    return SimpleNamespace(
        subscription=insert_subscription,
        assistant=insert_assistant,
        stream_events=stream_events,
    )


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every log line of the process while the test runs, as the service writes
    them (JSON, with the correlation id of the moment), at DEBUG."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    quieted = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "nats")}
    configure_logging("gateway-api", "DEBUG")
    formatter = root.handlers[0].formatter
    root.handlers[:] = saved_handlers
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lambda: [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)
