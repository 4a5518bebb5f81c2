"""The Twilio Messages resource (2010-04-01), as much of it as YourClaw uses.

Requests and responses follow Twilio's wire format: form-encoded bodies, HTTP
Basic auth with the account sid and auth token, JSON resources with string
counters and RFC 2822 dates, and Twilio's error body
`{"code", "message", "more_info", "status"}`.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import math
import mimetypes
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from yourclaw_common.logging import get_logger

from yourclaw_devkit.signing import twilio_signature

__all__ = [
    "Faults",
    "MediaStore",
    "MessageStore",
    "SentMessage",
    "SmsOptOuts",
    "StatusCallbacks",
    "create_form",
    "inbound_sms_form",
    "inbound_whatsapp_form",
    "post_webhook",
    "render_template",
    "twilio_error",
    "twilio_router",
    "validate_create",
    "whatsapp_address",
]

log = get_logger(__name__)

API_VERSION = "2010-04-01"
_MAX_BODY = 1600
_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 1000
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# GSM 03.38: the basic set, and the extension table (each costs two septets).
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = frozenset("^{}\\[~]|€\f")


def _rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def num_segments(to: str, body: str) -> int:
    """How many SMS segments Twilio would bill; a WhatsApp message is one."""
    if to.startswith("whatsapp:") or not body:
        return 1
    if all(ch in _GSM7 or ch in _GSM7_EXT for ch in body):
        septets = len(body) + sum(ch in _GSM7_EXT for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


@dataclass
class SentMessage:
    """One message sent through the stand-in."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status: str
    date_created: datetime
    date_sent: datetime | None
    date_updated: datetime
    messaging_service_sid: str | None = None
    content_sid: str | None = None
    content_variables: dict[str, Any] | None = None
    media_urls: list[str] = field(default_factory=list)
    status_callback: str | None = None
    # Set by an injected fault: Twilio accepts, then reports `failed` with this code.
    fail_code: int | None = None
    # "outbound-reply": Twilio's own answer to an opt-out, opt-in or help keyword.
    direction: str = "outbound-api"

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def to_twilio(self) -> dict[str, Any]:
        """The Message resource as Twilio's API returns it."""
        base = self.uri.removesuffix(".json")
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": _rfc2822(self.date_created),
            "date_sent": _rfc2822(self.date_sent),
            "date_updated": _rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.fail_code if self.status == "failed" else None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(num_segments(self.to, self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": f"{base}/Media.json",
                "feedback": f"{base}/Feedback.json",
            },
            "to": self.to,
            "uri": self.uri,
        }

    def to_devsim(self) -> dict[str, Any]:
        """The Twilio resource plus what Twilio does not echo back."""
        return {
            **self.to_twilio(),
            "content_sid": self.content_sid,
            "content_variables": self.content_variables,
            "media_urls": list(self.media_urls),
            "status_callback": self.status_callback,
        }


class MessageStore:
    """Sent messages in memory, oldest evicted first; safe across threads."""

    def __init__(self, *, max_records: int = 10_000):
        self._lock = threading.Lock()
        self._messages: OrderedDict[str, SentMessage] = OrderedDict()
        self._max = max_records

    def add(self, message: SentMessage) -> None:
        with self._lock:
            self._messages[message.sid] = replace(message)
            while len(self._messages) > self._max:
                self._messages.popitem(last=False)

    def get(self, sid: str) -> SentMessage | None:
        with self._lock:
            found = self._messages.get(sid)
            return None if found is None else replace(found)

    def newest_first(self) -> list[SentMessage]:
        with self._lock:
            return [replace(m) for m in reversed(self._messages.values())]

    def set_status(self, sid: str, status: str) -> None:
        with self._lock:
            found = self._messages.get(sid)
            if found is not None:
                found.status = status
                found.date_updated = datetime.now(UTC)

    def clear(self) -> int:
        with self._lock:
            count = len(self._messages)
            self._messages.clear()
            return count


class StatusCallbacks:
    """POSTs signed `sent` and `delivered` callbacks, as Twilio does, in the
    background, and `read` ones when the simulated user reads the chat."""

    def __init__(self, *, auth_token: str, store: MessageStore, enabled: bool = True):
        self._auth_token = auth_token
        self._store = store
        self._enabled = enabled
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=5.0)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def schedule(self, message: SentMessage) -> None:
        if not (self._enabled and message.status_callback and self._client):
            return
        task = asyncio.create_task(self._deliver(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: SentMessage) -> None:
        if message.fail_code is not None:
            self._store.set_status(message.sid, "failed")
            await self._post(message, "failed", error_code=message.fail_code)
            return
        await self._post(message, "sent")
        await asyncio.sleep(0.05)
        self._store.set_status(message.sid, "delivered")
        await self._post(message, "delivered")

    def read(self, messages: Iterable[SentMessage]) -> int:
        """The recipient opened the chat: delivered messages become `read`, with
        their callbacks, as WhatsApp's read receipts make Twilio do."""
        count = 0
        for message in messages:
            if message.status != "delivered":
                continue
            self._store.set_status(message.sid, "read")
            count += 1
            if self._enabled and message.status_callback and self._client:
                task = asyncio.create_task(self._post(message, "read"))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return count

    async def _post(
        self, message: SentMessage, status: str, *, error_code: int | None = None
    ) -> None:
        assert self._client is not None
        assert message.status_callback is not None
        url = message.status_callback
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "To": message.to,
            "MessageSid": message.sid,
            "SmsSid": message.sid,
            "MessageStatus": status,
            "SmsStatus": status,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        if message.to.startswith("whatsapp:"):
            params["ChannelPrefix"] = "whatsapp"
            params["ChannelToAddress"] = message.to.removeprefix("whatsapp:")
        headers = {
            "X-Twilio-Signature": twilio_signature(url, params, self._auth_token),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            response = await self._client.post(url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            log.warning(
                "devsim.twilio.status_callback_failed", sid=message.sid, error=str(exc)
            )
            return
        log.info(
            "devsim.twilio.status_callback",
            sid=message.sid,
            message_status=status,
            http_status=response.status_code,
        )


# Twilio's default keyword handling on a long code (STOP filtering): one word,
# any case. An opt-out blocks our number's sends to the sender (error 21610)
# until an opt-in; each keyword gets Twilio's standard reply, and the message
# still reaches our webhook.
SMS_OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
SMS_OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
SMS_HELP_WORDS = frozenset({"HELP", "INFO"})
_SMS_KEYWORD_REPLIES = {
    "out": "You have successfully been unsubscribed. You will not receive any more "
    "messages from this number. Reply START to resubscribe.",
    "in": "You have successfully been re-subscribed to messages from this number. "
    "Reply HELP for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
    "help": "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}


def sms_keyword(body: str) -> str | None:
    """ "out", "in" or "help" when `body` is one of Twilio's SMS keywords."""
    word = body.strip().upper()
    if word in SMS_OPT_OUT_WORDS:
        return "out"
    if word in SMS_OPT_IN_WORDS:
        return "in"
    if word in SMS_HELP_WORDS:
        return "help"
    return None


class SmsOptOuts:
    """Who opted out of which of our SMS numbers, as Twilio keeps it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: set[tuple[str, str]] = set()

    def apply(self, phone: str, our_number: str, keyword: str | None) -> None:
        with self._lock:
            if keyword == "out":
                self._pairs.add((our_number, phone))
            elif keyword == "in":
                self._pairs.discard((our_number, phone))

    def blocks(self, our_number: str, phone: str) -> bool:
        with self._lock:
            return (our_number, phone) in self._pairs

    def clear(self) -> None:
        with self._lock:
            self._pairs.clear()


@dataclass
class _Fault:
    status: int
    code: int
    times: int
    # True: the create succeeds and the failure comes in the status callback.
    asynchronous: bool


class Faults:
    """Errors to answer for the next sends to one recipient (dev and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_to: dict[str, list[_Fault]] = {}

    def add(self, to: str, fault: _Fault) -> None:
        with self._lock:
            self._by_to.setdefault(to, []).append(fault)

    def take(self, to: str) -> _Fault | None:
        with self._lock:
            queue = self._by_to.get(to)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return replace(fault)

    def clear(self) -> None:
        with self._lock:
            self._by_to.clear()


class MediaStore:
    """Files a simulated WhatsApp user attached, served as Twilio serves MediaUrlN."""

    def __init__(self, *, max_records: int = 1000):
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._max = max_records

    def add(self, data: bytes, content_type: str) -> str:
        sid = "ME" + secrets.token_hex(16)
        with self._lock:
            self._files[sid] = (data, content_type)
            while len(self._files) > self._max:
                self._files.popitem(last=False)
        return sid

    def get(self, sid: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self._files.get(sid)


_FAULT_MESSAGES = {
    20429: "Too Many Requests",
    21211: "Invalid 'To' Phone Number",
    63003: "Channel could not find To address",
    21606: "The From phone number is not a valid, SMS-capable inbound phone number "
    "or short code for your account.",
    21610: "Attempt to send to unsubscribed recipient",
    63016: "Failed to send freeform message because you are outside the allowed "
    "window. If you want to send messages outside the allowed window, please use "
    "a Template.",
}


def whatsapp_address(address: str) -> str:
    """`address` as Twilio writes a WhatsApp sender or recipient."""
    return address if address.startswith("whatsapp:") else f"whatsapp:{address}"


def inbound_whatsapp_form(
    *,
    phone: str,
    body: str,
    to: str,
    account_sid: str,
    message_sid: str | None = None,
    profile_name: str = "Dev User",
    media_urls: Sequence[str] = (),
) -> dict[str, str]:
    """The form Twilio POSTs for an incoming WhatsApp message (attachments'
    types guessed from their URLs; set `MediaContentType<n>` to override)."""
    sid = message_sid or ("MM" if media_urls else "SM") + secrets.token_hex(16)
    form = {
        "SmsMessageSid": sid,
        "NumMedia": str(len(media_urls)),
        "ProfileName": profile_name,
        "MessageType": "image" if media_urls else "text",
        "SmsSid": sid,
        "WaId": phone.removeprefix("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": whatsapp_address(to),
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": whatsapp_address(phone),
        "ApiVersion": API_VERSION,
    }
    for i, url in enumerate(media_urls):
        form[f"MediaUrl{i}"] = url
        form[f"MediaContentType{i}"] = mimetypes.guess_type(url)[0] or "image/jpeg"
    return form


def inbound_sms_form(
    *,
    phone: str,
    body: str,
    to: str,
    account_sid: str,
    message_sid: str | None = None,
    media_urls: Sequence[str] = (),
) -> dict[str, str]:
    """The form Twilio POSTs for an incoming SMS (an MMS with `media_urls`):
    plain E.164 numbers, the sender's location fields, no profile name."""
    sid = message_sid or ("MM" if media_urls else "SM") + secrets.token_hex(16)
    form = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": str(len(media_urls)),
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "US",
        "To": to,
        "ToZip": "",
        "NumSegments": str(num_segments(phone, body)),
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": phone,
        "ApiVersion": API_VERSION,
    }
    for i, url in enumerate(media_urls):
        form[f"MediaUrl{i}"] = url
        form[f"MediaContentType{i}"] = mimetypes.guess_type(url)[0] or "image/jpeg"
    return form


async def post_webhook(
    url: str, form: dict[str, str], auth_token: str
) -> httpx.Response | JSONResponse:
    """POST `form` to gateway-api's webhook `url`, signed as Twilio signs it:
    its answer, or a 502 to return when it cannot be reached."""
    headers = {"X-Twilio-Signature": twilio_signature(url, form, auth_token)}
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, data=form, headers=headers)
    except httpx.HTTPError as exc:
        return JSONResponse(
            {"detail": f"gateway-api unreachable at {url}: {exc}"}, status_code=502
        )


def _not_found(request: Request) -> JSONResponse:
    return twilio_error(
        404, 20404, f"The requested resource {request.url.path} was not found"
    )


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    """An error response in Twilio's shape."""
    headers = (
        {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None
    )
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
        headers=headers,
    )


def _basic_auth_ok(request: Request, account_sid: str, auth_token: str) -> bool:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = (
            base64.b64decode(encoded, validate=True).decode().partition(":")
        )
    except (ValueError, UnicodeDecodeError):
        return False
    # Both compared, whatever the first gives, so timing tells nothing.
    user_ok = hmac.compare_digest(user.encode(), account_sid.encode())
    token_ok = hmac.compare_digest(password.encode(), auth_token.encode())
    return bool(sep) and user_ok and token_ok


def _address_ok(address: str) -> bool:
    return bool(_E164.match(address.removeprefix("whatsapp:")))


def create_form(values: Mapping[str, Any], media_urls: Iterable[Any]) -> dict[str, Any]:
    """A create's parameters as `validate_create` reads them; `values` holds
    each parameter's first value."""
    form = {
        name: str(values.get(name) or "").strip()
        for name in (
            "To",
            "From",
            "MessagingServiceSid",
            "ContentSid",
            "ContentVariables",
            "StatusCallback",
        )
    }
    form["Body"] = str(values.get("Body") or "")
    return {**form, "MediaUrl": [str(u) for u in media_urls if str(u).strip()]}


def validate_create(form: dict[str, Any]) -> JSONResponse | None:
    """Twilio's error for a create it would refuse, else None."""
    to, from_ = form["To"], form["From"]
    if not to:
        return twilio_error(400, 21604, "A 'To' phone number is required.")
    if not _address_ok(to):
        return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not from_ and not form["MessagingServiceSid"]:
        return twilio_error(400, 21603, "A 'From' phone number is required.")
    if from_ and not _address_ok(from_):
        return twilio_error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
    if from_ and to.startswith("whatsapp:") != from_.startswith("whatsapp:"):
        return twilio_error(
            400,
            21910,
            "Invalid From and To pair. From and To should be of the same channel",
        )
    if not form["Body"] and not form["ContentSid"] and not form["MediaUrl"]:
        return twilio_error(
            400, 21619, "A text message body or media urls must be specified."
        )
    if len(form["Body"]) > _MAX_BODY:
        return twilio_error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        )
    return None


def _parse_variables(raw: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def render_template(
    content_sid: str, text: str | None, variables: Mapping[str, Any] | None
) -> str:
    """The body Twilio shows for a Content template: its text with `{{1}}`…
    filled in. A sid the stand-in was not given the text of shows as
    `[template HX…] {variables}`."""
    if text is None:
        shown = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS).decode()
        return f"[template {content_sid}] {shown}"
    values = variables or {}
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


@dataclass(frozen=True)
class _DateFilter:
    op: str  # "=", ">" (on or after), "<" (on or before)
    value: date | datetime

    def matches(self, sent: datetime | None) -> bool:
        if sent is None:
            return False
        if isinstance(self.value, datetime) and self.op != "=":
            return _compare(sent, self.value, self.op)
        day = self.value.date() if isinstance(self.value, datetime) else self.value
        return _compare(sent.date(), day, self.op)


def _compare(left: date, right: date, op: str) -> bool:
    # datetime is a date; both sides are always the same kind here.
    if op == ">":
        return left >= right
    if op == "<":
        return left <= right
    return left == right


def _parse_date(raw: str) -> date | datetime:
    if _DATE.match(raw):
        return date.fromisoformat(raw)
    parsed = datetime.fromisoformat(raw)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def twilio_router(
    *,
    account_sid: str,
    auth_token: str,
    store: MessageStore,
    callbacks: StatusCallbacks,
    faults: Faults | None = None,
    media: MediaStore | None = None,
    templates: Mapping[str, str] | None = None,
    sms_number: str = "",
    sms_webhook_url: str = "",
    opt_outs: SmsOptOuts | None = None,
) -> APIRouter:
    """Routes of the Messages resource (and its Media), and the dev-only
    `/_devsim/messages`, `/_devsim/twilio/faults`, `/_devsim/media` and
    `/_devsim/twilio/sms`.

    `templates` are the account's approved Content templates (sid → text with
    `{{1}}` placeholders): a message sent with their ContentSid shows as the
    rendered text, as on Twilio. `sms_number` is the account's SMS number: an
    SMS from any other number is refused (21606), as is one to a number that
    opted out of it (21610); `/_devsim/twilio/sms` texts it as a phone would,
    through Twilio's keyword handling, to `sms_webhook_url`.
    """
    templates = dict(templates or {})
    faults = faults or Faults()
    media = media or MediaStore()
    opt_outs = opt_outs or SmsOptOuts()
    router = APIRouter()
    collection = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"

    def guard(request: Request, path_sid: str) -> JSONResponse | None:
        if not _basic_auth_ok(request, account_sid, auth_token):
            return twilio_error(401, 20003, "Authenticate")
        if path_sid != account_sid:
            return _not_found(request)
        return None

    @router.post(collection, status_code=201)
    async def create_message(request: Request, account_sid: str) -> Response:
        if (denied := guard(request, account_sid)) is not None:
            return denied
        raw = await request.form()
        form = create_form(raw, raw.getlist("MediaUrl"))
        if (invalid := validate_create(form)) is not None:
            return invalid
        if form["From"] and not form["To"].startswith("whatsapp:"):
            if sms_number and form["From"] != sms_number:
                return twilio_error(400, 21606, _FAULT_MESSAGES[21606])
            if opt_outs.blocks(form["From"], form["To"]):
                return twilio_error(400, 21610, _FAULT_MESSAGES[21610])
        fault = faults.take(form["To"])
        if fault is not None and not fault.asynchronous:
            return twilio_error(
                fault.status, fault.code, _FAULT_MESSAGES.get(fault.code, "Error")
            )
        variables: dict[str, Any] | None = None
        if form["ContentVariables"]:
            variables = _parse_variables(form["ContentVariables"])
            if variables is None:
                return twilio_error(
                    400, 21656, "The ContentVariables Parameter is invalid."
                )
        body = form["Body"]
        if form["ContentSid"] and not body:
            body = render_template(
                form["ContentSid"], templates.get(form["ContentSid"]), variables
            )
        now = datetime.now(UTC).replace(microsecond=0)
        prefix = "MM" if form["MediaUrl"] else "SM"
        message = SentMessage(
            sid=prefix + secrets.token_hex(16),
            account_sid=account_sid,
            to=form["To"],
            from_=form["From"],
            body=body,
            status="queued",
            date_created=now,
            date_sent=None,
            date_updated=now,
            messaging_service_sid=form["MessagingServiceSid"] or None,
            content_sid=form["ContentSid"] or None,
            content_variables=variables,
            media_urls=form["MediaUrl"],
            status_callback=form["StatusCallback"] or None,
            fail_code=fault.code if fault is not None else None,
        )
        created = message.to_twilio()
        # The stand-in hands the message over at once; the caller still sees "queued",
        # as from Twilio, and later reads show "sent".
        # An asynchronous fault: accepted now, reported failed (with its code) later.
        handed_over = "failed" if message.fail_code is not None else "sent"
        store.add(replace(message, status=handed_over, date_sent=now))
        log.info("devsim.twilio.message_created", sid=message.sid, to=message.to)
        callbacks.schedule(message)
        return JSONResponse(created, status_code=201)

    @router.get(collection)
    async def list_messages(request: Request, account_sid: str) -> Response:
        if (denied := guard(request, account_sid)) is not None:
            return denied
        query = request.query_params
        to, from_ = query.get("To"), query.get("From")
        filters: list[_DateFilter] = []
        for name, op in (("DateSent", "="), ("DateSent>", ">"), ("DateSent<", "<")):
            if raw := query.get(name):
                try:
                    filters.append(_DateFilter(op, _parse_date(raw)))
                except ValueError:
                    return twilio_error(400, 20001, f"Invalid {name}: {raw}")
        try:
            page_size = int(query.get("PageSize", _DEFAULT_PAGE_SIZE))
            page = int(query.get("Page", 0))
        except ValueError:
            return twilio_error(400, 20001, "Invalid PageSize or Page")
        if not 1 <= page_size <= _MAX_PAGE_SIZE or page < 0:
            return twilio_error(400, 20001, "Invalid PageSize or Page")
        matching = [
            m
            for m in store.newest_first()
            if (to is None or m.to == to)
            and (from_ is None or m.from_ == from_)
            and all(f.matches(m.date_sent) for f in filters)
        ]
        start = page * page_size
        chunk = matching[start : start + page_size]
        kept = [
            (k, v)
            for k, v in query.multi_items()
            if k not in ("Page", "PageSize", "PageToken")
        ]

        def page_uri(number: int) -> str:
            params = urlencode([*kept, ("PageSize", page_size), ("Page", number)])
            return f"{request.url.path}?{params}"

        has_next = start + page_size < len(matching)
        return JSONResponse(
            {
                "messages": [m.to_twilio() for m in chunk],
                "end": start + max(len(chunk) - 1, 0),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if has_next else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": start,
                "uri": page_uri(page),
            }
        )

    @router.get(
        f"/{API_VERSION}/Accounts/{{account_sid}}/Messages/{{message_sid}}.json"
    )
    async def fetch_message(
        request: Request, account_sid: str, message_sid: str
    ) -> Response:
        if (denied := guard(request, account_sid)) is not None:
            return denied
        found = store.get(message_sid)
        if found is None:
            return _not_found(request)
        return JSONResponse(found.to_twilio())

    @router.get("/_devsim/messages")
    async def devsim_messages(to: str | None = None) -> dict[str, Any]:
        return {
            "messages": [
                m.to_devsim() for m in store.newest_first() if to is None or m.to == to
            ]
        }

    @router.post("/_devsim/twilio/faults", status_code=201)
    async def devsim_add_fault(request: Request) -> Response:
        """`{"to", "code", "status"?, "times"?, "asynchronous"?}`: the next sends
        to `to` fail with Twilio error `code` (at once, or in the status callback)."""
        try:
            spec = orjson.loads(await request.body())
            fault = _Fault(
                status=int(spec.get("status", 400)),
                code=int(spec["code"]),
                times=int(spec.get("times", 1)),
                asynchronous=bool(spec.get("asynchronous", False)),
            )
            to = str(spec["to"])
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
        ):
            return JSONResponse(
                {"detail": "expected {to, code, status?, times?, asynchronous?}"},
                status_code=400,
            )
        faults.add(to, fault)
        return JSONResponse({"to": to, "code": fault.code}, status_code=201)

    @router.delete("/_devsim/twilio/faults")
    async def devsim_clear_faults() -> dict[str, bool]:
        faults.clear()
        opt_outs.clear()
        return {"cleared": True}

    @router.post("/_devsim/twilio/sms")
    async def devsim_text(request: Request) -> Response:
        """`{"from": "+1555…", "body": "…", "media_urls"?: [...]}`: an SMS from
        that phone to our SMS number. Twilio's keyword handling first (an
        opt-out or opt-in, and its standard reply), then the signed webhook."""
        if not (sms_number and sms_webhook_url):
            return JSONResponse(
                {"detail": "no SMS number or SMS webhook URL configured"},
                status_code=409,
            )
        try:
            spec = orjson.loads(await request.body())
            phone = str(spec["from"]).strip()
            body = str(spec.get("body") or "")
            media_urls = [str(u) for u in spec.get("media_urls") or ()]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return JSONResponse({"detail": "expected {from, body}"}, status_code=400)
        if not _E164.match(phone):
            return JSONResponse(
                {"detail": "from must be an E.164 number like +15551234567"},
                status_code=400,
            )
        keyword = sms_keyword(body)
        was_blocked = opt_outs.blocks(sms_number, phone)
        opt_outs.apply(phone, sms_number, keyword)
        # Twilio answers a keyword itself; HELP from an opted-out number gets nothing.
        if keyword is not None and not (keyword == "help" and was_blocked):
            now = datetime.now(UTC).replace(microsecond=0)
            store.add(
                SentMessage(
                    sid="SM" + secrets.token_hex(16),
                    account_sid=account_sid,
                    to=phone,
                    from_=sms_number,
                    body=_SMS_KEYWORD_REPLIES[keyword],
                    status="delivered",
                    date_created=now,
                    date_sent=now,
                    date_updated=now,
                    direction="outbound-reply",
                )
            )
        form = inbound_sms_form(
            phone=phone,
            body=body,
            to=sms_number,
            account_sid=account_sid,
            media_urls=media_urls,
        )
        answer = await post_webhook(sms_webhook_url, form, auth_token)
        if isinstance(answer, JSONResponse):
            return answer
        return JSONResponse(
            {
                "sid": form["MessageSid"],
                "keyword": keyword,
                "webhook_status": answer.status_code,
            },
            status_code=200 if answer.status_code == 200 else 502,
        )

    @router.post("/_devsim/media", status_code=201)
    async def devsim_upload_media(request: Request) -> Response:
        """Host a file as Twilio hosts an inbound attachment; returns its MediaUrl."""
        content_type = request.headers.get("content-type", "application/octet-stream")
        media_sid = media.add(await request.body(), content_type)
        message_sid = "MM" + secrets.token_hex(16)
        path = (
            f"/{API_VERSION}/Accounts/{account_sid}/Messages/{message_sid}"
            f"/Media/{media_sid}"
        )
        return JSONResponse(
            {"url": str(request.base_url).rstrip("/") + path, "sid": media_sid},
            status_code=201,
        )

    @router.get(
        f"/{API_VERSION}/Accounts/{{path_sid}}/Messages/{{message_sid}}/Media/{{media_sid}}"
    )
    async def fetch_media(
        request: Request, path_sid: str, message_sid: str, media_sid: str
    ) -> Response:
        if (denied := guard(request, path_sid)) is not None:
            return denied
        found = media.get(media_sid)
        if found is None:
            return _not_found(request)
        data, content_type = found
        return Response(data, media_type=content_type)

    @router.delete("/_devsim/messages")
    async def devsim_clear_messages() -> dict[str, int]:
        return {"deleted": store.clear()}

    return router
