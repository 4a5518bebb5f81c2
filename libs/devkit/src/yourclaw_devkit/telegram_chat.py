"""`yourclaw-dev telegram`: speak as a Telegram chat to the local stack.

    yourclaw-dev telegram --chat 1001 "hello"            # answered by sendMessage
    yourclaw-dev telegram --chat 1001 "/start <code>"    # the dashboard's link code
    yourclaw-dev telegram --chat 1001 --file note.ogg    # a voice note (or a photo)
    yourclaw-dev telegram --chat 1001 --bad-secret "hi"  # refused: 401

The Telegram stand-in (TELEGRAM_API_BASE) builds the Update and POSTs it to the
webhook it was pointed at, as Telegram does; the bot's sendMessage calls to the
chat are then printed as they arrive.
"""

from __future__ import annotations

import argparse
import mimetypes
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["add_telegram_command", "telegram_command"]

# After the first reply, wait this long for more parts of a split reply.
_SETTLE_SECONDS = 1.5
_POLL_SECONDS = 0.3
_HELP = "speak as a Telegram chat (through the stand-in) and print the replies"


def add_telegram_command(commands: Any) -> None:
    """The `telegram` subcommand, on `yourclaw-dev`'s subparsers."""
    chat = commands.add_parser("telegram", aliases=["tg"], help=_HELP)
    chat.add_argument("--chat", type=int, default=1001, help="the user's id (1001)")
    chat.add_argument("text", nargs="*", help="message text (a caption with --file)")
    chat.add_argument("--name", default="Dev", help="first name (default: Dev)")
    chat.add_argument("--username", help="@username, without the @")
    chat.add_argument(
        "--file",
        type=Path,
        help="send this file: audio/ogg a voice note, image a photo",
    )
    chat.add_argument(
        "--update-id", type=int, help="deliver this earlier update again (a retry)"
    )
    chat.add_argument(
        "--bad-secret",
        action="store_true",
        help="send a wrong X-Telegram-Bot-Api-Secret-Token",
    )
    chat.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for replies (0: don't)",
    )


def _sent(client: httpx.Client, chat_id: int) -> list[dict[str, Any]]:
    answer = client.get("/_devsim/telegram/sent", params={"chat_id": chat_id})
    answer.raise_for_status()
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages


def _shown(message: dict[str, Any]) -> str:
    """A message the bot sent, as the chat shows it: a voice message by its
    length and caption."""
    voice = message.get("voice")
    if isinstance(voice, dict):
        caption = message.get("caption")
        said = f"[voice message, {voice.get('duration', 0)} s]"
        return f"{said} {caption}" if caption else said
    return str(message.get("text", ""))


def _update_spec(client: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    if args.update_id is not None:
        return {"update_id": args.update_id}
    spec: dict[str, Any] = {"chat_id": args.chat, "first_name": args.name}
    if args.username:
        spec["username"] = args.username
    if args.text:
        spec["text"] = " ".join(args.text)
    if args.file is not None:
        kind = mimetypes.guess_type(args.file.name)[0] or "application/octet-stream"
        uploaded = client.post(
            "/_devsim/telegram/files",
            content=args.file.read_bytes(),
            headers={"content-type": kind},
        )
        uploaded.raise_for_status()
        spec["file_id"] = uploaded.json()["file_id"]
    if args.bad_secret:
        spec["secret_token"] = "wrong-secret"  # noqa: S105 - a forgery on purpose
    return spec


def telegram_command(api_base: str, args: argparse.Namespace) -> int:
    """Run `yourclaw-dev telegram`; the exit code."""
    if not args.text and args.file is None and args.update_id is None:
        print("say something: text, --file or --update-id")
        return 2
    with httpx.Client(base_url=api_base.rstrip("/"), timeout=30.0) as client:
        try:
            seen = {m["message_id"] for m in _sent(client, args.chat)}
            spec = _update_spec(client, args)
            answer = client.post("/_devsim/telegram/updates", json=spec)
        except (httpx.HTTPError, OSError) as exc:
            print(f"cannot use the Telegram stand-in at {api_base}: {exc}")
            return 1
        if answer.status_code != 200:
            print(f"the stand-in refused: {answer.text}")
            return 1
        delivered = answer.json()
        update = delivered["update"]
        print(
            f"update {update['update_id']} from chat {update['message']['chat']['id']} "
            f"-> webhook HTTP {delivered['status']}"
        )
        if delivered["status"] != 200:
            print(f"   {delivered['response']}")
            return 1
        if args.timeout <= 0:
            return 0
        deadline = time.monotonic() + args.timeout
        last_new: float | None = None
        while time.monotonic() < deadline:
            for message in _sent(client, update["message"]["chat"]["id"]):
                if message["message_id"] not in seen:
                    seen.add(message["message_id"])
                    last_new = time.monotonic()
                    print(f"<- {_shown(message)}")
            if last_new is not None and time.monotonic() - last_new >= _SETTLE_SECONDS:
                return 0
            time.sleep(_POLL_SECONDS)
    if last_new is None:
        print(f"no reply within {args.timeout:g}s")
        return 1
    return 0
