"""Lean stand-ins for the end-to-end benchmark: Twilio's Messages resource, a
zero-latency OpenAI-compatible assistant and (with TELEGRAM_BOT_TOKEN) the
Telegram Bot API's sendMessage and sendChatAction, on one port.

They answer with devsim's own pieces (`yourclaw_devkit.twilio_sim`, `llm_sim`
and `telegram_sim`: the create's validation and Twilio's error body, the
Message resource, the reply, its usage and the streamed events, the Bot API's
Message object), so messaging cannot tell them apart: Basic auth with the
account sid and auth token, a 201 Message resource; Bearer auth and a streamed
chat completion (`data:` events, usage in the last chunk when
`stream_options.include_usage`, then `[DONE]`); the token in the path and
`{"ok": true, "result": …}`.

What they leave out is what costs devsim most of its CPU and that no
production counterpart runs on our machines: FastAPI's routing, the request
log, the simulator's message store, fault injection, scripted turns and
chunked streaming (the events go in one Content-Length body); for Telegram,
every Bot API method but those two, parameters other than a JSON body, and
the chats: any chat may be sent to (the benchmark posts its updates to
gateway-api itself, not through here), and the bot's messages are numbered
apart from the users'. Status callbacks (signed `sent` and `delivered`) are
posted only with BENCH_STATUS_CALLBACKS=1. In production, Twilio and the assistants are other machines; here they share
the two CPUs with the platform, so the cheaper they are, the closer the
measured figure is to the platform's own.

`KeepAliveClient`, `signed_form_post` and `telegram_update_post` are the bare
HTTP/1.1 client the callbacks and the benchmark's webhook sender share, and
the webhook requests it sends.

    BENCH_STANDIN_PORT=8901 TWILIO_ACCOUNT_SID=AC… TWILIO_AUTH_TOKEN=… \
        BENCH_ASSISTANT_TOKEN=… [TELEGRAM_BOT_TOKEN=…] python bench/_standins.py
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import httptools
import orjson
import uvloop
from starlette.responses import JSONResponse
from yourclaw_devkit.llm_sim import (
    DEFAULT_MODEL,
    build_reply,
    completion,
    openai_error,
    pick_user_text,
    stream_events,
    usage_of,
)
from yourclaw_devkit.signing import twilio_signature
from yourclaw_devkit.telegram_sim import (
    MAX_MESSAGE_CHARS,
    SECRET_HEADER,
    TelegramState,
)
from yourclaw_devkit.twilio_sim import (
    SentMessage,
    create_form,
    twilio_error,
    validate_create,
)

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
}
_JSON = "application/json; charset=utf-8"
_SSE = "text/event-stream"

Answer = tuple[int, str, bytes]
CALLBACK_CONNECTIONS = 32
# Telegram numbers messages per chat, the user's and the bot's alike. The
# users' messages do not pass through here, so the bot's are numbered from
# here on, clear of the ids the benchmark gives them (its chats are new).
SENT_MESSAGE_IDS_FROM = 1_000_000


def _answer(response: JSONResponse) -> Answer:
    return response.status_code, _JSON, bytes(response.body)


class Twilio:
    """`POST /2010-04-01/Accounts/{sid}/Messages.json`: devsim's validation and
    Message resource, without its store, faults and FastAPI."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        callbacks: StatusCallbacks | None = None,
    ):
        self.account_sid = account_sid
        self.callbacks = callbacks
        self.path = f"/2010-04-01/Accounts/{account_sid}/Messages.json".encode()
        basic = base64.b64encode(f"{account_sid}:{auth_token}".encode())
        self.auth = b"Basic " + basic

    def create(self, headers: dict[bytes, bytes], body: bytes) -> Answer:
        if headers.get(b"authorization") != self.auth:
            return _answer(twilio_error(401, 20003, "Authenticate"))
        raw = parse_qs(body.decode(), keep_blank_values=True)
        form = create_form({k: v[0] for k, v in raw.items()}, raw.get("MediaUrl", []))
        if (refused := validate_create(form)) is not None:
            return _answer(refused)
        now = datetime.now(UTC).replace(microsecond=0)
        message = SentMessage(
            sid="SM" + secrets.token_hex(16),
            account_sid=self.account_sid,
            to=form["To"],
            from_=form["From"],
            body=form["Body"],
            status="queued",
            date_created=now,
            date_sent=None,
            date_updated=now,
        )
        if self.callbacks is not None and form["StatusCallback"]:
            self.callbacks.schedule(
                form["StatusCallback"], message.sid, message.to, message.from_
            )
        return 201, _JSON, orjson.dumps(message.to_twilio())


class Assistant:
    """`POST /v1/chat/completions`, answered at once: devsim's reply, usage and
    events, without its request log, scripted turns and FastAPI."""

    def __init__(self, token: str):
        self.auth = f"Bearer {token}".encode()

    def complete(self, headers: dict[bytes, bytes], body: bytes) -> Answer:
        if headers.get(b"authorization") != self.auth:
            return _answer(
                openai_error(
                    401, "Incorrect API key provided.", kind="invalid_request_error"
                )
            )
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = None
        messages = request.get("messages") if isinstance(request, dict) else None
        if not isinstance(messages, list) or not messages:
            return _answer(
                openai_error(
                    400,
                    "'messages' must be a non-empty array.",
                    kind="invalid_request_error",
                )
            )
        reply = build_reply(pick_user_text(messages))
        answer: dict[str, Any] = {
            "completion_id": "chatcmpl-" + secrets.token_hex(12),
            "created": int(time.time()),
            "model": str(request.get("model") or DEFAULT_MODEL),
            "reply": reply,
        }
        usage = usage_of(messages, reply)
        if request.get("stream") is not True:
            return 200, _JSON, orjson.dumps(completion(**answer, usage=usage))
        options = request.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        events = stream_events(**answer, usage=usage if with_usage else None)
        return 200, _SSE, b"".join(events)


class Telegram:
    """`POST /bot<token>/sendMessage` and `sendChatAction`: devsim's Message
    object and the Bot API's error body, without its chat store, faults and
    FastAPI."""

    def __init__(self, token: str):
        # Keeps each chat's message ids; forgets what was sent at once.
        self.state = TelegramState(token, max_records=1)
        self.prefix = f"/bot{token}/".encode()

    def call(self, path: bytes, body: bytes) -> Answer:
        if not path.startswith(self.prefix):
            return _bot_error(401, "Unauthorized")
        method = path.removeprefix(self.prefix).decode(errors="replace").lower()
        if method not in ("sendmessage", "sendchataction"):
            return _bot_error(404, "Not Found")
        try:
            params = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            params = None
        if not isinstance(params, dict):
            return _bot_error(400, "Bad Request: can't parse JSON object")
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int) or isinstance(chat_id, bool):
            return _bot_error(400, "Bad Request: chat_id is empty")
        chat = self.state.known_chat(chat_id)
        if chat is None:
            chat = self.state.chat(chat_id)
            chat.last_message_id = SENT_MESSAGE_IDS_FROM
        if method == "sendchataction":
            if not isinstance(params.get("action"), str):
                return _bot_error(400, "Bad Request: wrong parameter action in request")
            return 200, _JSON, b'{"ok":true,"result":true}'
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _bot_error(400, "Bad Request: message text is empty")
        if len(text) > MAX_MESSAGE_CHARS:
            return _bot_error(400, "Bad Request: message is too long")
        message = self.state.record_sent(chat, text)
        return 200, _JSON, orjson.dumps({"ok": True, "result": message})


def _bot_error(code: int, description: str) -> Answer:
    body = {"ok": False, "error_code": code, "description": description}
    return code, _JSON, orjson.dumps(body)


class _Exchange(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answered: asyncio.Future[int] | None = None
        self.keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        # Asked here: once parsing returns, the parser has reset and says False.
        self.keep_alive = self.parser.should_keep_alive()
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.answered is not None and not self.answered.done():
            self.answered.set_exception(ConnectionError("the server closed"))


class KeepAliveClient:
    """A bare HTTP/1.1 client: keep-alive connections to one server, each
    carrying one request at a time; requests are prepared bytes."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.idle: list[_Exchange] = []

    async def send(self, request: bytes) -> int:
        """Send `request`; the response's status once it has fully arrived."""
        loop = asyncio.get_running_loop()
        while self.idle and self.idle[-1].transport is None:
            self.idle.pop()
        if self.idle:
            exchange = self.idle.pop()
        else:
            _, exchange = await loop.create_connection(_Exchange, self.host, self.port)
        exchange.answered = loop.create_future()
        assert exchange.transport is not None
        exchange.transport.write(request)
        status = await exchange.answered
        if exchange.keep_alive:
            self.idle.append(exchange)
        elif exchange.transport is not None:
            exchange.transport.close()
        return status


def signed_form_post(url: str, form: dict[str, str], auth_token: str) -> bytes:
    """A whole form POST to `url`, with the X-Twilio-Signature Twilio would send."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    body = urlencode(form).encode()
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "User-Agent: TwilioProxy/1.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Twilio-Signature: {twilio_signature(url, form, auth_token)}\r\n\r\n"
    )
    return head.encode() + body


def telegram_update_post(url: str, update: dict[str, Any], secret: str) -> bytes:
    """A whole Update POST to `url`, with the secret token Telegram would send."""
    parts = urlsplit(url)
    body = orjson.dumps(update)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{SECRET_HEADER}: {secret}\r\n\r\n"
    )
    return head.encode() + body


class StatusCallbacks:
    """Signed `sent`, then `delivered`, to a message's StatusCallback URL, as
    Twilio posts them (with BENCH_STATUS_CALLBACKS=1)."""

    def __init__(self, account_sid: str, auth_token: str):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clients: dict[str, KeepAliveClient] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        # Connections at once (as Twilio's own pool); the rest wait their turn.
        self.slots = asyncio.Semaphore(CALLBACK_CONNECTIONS)

    def schedule(self, url: str, sid: str, to: str, from_: str) -> None:
        task = asyncio.get_running_loop().create_task(self._post(url, sid, to, from_))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, url: str, sid: str, to: str, from_: str) -> None:
        netloc = urlsplit(url).netloc
        client = self.clients.setdefault(netloc, KeepAliveClient(url))
        async with self.slots:
            await self._post_each(client, url, sid, to, from_)

    async def _post_each(
        self, client: KeepAliveClient, url: str, sid: str, to: str, from_: str
    ) -> None:
        for status in ("sent", "delivered"):
            form = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "From": from_,
                "To": to,
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "ChannelPrefix": "whatsapp",
                "ChannelToAddress": to.removeprefix("whatsapp:"),
            }
            try:
                answered = await client.send(
                    signed_form_post(url, form, self.auth_token)
                )
            except OSError as exc:
                answered = 0
                print(f"status callback for {sid} failed: {exc}", file=sys.stderr)
            if answered != 200:
                print(f"status callback for {sid}: HTTP {answered}", file=sys.stderr)
                return


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; one request at a time, answered in order."""

    def __init__(self, twilio: Twilio, assistant: Assistant, telegram: Telegram | None):
        self.twilio = twilio
        self.assistant = assistant
        self.telegram = telegram
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = self.url.partition(b"?")[0]
        body = b"".join(self.body)
        if method == b"POST" and path == self.twilio.path:
            status, kind, payload = self.twilio.create(self.headers, body)
        elif method == b"POST" and path == b"/v1/chat/completions":
            status, kind, payload = self.assistant.complete(self.headers, body)
        elif method == b"POST" and self.telegram and path.startswith(b"/bot"):
            status, kind, payload = self.telegram.call(path, body)
        elif method == b"GET" and path == b"/health":
            status, kind, payload = 200, _JSON, b'{"ok":true}'
        else:
            status, kind, payload = 404, _JSON, b'{"detail":"Not Found"}'
        keep_alive = self.parser.should_keep_alive()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
            + ("" if keep_alive else "Connection: close\r\n")
            + "\r\n"
        )
        assert self.transport is not None
        self.transport.write(head.encode() + payload)
        if not keep_alive:
            self.transport.close()


async def serve(
    port: int, twilio: Twilio, assistant: Assistant, telegram: Telegram | None
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(twilio, assistant, telegram),
        "127.0.0.1",
        port,
        backlog=1024,
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    account_sid, auth_token = (
        os.environ["TWILIO_ACCOUNT_SID"],
        os.environ["TWILIO_AUTH_TOKEN"],
    )
    callbacks = None
    if os.environ.get("BENCH_STATUS_CALLBACKS") == "1":
        callbacks = StatusCallbacks(account_sid, auth_token)
    twilio = Twilio(account_sid, auth_token, callbacks)
    assistant = Assistant(os.environ["BENCH_ASSISTANT_TOKEN"])
    bot_token = os.environ.get("TELEGRAM_BOT_TOKEN")
    telegram = Telegram(bot_token) if bot_token else None
    port = int(os.environ["BENCH_STANDIN_PORT"])
    uvloop.run(serve(port, twilio, assistant, telegram))


if __name__ == "__main__":
    main()
