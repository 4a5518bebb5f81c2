"""Lean stand-ins for the end-to-end benchmark: Twilio's Messages resource and a
zero-latency OpenAI-compatible assistant, on one port.

They answer on the same wire formats as devsim (`yourclaw_devkit.devsim`), so
messaging cannot tell them apart: Basic auth with the account sid and auth
token, a form-encoded create answered with a 201 Message resource (string
counters, RFC 2822 dates, Twilio's error body on a bad request); Bearer auth
and a streamed chat completion (`data:` events, usage in the last chunk when
`stream_options.include_usage`, then `[DONE]`).

What they leave out is what costs devsim most of its CPU and that no
production counterpart runs on our machines: FastAPI's routing and
validation, the request log, the simulator's message store, fault injection
and chunked streaming. Status callbacks (signed `sent` and `delivered`) are
posted only with BENCH_STATUS_CALLBACKS=1. In production, Twilio and the
assistants are other machines; here they share the two CPUs with the
platform, so the cheaper they are, the closer the measured figure is to the
platform's own.

`KeepAliveClient` and `signed_form_post` are the bare HTTP/1.1 client the
callbacks and the benchmark's webhook sender share.

    BENCH_STANDIN_PORT=8901 TWILIO_ACCOUNT_SID=AC… TWILIO_AUTH_TOKEN=… \
        BENCH_ASSISTANT_TOKEN=… python bench/_standins.py
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
from email.utils import format_datetime
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import httptools
import orjson
import uvloop
from yourclaw_devkit.signing import twilio_signature

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


class Twilio:
    """`POST /2010-04-01/Accounts/{sid}/Messages.json`."""

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
        self._second = 0
        self._date = ""

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._date = format_datetime(datetime.fromtimestamp(second, UTC))
        return self._date

    @staticmethod
    def _error(status: int, code: int, message: str) -> Answer:
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return status, _JSON, orjson.dumps(body)

    def create(self, headers: dict[bytes, bytes], body: bytes) -> Answer:
        if headers.get(b"authorization") != self.auth:
            return self._error(401, 20003, "Authenticate")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        to, from_ = form.get("To", ""), form.get("From", "")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return self._error(400, 21603, "A 'From' phone number is required.")
        text = form.get("Body", "")
        if not text and not form.get("ContentSid"):
            return self._error(
                400, 21619, "A text message body or media urls must be specified."
            )
        if len(text) > 1600:
            return self._error(
                400,
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            )
        sid = "SM" + secrets.token_hex(16)
        now = self._now()
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        message = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": text,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"{uri}/Media.json",
                "feedback": f"{uri}/Feedback.json",
            },
            "to": to,
            "uri": f"{uri}.json",
        }
        if self.callbacks is not None and form.get("StatusCallback"):
            self.callbacks.schedule(form["StatusCallback"], sid, to, from_)
        return 201, _JSON, orjson.dumps(message)


class Assistant:
    """`POST /v1/chat/completions`, answered at once."""

    def __init__(self, token: str):
        self.auth = f"Bearer {token}".encode()

    @staticmethod
    def _error(status: int, message: str, kind: str) -> Answer:
        body = {
            "error": {"message": message, "type": kind, "param": None, "code": None}
        }
        return status, _JSON, orjson.dumps(body)

    def complete(self, headers: dict[bytes, bytes], body: bytes) -> Answer:
        if headers.get(b"authorization") != self.auth:
            return self._error(
                401, "Incorrect API key provided.", "invalid_request_error"
            )
        try:
            request = orjson.loads(body)
            messages = request["messages"]
            asked = next(m for m in reversed(messages) if m.get("role") == "user")
        except (orjson.JSONDecodeError, KeyError, TypeError, StopIteration):
            return self._error(
                400, "'messages' must hold a user message.", "invalid_request_error"
            )
        content = asked.get("content")
        text = content if isinstance(content, str) else "(parts)"
        reply = f"Echo: {text}"
        usage = {
            "prompt_tokens": len(text.split()) or 1,
            "completion_tokens": len(reply.split()),
            "total_tokens": len(text.split()) + len(reply.split()) or 1,
        }
        base = {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "created": int(time.time()),
            "model": str(request.get("model") or "openclaw/default"),
            "system_fingerprint": None,
        }
        if request.get("stream") is not True:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            completion = {
                **base,
                "object": "chat.completion",
                "choices": [choice],
                "usage": usage,
            }
            return 200, _JSON, orjson.dumps(completion)
        options = request.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        extra: dict[str, Any] = {"usage": None} if with_usage else {}
        chunk = {**base, "object": "chat.completion.chunk"}

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
            }
            return (
                b"data: "
                + orjson.dumps({**chunk, "choices": [choice], **extra})
                + b"\n\n"
            )

        events = [
            event({"role": "assistant", "content": "", "refusal": None}),
            event({"content": reply}),
            event({}, "stop"),
        ]
        if with_usage:
            last = {**chunk, "choices": [], "usage": usage}
            events.append(b"data: " + orjson.dumps(last) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return 200, _SSE, b"".join(events)


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

    def __init__(self, twilio: Twilio, assistant: Assistant):
        self.twilio = twilio
        self.assistant = assistant
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


async def serve(port: int, twilio: Twilio, assistant: Assistant) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(twilio, assistant), "127.0.0.1", port, backlog=1024
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
    uvloop.run(serve(int(os.environ["BENCH_STANDIN_PORT"]), twilio, assistant))


if __name__ == "__main__":
    main()
