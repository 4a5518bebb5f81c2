"""The gateway under real uvicorn on a free loopback port, and a Twilio stand-in
that signs requests with twilio's own `RequestValidator`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio
import uvicorn
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from twilio.request_validator import RequestValidator
from yourclaw_common.embedded import free_port
from yourclaw_common.events import Stream
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
    params = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Ada",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": "15551234567",
        "SmsStatus": "received",
        "Body": "Hello there",
        "To": "whatsapp:+14155238886",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": "AC" + "b" * 32,
        "From": "whatsapp:+15551234567",
        "ApiVersion": "2010-04-01",
    }
    params.update(overrides)
    return params


class _Server(uvicorn.Server):
    # pytest owns SIGINT; the test stops the server by setting should_exit.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
    ) -> httpx.Response:
        """POST a form signed like Twilio would (for `signed_url`, default: ours)."""
        pairs = list(params.items()) if isinstance(params, dict) else list(params)
        path = TWILIO_WHATSAPP_PATH + (f"?{query}" if query else "")
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
        }
        values.update(overrides)
        settings = GatewaySettings(**values)
        app = create_app(settings)
        assert isinstance(app, GatewayApp)
        server = _Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                lifespan="on",
                ws="none",
                log_level="warning",
                access_log=False,
                log_config=None,
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(30):
                while not server.started:
                    if task.done():
                        task.result()
                        raise RuntimeError("uvicorn exited during start-up")
                    await asyncio.sleep(0.01)
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                yield Gateway(
                    url=url,
                    public_url=settings.public_base_url,
                    app=app,
                    settings=settings,
                    client=client,
                    token=settings.twilio_auth_token.get_secret_value() or TOKEN,
                )
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=30)

    return start


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(
    start_gateway: GatewayFactory, js: JetStreamContext
) -> AsyncIterator[Gateway]:
    """The default gateway, on a JetStream whose streams were just reset."""
    async with start_gateway() as gw:
        yield gw


async def inbound_count(js: JetStreamContext) -> int:
    try:
        info = await js.stream_info(Stream.INBOUND)
    except NotFoundError:
        return 0
    return int(info.state.messages)


@pytest.fixture
def stored(js: JetStreamContext) -> Callable[[], Any]:
    """How many messages the INBOUND stream holds now."""
    return lambda: inbound_count(js)


@pytest.fixture(scope="session")
def twilio() -> SimpleNamespace:
    """Test helpers (conftest cannot be imported under --import-mode=importlib)."""
    return SimpleNamespace(
        token=TOKEN,
        FormParams=FormParams,
        sign=twilio_signature,
        inbound_params=inbound_params,
    )
