"""The proxy on loopback, in front of a recording stand-in provider on loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from yourclaw_common.crypto import SecretBox
from yourclaw_common.testing import assistant_with_proxy_credential
from yourclaw_devkit.serving import running_app
from yourclaw_llm_proxy.app import Proxy, build_app
from yourclaw_llm_proxy.settings import LlmProxySettings

OPENAI_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 30,
    "total_tokens": 1230,
    "prompt_tokens_details": {"cached_tokens": 1024},
}
ANTHROPIC_USAGE = {
    "input_tokens": 40,
    "output_tokens": 25,
    "cache_read_input_tokens": 3000,
    "cache_creation_input_tokens": 500,
}
STREAM_PIECES = 5
# Between two events of a streamed answer: long enough that each is its own
# chunk on the wire.
PIECE_DELAY = 0.05


@dataclass
class StandIn:
    """What the stand-in provider received."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    openai_usage: dict[str, Any] = field(default_factory=lambda: OPENAI_USAGE)
    anthropic_usage: dict[str, Any] = field(default_factory=lambda: ANTHROPIC_USAGE)
    pieces: int = STREAM_PIECES

    def clear(self) -> None:
        self.requests.clear()


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _stand_in_app(log: list[dict[str, Any]]) -> Starlette:
    async def remember(request: Request) -> bytes:
        body = await request.body()
        log.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body}
        )
        return body

    async def chat(request: Request) -> Response:
        body = orjson.loads(await remember(request))
        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                for n in range(STREAM_PIECES):
                    yield _sse(
                        {"choices": [{"index": 0, "delta": {"content": f"p{n} "}}]}
                    )
                    await asyncio.sleep(PIECE_DELAY)
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield _sse({"choices": [], "usage": OPENAI_USAGE})
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hello"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": OPENAI_USAGE,
            }
        )

    async def messages(request: Request) -> Response:
        body = orjson.loads(await remember(request))
        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                start = {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [],
                        "usage": {**ANTHROPIC_USAGE, "output_tokens": 1},
                    },
                }
                yield b"event: message_start\n" + _sse(start)
                for n in range(STREAM_PIECES):
                    delta = {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": f"p{n} "},
                    }
                    yield b"event: content_block_delta\n" + _sse(delta)
                    await asyncio.sleep(PIECE_DELAY)
                end = {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]},
                }
                yield b"event: message_delta\n" + _sse(end)
                yield b"event: message_stop\n" + _sse({"type": "message_stop"})

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "hello"}],
                "stop_reason": "end_turn",
                "usage": ANTHROPIC_USAGE,
            }
        )

    async def embeddings(request: Request) -> Response:
        await remember(request)
        return JSONResponse(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            }
        )

    async def transcriptions(request: Request) -> Response:
        await remember(request)
        return JSONResponse(
            {"text": "hi", "usage": {"type": "duration", "seconds": 30}}
        )

    async def speech(request: Request) -> Response:
        await remember(request)
        return Response(b"OggS spoken audio", media_type="audio/ogg")

    async def notify(request: Request) -> Response:
        await remember(request)
        return JSONResponse({"queued": True}, status_code=202)

    return Starlette(
        routes=[
            Route(
                "/api/v1/internal/assistants/{assistant_id}/notify",
                notify,
                methods=["POST"],
            ),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", speech, methods=["POST"]),
        ]
    )


@pytest_asyncio.fixture(loop_scope="session")
async def stand_in() -> AsyncIterator[StandIn]:
    log: list[dict[str, Any]] = []
    async with running_app(_stand_in_app(log)) as url:
        yield StandIn(url, log)


@dataclass
class Running:
    url: str
    proxy: Proxy
    client: httpx.AsyncClient


@pytest_asyncio.fixture(loop_scope="session")
async def start_proxy(clean_db, encryption_key, stand_in):
    """Start the proxy (settings overridable) in front of the stand-in."""
    stand_in.clear()
    started: list[Any] = []

    async def start(**overrides: Any) -> Running:
        values: dict[str, Any] = {
            "encryption_key": encryption_key,
            "dev_llm_base_url": stand_in.url,
            "gateway_api_url": stand_in.url,
            "llm_proxy_credential_cache_seconds": 0,
            **overrides,
        }
        settings = LlmProxySettings(_env_file=None, **values)
        http = httpx.AsyncClient(timeout=10, trust_env=False)
        proxy = Proxy(settings, clean_db, http, box=SecretBox(encryption_key))
        serving = running_app(build_app(proxy))
        url = await serving.__aenter__()
        client = httpx.AsyncClient(base_url=url, timeout=10, trust_env=False)
        started.append((serving, http, client, proxy))
        return Running(url, proxy, client)

    yield start
    for serving, http, client, proxy in started:
        await client.aclose()
        await serving.__aexit__(None, None, None)
        await proxy.drain()
        await http.aclose()


@dataclass
class Assistant:
    user_id: uuid.UUID
    assistant_id: uuid.UUID
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@pytest_asyncio.fixture(loop_scope="session")
async def make_assistant(clean_db, encryption_key):
    """A user, their assistant and its proxy credential; with `openai_key`, the
    user's own OpenAI key (BYOK), stored as gateway-api stores it."""

    async def make(*, openai_key: str | None = None) -> Assistant:
        who = Assistant(*await assistant_with_proxy_credential(clean_db))
        if openai_key is not None:
            await clean_db.execute(
                "INSERT INTO api_keys (user_id, provider, encrypted_key, key_last4) "
                "VALUES ($1, 'OPENAI', $2, $3)",
                who.user_id,
                SecretBox(encryption_key).encrypt(openai_key, owner=str(who.user_id)),
                openai_key[-4:],
            )
        return who

    return make
