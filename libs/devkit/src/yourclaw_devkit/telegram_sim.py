"""The Telegram Bot API, as much of it as YourClaw uses, and a chat to speak from.

The Bot API's wire format: methods at `/bot<token>/<method>` (names
case-insensitive; parameters in the query string, a form or a JSON body),
answered `{"ok": true, "result": …}` or `{"ok": false, "error_code",
"description"}` (a 429 adds `"parameters": {"retry_after": N}`); files a bot
may download at `/file/bot<token>/<file_path>`. Implemented: getMe,
setWebhook, deleteWebhook, getWebhookInfo, sendMessage (1-4,096 characters,
parse_mode HTML: `telegram_entities`),
sendVoice (the audio uploaded as multipart/form-data or a known file_id; a
caption of at most 1,024 characters, parse_mode HTML too), sendChatAction, getFile. Unlike
Telegram, setWebhook takes plain-HTTP URLs on any port (the local gateway-api).

Routes that exist only here start with `/_devsim/telegram/`: speak as a chat
(an Update POSTed to the webhook setWebhook named, with its
`X-Telegram-Bot-Api-Secret-Token`), host a voice note or photo the chat sends,
read what the bot sent each chat, and make the next calls of a method fail
(e.g. 429 with `retry_after`).
"""

from __future__ import annotations

import contextlib
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, SecretStr
from yourclaw_common.logging import configure_logging, get_logger

from yourclaw_devkit.devsim import DevsimSettings
from yourclaw_devkit.serving import running_app
from yourclaw_devkit.telegram_entities import Unparsable, parse_html

__all__ = [
    "DEV_TELEGRAM_BOT_TOKEN",
    "DEV_TELEGRAM_BOT_USERNAME",
    "DEV_TELEGRAM_WEBHOOK_SECRET",
    "MAX_CAPTION_CHARS",
    "MAX_MESSAGE_CHARS",
    "SECRET_HEADER",
    "TelegramSim",
    "TelegramSimSettings",
    "TelegramState",
    "cli",
    "create_app",
    "running_telegram_sim",
    "telegram_router",
]

log = get_logger(__name__)

# Shaped like a real token ("<bot id>:<35 characters>"); never a real bot's.
DEV_TELEGRAM_BOT_TOKEN = "7000000001:AAdev-yourclaw-telegram-bot-token-0"  # noqa: S105
DEV_TELEGRAM_BOT_USERNAME = "yourclaw_dev_bot"
DEV_TELEGRAM_WEBHOOK_SECRET = "dev-telegram-webhook-secret"  # noqa: S105
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# sendMessage's limit on `text`.
MAX_MESSAGE_CHARS = 4096
# sendVoice's limit on `caption`.
MAX_CAPTION_CHARS = 1024
# What the Bot API lets a bot download (getFile refuses larger files).
_MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
_SECRET_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)


def _ok(result: Any, description: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return JSONResponse(body)


def _error(
    code: int, description: str, *, retry_after: int | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JSONResponse(body, status_code=code)


@dataclass
class _Chat:
    id: int
    first_name: str
    username: str | None
    # Message ids count per chat, the user's and the bot's alike.
    last_message_id: int = 0

    def as_chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {
            "id": self.id,
            "first_name": self.first_name,
            "type": "private",
        }
        if self.username:
            chat["username"] = self.username
        return chat

    def as_user(self) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": self.id,
            "is_bot": False,
            "first_name": self.first_name,
            "language_code": "en",
        }
        if self.username:
            user["username"] = self.username
        return user


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    content_type: str

    def as_file(self) -> dict[str, Any]:
        """The Bot API's File object."""
        names = ("file_id", "file_unique_id", "file_path")
        return {name: getattr(self, name) for name in names} | {
            "file_size": len(self.data)
        }


@dataclass
class _Fault:
    method: str  # lower case
    chat_id: int | None
    error_code: int
    description: str
    retry_after: int | None
    times: int


@dataclass
class _Webhook:
    url: str = ""
    secret_token: str = ""
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.url,
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        if self.url:
            info["max_connections"] = self.max_connections
        if self.allowed_updates is not None:
            info["allowed_updates"] = list(self.allowed_updates)
        if self.last_error_date is not None:
            info["last_error_date"] = self.last_error_date
            info["last_error_message"] = self.last_error_message
        return info


@dataclass
class TelegramState:
    """Everything the stand-in holds, in memory; safe across threads."""

    token: str
    username: str = DEV_TELEGRAM_BOT_USERNAME
    max_records: int = 10_000
    webhook: _Webhook = field(default_factory=_Webhook)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._chats: dict[int, _Chat] = {}
        self._files: OrderedDict[str, _File] = OrderedDict()
        self._sent: list[dict[str, Any]] = []
        self._actions: list[dict[str, Any]] = []
        self._updates: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._faults: list[_Fault] = []
        self._next_update_id = 500_000_000 + secrets.randbelow(100_000_000)
        self._next_file = 0

    @property
    def bot_id(self) -> int:
        head = self.token.partition(":")[0]
        return int(head) if head.isdigit() else 1

    def me(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "YourClaw",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    # --- chats and what the bot sent them ------------------------------------

    def chat(
        self,
        chat_id: int,
        *,
        first_name: str | None = None,
        username: str | None = None,
    ) -> _Chat:
        """The private chat with user `chat_id`, opened if new."""
        with self._lock:
            found = self._chats.get(chat_id)
            if found is None:
                found = _Chat(chat_id, first_name or f"User {chat_id}", username)
                self._chats[chat_id] = found
            else:
                found.first_name = first_name or found.first_name
                found.username = username or found.username
            return found

    def known_chat(self, chat_id: int) -> _Chat | None:
        with self._lock:
            return self._chats.get(chat_id)

    def _next_message_id(self, chat: _Chat) -> int:
        with self._lock:
            chat.last_message_id += 1
            return chat.last_message_id

    def record_sent(
        self, chat: _Chat, text: str, *, content: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A message the bot sent: `text`, or `content` (e.g. `voice` and its
        `caption`, the text then)."""
        message = {
            "message_id": self._next_message_id(chat),
            "from": self.me(),
            "chat": chat.as_chat(),
            "date": int(time.time()),
            **(content or {"text": text}),
        }
        with self._lock:
            self._sent.append(message)
            del self._sent[: -self.max_records]
        return message

    def record_action(self, chat_id: int, action: str) -> None:
        with self._lock:
            self._actions.append(
                {"chat_id": chat_id, "action": action, "at": time.time()}
            )
            del self._actions[: -self.max_records]

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent (to `chat_id`), oldest first."""
        with self._lock:
            return [
                dict(m)
                for m in self._sent
                if chat_id is None or m["chat"]["id"] == chat_id
            ]

    def actions(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Chat actions the bot sent (to `chat_id`), oldest first."""
        with self._lock:
            return [
                dict(a)
                for a in self._actions
                if chat_id is None or a["chat_id"] == chat_id
            ]

    def clear(self) -> int:
        with self._lock:
            count = len(self._sent)
            self._sent.clear()
            self._actions.clear()
            self._faults.clear()
            return count

    # --- files a chat sent -----------------------------------------------------

    def add_file(self, data: bytes, content_type: str) -> tuple[_File, str]:
        """Host a file a chat sends; the file and the kind of message it makes."""
        kind, folder, suffix = _kind_of(content_type)
        with self._lock:
            self._next_file += 1
            number = self._next_file
            stored = _File(
                file_id=f"{kind[:2].upper()}ACAgI{secrets.token_urlsafe(24)}",
                file_unique_id=f"AgAD{secrets.token_urlsafe(8)}",
                file_path=f"{folder}/file_{number}{suffix}",
                data=data,
                content_type=content_type,
            )
            _keep(self._files, stored.file_id, stored, self.max_records)
        return stored, kind

    def file(self, file_id: str) -> _File | None:
        with self._lock:
            return self._files.get(file_id)

    def file_at(self, file_path: str) -> _File | None:
        with self._lock:
            return next(
                (f for f in self._files.values() if f.file_path == file_path), None
            )

    # --- updates ---------------------------------------------------------------

    def new_update(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._next_update_id += 1
            update = {"update_id": self._next_update_id, "message": message}
            _keep(self._updates, self._next_update_id, update, self.max_records)
            return update

    def update(self, update_id: int) -> dict[str, Any] | None:
        with self._lock:
            return self._updates.get(update_id)

    def message_from(
        self,
        chat: _Chat,
        *,
        text: str | None,
        caption: str | None = None,
        media: tuple[str, _File] | None = None,
    ) -> dict[str, Any]:
        """A Message the user of `chat` sends the bot."""
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat),
            "from": chat.as_user(),
            "chat": chat.as_chat(),
            "date": int(time.time()),
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                message["entities"] = [
                    {"offset": 0, "length": len(command), "type": "bot_command"}
                ]
        if media is not None:
            kind, stored = media
            message[kind] = _media_object(kind, stored)
            if caption:
                message["caption"] = caption
        return message

    # --- injected errors -------------------------------------------------------

    def add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take_fault(self, method: str, chat_id: int | None) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.chat_id in (None, chat_id):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
            return None


def _keep(records: OrderedDict[Any, Any], key: Any, value: Any, most: int) -> None:
    """Store `value`, forgetting the oldest records past `most`."""
    records[key] = value
    while len(records) > most:
        records.popitem(last=False)


def _kind_of(content_type: str) -> tuple[str, str, str]:
    """The message field a file of this type arrives as, its folder and suffix
    in `file_path` (as Telegram names them)."""
    base = content_type.partition(";")[0].strip().lower()
    if base.startswith("image/"):
        return "photo", "photos", ".jpg"
    if base in ("audio/ogg", "audio/opus"):
        return "voice", "voice", ".oga"
    if base.startswith("audio/"):
        suffix = {"audio/mpeg": ".mp3", "audio/mp4": ".m4a", "audio/wav": ".wav"}
        return "audio", "music", suffix.get(base, ".mp3")
    return "document", "documents", ""


def _media_object(kind: str, stored: _File) -> Any:
    common = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": len(stored.data),
    }
    if kind == "photo":
        # Telegram sends several sizes, smallest first; the last is the original.
        thumb = {**common, "file_size": min(len(stored.data), 1200)}
        thumb["file_id"] = stored.file_id + "-s"
        return [
            {**thumb, "width": 90, "height": 90},
            {**common, "width": 1280, "height": 960},
        ]
    if kind == "voice":
        return {**common, "duration": 3, "mime_type": stored.content_type}
    if kind == "audio":
        return {
            **common,
            "duration": 3,
            "mime_type": stored.content_type,
            "file_name": stored.file_path.rpartition("/")[2],
        }
    return {
        **common,
        "mime_type": stored.content_type,
        "file_name": stored.file_path.rpartition("/")[2] or "file",
    }


@dataclass(frozen=True)
class _Upload:
    """A file sent in a multipart request (sendVoice's `voice`)."""

    filename: str
    content_type: str
    data: bytes


async def _params(request: Request) -> dict[str, Any]:
    """A method's parameters, however the Bot API allows them to be sent; a
    file uploaded with them as an `_Upload`."""
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "").partition(";")[0].lower()
    if content_type == "application/json":
        body = await request.body()
        if body:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                params.update(parsed)
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        for name, value in form.items():
            if isinstance(value, str):
                params[name] = value
            else:
                data = await value.read()
                params[name] = _Upload(
                    value.filename or "",
                    value.content_type or "application/octet-stream",
                    data,
                )
        await form.close()
    return params


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _string_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def telegram_router(state: TelegramState) -> APIRouter:
    """The Bot API methods and file downloads for `state`'s bot, and the
    dev-only `/_devsim/telegram/…` routes."""
    router = APIRouter()

    def authorized(token: str) -> bool:
        return secrets.compare_digest(token.encode(), state.token.encode())

    @router.api_route("/bot{token}/{method}", methods=["GET", "POST"])
    async def bot_method(request: Request, token: str, method: str) -> Response:
        if not authorized(token):
            return _error(401, "Unauthorized")
        params = await _params(request)
        name = method.lower()
        handler = _METHODS.get(name)
        if handler is None:
            return _error(404, "Not Found")
        fault = state.take_fault(name, _int(params.get("chat_id")))
        if fault is not None:
            return _error(
                fault.error_code, fault.description, retry_after=fault.retry_after
            )
        return handler(state, params)

    @router.get("/file/bot{token}/{file_path:path}")
    async def download(token: str, file_path: str) -> Response:
        if not authorized(token):
            return _error(401, "Unauthorized")
        stored = state.file_at(file_path)
        if stored is None:
            return _error(404, "Not Found")
        return Response(stored.data, media_type="application/octet-stream")

    @router.post("/_devsim/telegram/updates")
    async def speak(request: Request) -> Response:
        """`{"chat_id", "text"?, "first_name"?, "username"?, "file_id"?,
        "caption"?, "secret_token"?}`: the chat sends a message (`file_id`: one
        uploaded to /_devsim/telegram/files) and the Update goes to the webhook;
        `{"update_id"}` alone delivers an earlier Update again, as Telegram's
        retry does. `secret_token` replaces the webhook's secret (a forgery)."""
        try:
            spec = orjson.loads(await request.body())
            if not isinstance(spec, dict):
                raise TypeError
        except (orjson.JSONDecodeError, TypeError):
            return JSONResponse({"detail": "expected a JSON object"}, status_code=400)
        if not state.webhook.url:
            return JSONResponse(
                {"detail": "no webhook: call setWebhook first"}, status_code=409
            )
        update = _update_for(state, spec)
        if isinstance(update, JSONResponse):
            return update
        secret = spec.get("secret_token")
        status, answer = await _deliver(
            state, update, secret if isinstance(secret, str) else None
        )
        return JSONResponse({"update": update, "status": status, "response": answer})

    @router.post("/_devsim/telegram/files", status_code=201)
    async def upload(request: Request) -> Response:
        """Host a file a chat sends (the body; its type decides whether it
        arrives as a photo, a voice note, an audio file or a document)."""
        content_type = request.headers.get("content-type", "application/octet-stream")
        stored, kind = state.add_file(await request.body(), content_type)
        return JSONResponse({**stored.as_file(), "kind": kind}, status_code=201)

    @router.get("/_devsim/telegram/sent")
    async def sent(chat_id: int | None = None) -> dict[str, Any]:
        return {
            "messages": state.sent(chat_id),
            "actions": state.actions(chat_id),
        }

    @router.delete("/_devsim/telegram/sent")
    async def clear() -> dict[str, int]:
        """Forget what was sent, the chat actions and the injected errors."""
        return {"deleted": state.clear()}

    @router.post("/_devsim/telegram/faults", status_code=201)
    async def add_fault(request: Request) -> Response:
        """`{"method", "error_code", "chat_id"?, "description"?, "retry_after"?,
        "times"?}`: the next calls of `method` (to `chat_id`) fail so."""
        try:
            spec = orjson.loads(await request.body())
            code = int(spec["error_code"])
            retry_after = _int(spec.get("retry_after"))
            if code == 429 and retry_after is None:
                retry_after = 1
            description = str(
                spec.get("description")
                or (
                    f"Too Many Requests: retry after {retry_after}"
                    if code == 429
                    else "Bad Request"
                )
            )
            fault = _Fault(
                method=str(spec["method"]).lower(),
                chat_id=_int(spec.get("chat_id")),
                error_code=code,
                description=description,
                retry_after=retry_after,
                times=int(spec.get("times", 1)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return JSONResponse(
                {"detail": "expected {method, error_code, chat_id?, retry_after?, …}"},
                status_code=400,
            )
        state.add_fault(fault)
        return JSONResponse({"method": fault.method, "times": fault.times}, 201)

    return router


def _update_for(
    state: TelegramState, spec: dict[str, Any]
) -> dict[str, Any] | JSONResponse:
    if "chat_id" not in spec and (update_id := _int(spec.get("update_id"))):
        earlier = state.update(update_id)
        if earlier is None:
            return JSONResponse({"detail": "no such update"}, status_code=404)
        return earlier
    chat_id = _int(spec.get("chat_id"))
    if chat_id is None or chat_id <= 0:
        return JSONResponse(
            {"detail": "chat_id: a user's id (a positive integer)"}, status_code=400
        )
    chat = state.chat(
        chat_id,
        first_name=spec.get("first_name") or None,
        username=spec.get("username") or None,
    )
    media = None
    if file_id := spec.get("file_id"):
        stored = state.file(str(file_id))
        if stored is None:
            return JSONResponse({"detail": "unknown file_id"}, status_code=404)
        media = (_kind_of(stored.content_type)[0], stored)
    text = spec.get("text")
    if media is None and not isinstance(text, str):
        return JSONResponse({"detail": "text or file_id is required"}, status_code=400)
    message = state.message_from(
        chat,
        text=text if media is None else None,
        caption=str(spec.get("caption") or text or "") or None,
        media=media,
    )
    return state.new_update(message)


async def _deliver(
    state: TelegramState, update: dict[str, Any], secret: str | None
) -> tuple[int | None, Any]:
    """POST `update` to the webhook as Telegram does; its status and answer."""
    hook = state.webhook
    headers = {"Content-Type": "application/json"}
    token = hook.secret_token if secret is None else secret
    if token:
        headers[SECRET_HEADER] = token
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(
                hook.url, content=orjson.dumps(update), headers=headers
            )
    except httpx.HTTPError as exc:
        hook.last_error_date = int(time.time())
        hook.last_error_message = f"Connection refused: {type(exc).__name__}"
        log.warning("devsim.telegram.webhook_failed", error=str(exc))
        return None, None
    if not response.is_success:
        hook.last_error_date = int(time.time())
        hook.last_error_message = (
            f"Wrong response from the webhook: {response.status_code}"
        )
    log.info(
        "devsim.telegram.update_delivered",
        update_id=update["update_id"],
        http_status=response.status_code,
    )
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text
    return response.status_code, answer


# --- the methods ---------------------------------------------------------------


def _get_me(state: TelegramState, params: dict[str, Any]) -> JSONResponse:
    return _ok(state.me())


def _set_webhook(state: TelegramState, params: dict[str, Any]) -> JSONResponse:
    url = str(params.get("url") or "")
    secret = str(params.get("secret_token") or "")
    if secret and (len(secret) > 256 or not set(secret) <= _SECRET_CHARS):
        return _error(400, "Bad Request: secret token contains unallowed characters")
    allowed = params.get("allowed_updates")
    allowed_updates = None if allowed is None else _string_list(allowed)
    if allowed is not None and allowed_updates is None:
        return _error(400, "Bad Request: can't parse allowed updates")
    if not url:
        state.webhook = _Webhook()
        return _ok(True, "Webhook was deleted")
    if not url.startswith(("http://", "https://")):
        return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
    state.webhook = _Webhook(
        url=url,
        secret_token=secret,
        allowed_updates=allowed_updates,
        max_connections=_int(params.get("max_connections")) or 40,
    )
    log.info("devsim.telegram.webhook_set", url=url)
    return _ok(True, "Webhook was set")


def _delete_webhook(state: TelegramState, params: dict[str, Any]) -> JSONResponse:
    state.webhook = _Webhook()
    return _ok(True, "Webhook was deleted")


def _get_webhook_info(state: TelegramState, params: dict[str, Any]) -> JSONResponse:
    return _ok(state.webhook.info())


def _target(state: TelegramState, params: dict[str, Any]) -> _Chat | JSONResponse:
    if "chat_id" not in params:
        return _error(400, "Bad Request: chat_id is empty")
    chat_id = _int(params["chat_id"])
    chat = state.known_chat(chat_id) if chat_id is not None else None
    if chat is None:
        return _error(400, "Bad Request: chat not found")
    return chat


def _markup(text: str, mode: Any) -> tuple[str, list[dict[str, Any]]] | JSONResponse:
    """`text` as a chat shows it, and its entities, by `parse_mode` (HTML or
    none); the Bot API's 400 for markup it cannot parse."""
    if not mode:
        return text, []
    if str(mode).lower() != "html":
        return _error(400, f"Bad Request: unsupported parse_mode {mode!r}")
    try:
        return parse_html(text)
    except Unparsable as exc:
        return _error(400, f"Bad Request: can't parse entities: {exc}")


def _send_message(state: TelegramState, params: dict[str, Any]) -> JSONResponse:
    chat = _target(state, params)
    if isinstance(chat, JSONResponse):
        return chat
    text = params.get("text")
    content: dict[str, Any] | None = None
    if isinstance(text, str):
        parsed = _markup(text, params.get("parse_mode"))
        if isinstance(parsed, JSONResponse):
            return parsed
        text, entities = parsed
        content = {"text": text, **({"entities": entities} if entities else {})}
    if not isinstance(text, str) or not text.strip():
        return _error(400, "Bad Request: message text is empty")
    if len(text) > MAX_MESSAGE_CHARS:  # counted after the markup is parsed
        return _error(400, "Bad Request: message is too long")
    message = state.record_sent(chat, text, content=content)
    log.info(
        "devsim.telegram.message_sent",
        chat_id=chat.id,
        message_id=message["message_id"],
    )
    return _ok(message)


def _ogg_seconds(data: bytes) -> int:
    """An Ogg/Opus file's length: its last page's granule position (48 kHz)."""
    last = data.rfind(b"OggS")
    if last < 0 or len(data) < last + 14:
        return 0
    (granule,) = struct.unpack_from("<q", data, last + 6)
    return max(0, round(int(granule) / 48000))


def _send_voice(state: TelegramState, params: dict[str, Any]) -> JSONResponse:
    chat = _target(state, params)
    if isinstance(chat, JSONResponse):
        return chat
    voice = params.get("voice")
    if isinstance(voice, _Upload):
        if not voice.data:
            return _error(400, "Bad Request: file must be non-empty")
        content_type = voice.content_type.partition(";")[0].strip().lower()
        if content_type in ("", "application/octet-stream"):
            content_type = "audio/ogg" if voice.data.startswith(b"OggS") else ""
        stored, _ = state.add_file(voice.data, content_type or "audio/ogg")
    elif isinstance(voice, str) and voice:
        found = state.file(voice)
        if found is None:
            return _error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        stored = found
    else:
        return _error(400, "Bad Request: there is no voice in the request")
    caption = params.get("caption")
    content: dict[str, Any] = {
        "voice": {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": _int(params.get("duration")) or _ogg_seconds(stored.data),
            "mime_type": stored.content_type,
            "file_size": len(stored.data),
        }
    }
    if isinstance(caption, str) and caption:
        parsed = _markup(caption, params.get("parse_mode"))
        if isinstance(parsed, JSONResponse):
            return parsed
        caption, entities = parsed
        if len(caption) > MAX_CAPTION_CHARS:
            return _error(400, "Bad Request: message caption is too long")
        content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
    message = state.record_sent(chat, "", content=content)
    log.info(
        "devsim.telegram.voice_sent",
        chat_id=chat.id,
        message_id=message["message_id"],
        audio_bytes=len(stored.data),
    )
    return _ok(message)


def _send_chat_action(state: TelegramState, params: dict[str, Any]) -> JSONResponse:
    chat = _target(state, params)
    if isinstance(chat, JSONResponse):
        return chat
    action = params.get("action")
    if action not in _CHAT_ACTIONS:
        return _error(400, "Bad Request: wrong parameter action in request")
    state.record_action(chat.id, str(action))
    return _ok(True)


def _get_file(state: TelegramState, params: dict[str, Any]) -> JSONResponse:
    file_id = params.get("file_id")
    if not file_id:
        return _error(400, "Bad Request: file_id not specified")
    stored = state.file(str(file_id))
    if stored is None:
        return _error(400, "Bad Request: invalid file_id")
    if len(stored.data) > _MAX_DOWNLOAD_BYTES:
        return _error(400, "Bad Request: file is too big")
    return _ok(stored.as_file())


_METHODS = {
    "getme": _get_me,
    "setwebhook": _set_webhook,
    "deletewebhook": _delete_webhook,
    "getwebhookinfo": _get_webhook_info,
    "sendmessage": _send_message,
    "sendvoice": _send_voice,
    "sendchataction": _send_chat_action,
    "getfile": _get_file,
}


# --- serving it --------------------------------------------------------------


class TelegramSimSettings(DevsimSettings):
    """Where the stand-in listens and the bot token it accepts (besides what
    every stand-in reads: YOURCLAW_ENV, DEVSIM_MAX_RECORDS, LOG_LEVEL)."""

    telegram_sim_host: str = "127.0.0.1"
    telegram_sim_port: int = Field(default=8901, ge=0, le=65535)
    telegram_bot_token: SecretStr = SecretStr(DEV_TELEGRAM_BOT_TOKEN)
    # The webhook it starts with (as if setWebhook had been called), so a
    # restarted stand-in still delivers: gateway-api's, with the secret it checks.
    telegram_sim_webhook_url: str = ""
    telegram_webhook_secret: SecretStr = SecretStr(DEV_TELEGRAM_WEBHOOK_SECRET)


def create_app(state: TelegramState) -> FastAPI:
    """The stand-in's app, serving `state`'s bot."""
    app = FastAPI(
        title="YourClaw Telegram stand-in",
        docs_url="/_devsim/telegram/docs",
        openapi_url="/_devsim/telegram/openapi.json",
        redoc_url=None,
    )
    app.include_router(telegram_router(state))

    @app.get("/_devsim/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@dataclass(frozen=True)
class TelegramSim:
    """A running stand-in: its base URL (TELEGRAM_API_BASE), its bot's token
    and everything it holds."""

    url: str
    token: str
    state: TelegramState


@contextlib.asynccontextmanager
async def running_telegram_sim(
    token: str = DEV_TELEGRAM_BOT_TOKEN, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[TelegramSim]:
    """Serve the stand-in on the running loop (a free port unless given)."""
    state = TelegramState(token)
    async with running_app(create_app(state), host=host, port=port) as url:
        yield TelegramSim(url, token, state)


def cli() -> None:
    """`python -m yourclaw_devkit.telegram_sim`, as `make up` runs it: serve
    the stand-in on TELEGRAM_SIM_HOST:TELEGRAM_SIM_PORT until interrupted."""
    settings = TelegramSimSettings()
    configure_logging("telegram-sim", settings.log_level)
    if settings.yourclaw_env != "dev":
        raise SystemExit(
            "telegram-sim serves a fake Telegram and refuses to start unless "
            f"YOURCLAW_ENV=dev (YOURCLAW_ENV={settings.yourclaw_env})"
        )
    state = TelegramState(
        settings.telegram_bot_token.get_secret_value(),
        max_records=settings.devsim_max_records,
    )
    if settings.telegram_sim_webhook_url:
        state.webhook = _Webhook(
            url=settings.telegram_sim_webhook_url,
            secret_token=settings.telegram_webhook_secret.get_secret_value(),
            allowed_updates=["message"],
        )
    uvicorn.run(
        create_app(state),
        host=settings.telegram_sim_host,
        port=settings.telegram_sim_port,
        log_config=None,
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=5,
    )


if (
    __name__ == "__main__"
):  # `python -m yourclaw_devkit.telegram_sim`, as `make up` runs it
    cli()
