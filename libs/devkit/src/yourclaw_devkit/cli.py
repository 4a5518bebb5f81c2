"""`yourclaw-dev`: talk to the local stack like WhatsApp and Twilio would.

    yourclaw-dev send --from +15551234567 "hello"      # a signed inbound webhook
                                                        # (says at once when rate-limited)
    yourclaw-dev send --sms --from +15551234567 "hi"   # the same as an SMS
    yourclaw-dev register --phone +15551234567          # a ready user, no provisioning
    yourclaw-dev messages --phone +15551234567          # what the Twilio stand-in sent
    yourclaw-dev pay --email you@example.com            # complete the dev checkout
    yourclaw-dev telegram --chat 1001 "hello"           # as a Telegram chat

Settings come from the environment under the names the services use.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict
from yourclaw_common.crypto import SecretBox
from yourclaw_common.settings import CommonSettings

from yourclaw_devkit import checkout
from yourclaw_devkit.defaults import (
    DEV_API_URL,
    DEV_GATEWAY_TOKEN,
    DEV_SMS_NUMBER,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_WHATSAPP_NUMBER,
    DEVSIM_URL,
)
from yourclaw_devkit.signing import twilio_signature
from yourclaw_devkit.telegram_chat import add_telegram_command, telegram_command
from yourclaw_devkit.twilio_sim import (
    inbound_sms_form,
    inbound_whatsapp_form,
    whatsapp_address,
)

__all__ = [
    "SMS_WEBHOOK_PATH",
    "WHATSAPP_WEBHOOK_PATH",
    "DevCliSettings",
    "PhoneTakenError",
    "RegisteredUser",
    "cli",
    "dev_user_id",
    "dev_whatsapp_message",
    "inbound_whatsapp_form",
    "main",
    "normalize_phone",
    "register_dev_user",
    "sign_webhook",
]

WHATSAPP_WEBHOOK_PATH = "/api/v1/webhooks/twilio/whatsapp"
SMS_WEBHOOK_PATH = "/api/v1/webhooks/twilio/sms"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Fixed, so a phone number always maps to the same dev user id.
_DEV_USER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "dev-users.yourclaw.local")
# After the first reply, wait this long for more parts of a split reply.
_SETTLE_SECONDS = 1.5
_POLL_SECONDS = 0.3
# The database is optional (see `_Outcomes`): don't hang on an unreachable one.
_DB_CONNECT_SECONDS = 2.0


class DevCliSettings(CommonSettings):
    """What `yourclaw-dev` needs, under the services' variable names.

    Besides the environment and `.env`, it reads `.data/dev.env`, which `make up`
    writes with the running stack's addresses and dev secrets (the environment
    still wins).
    """

    model_config = SettingsConfigDict(
        env_file=(".env", ".data/dev.env"), env_file_encoding="utf-8", extra="ignore"
    )

    twilio_account_sid: str = DEV_TWILIO_ACCOUNT_SID
    twilio_auth_token: SecretStr = SecretStr(DEV_TWILIO_AUTH_TOKEN)
    twilio_whatsapp_number: str = DEV_WHATSAPP_NUMBER
    # `send --sms` texts this number (gateway-api's SMS webhook).
    twilio_sms_number: str = DEV_SMS_NUMBER
    # The URL Twilio is told to call; signatures are computed over it.
    public_base_url: str = DEV_API_URL
    # Where gateway-api actually listens (differs behind a tunnel or proxy).
    api_url: str = DEV_API_URL
    twilio_api_base: str = DEVSIM_URL
    # The assistant endpoint `register` gives new users (the LLM stand-in).
    dev_assistant_url: str = DEVSIM_URL
    # The Telegram stand-in `telegram` speaks through.
    telegram_api_base: str = "http://127.0.0.1:8901"


def normalize_phone(raw: str) -> str:
    """E.164 (`+15551234567`) from `+1 555-123-4567` or `whatsapp:+15551234567`."""
    phone = re.sub(r"[\s\-().]", "", raw.removeprefix("whatsapp:"))
    if not _E164.match(phone):
        raise ValueError(
            f"not an E.164 phone number: {raw!r} (expected like +15551234567)"
        )
    return phone


def dev_user_id(phone_e164: str) -> uuid.UUID:
    """The stable id `register` gives the user of a phone number."""
    return uuid.uuid5(_DEV_USER_NAMESPACE, phone_e164)


def sign_webhook(
    public_base_url: str,
    form: dict[str, str],
    auth_token: str,
    *,
    path: str = WHATSAPP_WEBHOOK_PATH,
) -> tuple[str, str]:
    """The URL Twilio would call and the `X-Twilio-Signature` it would send."""
    url = public_base_url.rstrip("/") + path
    return url, twilio_signature(url, form, auth_token)


def dev_whatsapp_message(
    public_base_url: str, phone: str, body: str, *, message_sid: str | None = None
) -> tuple[dict[str, str], str]:
    """A message from `phone` to the dev sender as Twilio posts it (dev account
    and token): the form and its `X-Twilio-Signature` for `public_base_url`."""
    form = inbound_whatsapp_form(
        phone=phone,
        body=body,
        to=DEV_WHATSAPP_NUMBER,
        account_sid=DEV_TWILIO_ACCOUNT_SID,
        message_sid=message_sid,
    )
    _, signature = sign_webhook(public_base_url, form, DEV_TWILIO_AUTH_TOKEN)
    return form, signature


# --- Twilio stand-in -------------------------------------------------------


def _list_sent(
    client: httpx.Client, settings: DevCliSettings, *, to: str | None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Messages the Twilio stand-in recorded, oldest first."""
    params: dict[str, str | int] = {"PageSize": limit}
    if to:
        params["To"] = to
    response = client.get(
        f"{settings.twilio_api_base.rstrip('/')}/2010-04-01/Accounts/"
        f"{settings.twilio_account_sid}/Messages.json",
        params=params,
        auth=(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
        ),
    )
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()["messages"]
    return list(reversed(messages))


def _cmd_send(settings: DevCliSettings, args: argparse.Namespace) -> int:
    phone = normalize_phone(args.from_)
    sender = whatsapp_address(phone)
    form = inbound_whatsapp_form(
        phone=phone,
        body=" ".join(args.text),
        to=settings.twilio_whatsapp_number,
        account_sid=settings.twilio_account_sid,
        message_sid=args.sid,
        profile_name=args.name,
        media_urls=args.media or (),
    )
    path = WHATSAPP_WEBHOOK_PATH
    if args.sms:
        # The same message, as an SMS to our SMS number.
        sender, path = phone, SMS_WEBHOOK_PATH
        form = inbound_sms_form(
            phone=phone,
            body=form["Body"],
            to=settings.twilio_sms_number,
            account_sid=form["AccountSid"],
            message_sid=form["MessageSid"],
            media_urls=args.media or (),
        )
    token = settings.twilio_auth_token.get_secret_value()
    signed_url, signature = sign_webhook(
        settings.public_base_url, form, token, path=path
    )
    if args.bad_signature:
        signature = twilio_signature(signed_url, form, token + "-wrong")
    post_url = settings.api_url.rstrip("/") + path
    with httpx.Client(timeout=30.0) as client:
        try:
            baseline = {m["sid"] for m in _list_sent(client, settings, to=sender)}
        except httpx.HTTPError as exc:
            print(
                f"cannot read the Twilio stand-in at {settings.twilio_api_base}: {exc}"
            )
            return 1
        accepted = 0
        for attempt in range(1, args.times + 1):
            try:
                response = client.post(
                    post_url,
                    content=urlencode(form),
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Twilio-Signature": signature,
                        "User-Agent": "TwilioProxy/1.1",
                        "I-Twilio-Idempotency-Token": form["MessageSid"],
                    },
                )
            except httpx.HTTPError as exc:
                print(f"POST {post_url} failed: {exc}")
                continue
            accepted += response.is_success
            print(
                f"[{attempt}/{args.times}] POST {post_url} {form['MessageSid']} "
                f"-> HTTP {response.status_code}"
            )
        if not accepted:
            print("gateway-api accepted no webhook: not waiting for a reply")
            return 1
        if args.timeout <= 0:
            return 0
        with _Outcomes(settings.database_url) as outcomes:
            replies, limited = _wait_for_replies(
                client,
                settings,
                sender,
                baseline,
                args.timeout,
                lambda: outcomes.limit_notice(form["MessageSid"]),
            )
    if limited is not None:
        print(
            f"rate-limited: {phone} is over a message limit, so this message "
            "reaches no assistant and gets no reply; the one notice per limit "
            "went out with the first message over it"
            + (f":\n   {limited}" if limited else ".")
        )
        return 1
    if not replies:
        print(f"no reply to {phone} within {args.timeout:g}s")
        return 1
    return 0


class _Outcomes:
    """What messaging recorded for an inbound message, read from PostgreSQL.

    Optional: when the database is out of reach (another machine's stack), the
    CLI only watches the Twilio stand-in.
    """

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._runner = asyncio.Runner()
        self._conn: asyncpg.Connection | None = None

    def __enter__(self) -> _Outcomes:
        try:
            self._conn = self._runner.run(
                asyncpg.connect(self._database_url, timeout=_DB_CONNECT_SECONDS)
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._conn = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            self._runner.run(self._conn.close())
        self._runner.close()

    def limit_notice(self, message_sid: str) -> str | None:
        """The notice an earlier message got, when messaging stored this one's
        reply as skipped because its sender is over a limit; else None."""
        if self._conn is None:
            return None
        try:
            row = self._runner.run(self._conn.fetchrow(_LIMITED_SQL, message_sid))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None
        if row is None:
            return None
        notice: str | None = row["notice"]
        return notice or ""


# Over a limit, messaging stores the reply as one SKIPPED notice row (only the
# first message over a limit carries the notice text and is sent).
_LIMITED_SQL = """
SELECT (SELECT n.body FROM messages n
        WHERE n.user_id = m.user_id AND n.kind = 'notice' AND n.status <> 'SKIPPED'
        ORDER BY n.created_at DESC LIMIT 1) AS notice
FROM messages m
WHERE m.in_reply_to = $1 AND m.part = 0 AND m.kind = 'notice'
  AND m.status = 'SKIPPED'
"""


def _wait_for_replies(
    client: httpx.Client,
    settings: DevCliSettings,
    sender: str,
    baseline: set[str],
    timeout: float,
    limited: Callable[[], str | None],
) -> tuple[list[dict[str, Any]], str | None]:
    """The replies Twilio was asked to send, printed as they come, or the limit
    notice (see `_Outcomes`) as soon as messaging skipped the reply."""
    seen: list[dict[str, Any]] = []
    known = set(baseline)
    deadline = time.monotonic() + timeout
    last_new: float | None = None
    while time.monotonic() < deadline:
        try:
            current = _list_sent(client, settings, to=sender)
        except httpx.HTTPError as exc:
            print(f"reading the Twilio stand-in failed: {exc}")
            current = []
        for message in current:
            if message["sid"] in known:
                continue
            known.add(message["sid"])
            seen.append(message)
            last_new = time.monotonic()
            print(f"<- {message['body']}")
        if last_new is not None and time.monotonic() - last_new >= _SETTLE_SECONDS:
            break
        if last_new is None and (notice := limited()) is not None:
            return seen, notice
        time.sleep(_POLL_SECONDS)
    return seen, None


def _cmd_messages(settings: DevCliSettings, args: argparse.Namespace) -> int:
    to = whatsapp_address(normalize_phone(args.phone)) if args.phone else None
    if args.phone and args.sms:
        to = normalize_phone(args.phone)
    with httpx.Client(timeout=10.0) as client:
        try:
            messages = _list_sent(client, settings, to=to, limit=args.limit)
        except httpx.HTTPError as exc:
            print(
                f"cannot read the Twilio stand-in at {settings.twilio_api_base}: {exc}"
            )
            return 1
    if not messages:
        print("no messages")
    for m in messages:
        print(
            f"{m['date_created']}  {m['sid']}  {m['from']} -> {m['to']}  [{m['status']}]"
        )
        for line in m["body"].splitlines() or [""]:
            print(f"    {line}")
    return 0


# --- register --------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredUser:
    """What `register` wrote."""

    user_id: uuid.UUID
    assistant_id: uuid.UUID
    phone_e164: str


class PhoneTakenError(Exception):
    """The phone number belongs to a user `register` did not create."""


async def register_dev_user(
    conn: asyncpg.Connection,
    *,
    phone: str,
    endpoint: str,
    token: str,
    box: SecretBox,
    email: str | None = None,
    model: str | None = None,
    user_id: uuid.UUID | None = None,
    link_phone: bool = True,
) -> RegisteredUser:
    """Upsert a user with a phone, an ACTIVE subscription and a READY assistant.

    Runs in one transaction (a savepoint if the caller already opened one).
    Running it again updates the same rows. `link_phone=False` leaves the number
    to be proven as a user does (a WhatsApp message with the dashboard's code);
    `user_id` is the signed-in user's, when there is one.
    """
    phone = normalize_phone(phone)
    user_id = user_id or dev_user_id(phone)
    async with conn.transaction():
        owner = await conn.fetchval(
            "SELECT user_id FROM user_phones WHERE phone_e164 = $1", phone
        )
        if owner is not None and owner != user_id:
            raise PhoneTakenError(f"{phone} already belongs to user {owner}")
        await conn.execute(
            """
            INSERT INTO users (id, email) VALUES ($1, $2)
            ON CONFLICT (id) DO UPDATE
                SET email = COALESCE(EXCLUDED.email, users.email), updated_at = now()
            """,
            user_id,
            email,
        )
        if link_phone:
            await conn.execute(
                """
                INSERT INTO user_phones (user_id, phone_e164) VALUES ($1, $2)
                ON CONFLICT (user_id) DO UPDATE
                    SET phone_e164 = EXCLUDED.phone_e164, updated_at = now()
                """,
                user_id,
                phone,
            )
        await conn.execute(
            """
            INSERT INTO subscriptions (user_id, stripe_customer_id, stripe_subscription_id,
                                       status, stripe_status, current_period_end)
            VALUES ($1, $2, $3, 'ACTIVE', 'active', now() + interval '30 days')
            ON CONFLICT (user_id) DO UPDATE
                SET status = 'ACTIVE', stripe_status = 'active',
                    current_period_end = EXCLUDED.current_period_end, updated_at = now()
            """,
            user_id,
            f"cus_dev_{user_id.hex[:16]}",
            f"sub_dev_{user_id.hex[:16]}",
        )
        assistant_id: uuid.UUID = await conn.fetchval(
            """
            INSERT INTO assistants (user_id, status, base_url, gateway_token_encrypted, model)
            VALUES ($1, 'READY', $2, $3, COALESCE($4, 'anthropic/claude-sonnet-4-5-20250929'))
            ON CONFLICT (user_id) DO UPDATE
                SET status = 'READY', base_url = EXCLUDED.base_url,
                    gateway_token_encrypted = EXCLUDED.gateway_token_encrypted,
                    model = COALESCE($4, assistants.model),
                    last_error = NULL, updated_at = now()
            RETURNING id
            """,
            user_id,
            endpoint.rstrip("/"),
            box.encrypt(token, owner=str(user_id)),
            model,
        )
    return RegisteredUser(user_id=user_id, assistant_id=assistant_id, phone_e164=phone)


async def _register(
    settings: DevCliSettings, args: argparse.Namespace
) -> RegisteredUser:
    box = SecretBox(settings.encryption_key.get_secret_value())
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await register_dev_user(
            conn,
            phone=args.phone,
            email=args.email,
            endpoint=args.endpoint,
            token=args.token,
            box=box,
            model=args.model,
        )
    finally:
        await conn.close()


def _cmd_register(settings: DevCliSettings, args: argparse.Namespace) -> int:
    args.endpoint = args.endpoint or settings.dev_assistant_url
    if not settings.encryption_key.get_secret_value().strip():
        print(
            "ENCRYPTION_KEY is not set: the gateway token is stored encrypted",
            file=sys.stderr,
        )
        return 1
    try:
        user = asyncio.run(_register(settings, args))
    except (PhoneTakenError, OSError, asyncpg.PostgresError) as exc:
        print(f"register failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"registered {user.phone_e164}: subscription ACTIVE, assistant READY at "
        f"{args.endpoint.rstrip('/')}",
        file=sys.stderr,
    )
    print(user.user_id)
    return 0


# --- pay -------------------------------------------------------------------


async def _pay(settings: DevCliSettings, args: argparse.Namespace) -> int:
    conn: asyncpg.Connection | None = None
    async with httpx.AsyncClient(timeout=30.0) as client:
        try:
            if args.email:
                url, status = await checkout.checkout_for_email(
                    client, settings.api_url, args.email
                )
            else:
                conn = await asyncpg.connect(settings.database_url)
                url, status = await checkout.checkout_for_user(
                    settings.nats_url, conn, args.user
                )
            who = args.email or args.user
            print(f"checkout for {who}: {url}")
            if await checkout.press_pay(client, url):
                print("pressed Pay: the Stripe stand-in sends the signed webhooks")
            else:
                print("this checkout was paid before")
            if args.timeout <= 0:
                return 0
            found = await checkout.wait_for_active(status, timeout=args.timeout)
        except checkout.AlreadySubscribed as exc:
            print(f"nothing to pay: {exc}")
            return 0
        except (
            checkout.CheckoutError,
            httpx.HTTPError,
            OSError,
            asyncpg.PostgresError,
        ) as exc:
            print(f"pay failed: {exc}", file=sys.stderr)
            return 1
        finally:
            if conn is not None:
                await conn.close()
    if found != "ACTIVE":
        print(f"subscription still {found} after {args.timeout:g}s", file=sys.stderr)
        return 1
    print("subscription ACTIVE: the provisioner is starting the assistant")
    return 0


# --- entry point -----------------------------------------------------------


def _phone_arg(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yourclaw-dev", description="Developer tools for the local YourClaw stack."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    send = commands.add_parser(
        "send",
        aliases=["wa"],
        help="send a signed inbound WhatsApp webhook and print the replies",
    )
    send.add_argument("text", nargs="+", help="message body")
    send.add_argument(
        "--from",
        dest="from_",
        type=_phone_arg,
        default="+15551234567",
        help="sender (E.164)",
    )
    send.add_argument(
        "--name", default="Dev User", help="ProfileName (default: Dev User)"
    )
    send.add_argument("--sid", help="MessageSid to use (default: a new SM…)")
    send.add_argument(
        "--media", action="append", metavar="URL", help="attach a media URL"
    )
    send.add_argument(
        "--times", type=int, default=1, help="POST the same signed request N times"
    )
    send.add_argument(
        "--bad-signature", action="store_true", help="send a wrong X-Twilio-Signature"
    )
    send.add_argument(
        "--sms",
        action="store_true",
        help="send it as an SMS to TWILIO_SMS_NUMBER (the SMS webhook)",
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for replies (0: don't)",
    )

    register = commands.add_parser(
        "register",
        help="create a user with an active subscription and a ready assistant",
    )
    register.add_argument("--phone", type=_phone_arg, required=True)
    register.add_argument("--email")
    register.add_argument(
        "--endpoint",
        help=f"assistant base URL (default: DEV_ASSISTANT_URL or {DEVSIM_URL})",
    )
    register.add_argument(
        "--token", default=DEV_GATEWAY_TOKEN, help="the assistant's gateway token"
    )
    register.add_argument(
        "--model", help="assistant model (default: keep/seed default)"
    )

    pay = commands.add_parser(
        "pay",
        help="complete a user's dev checkout (the Stripe stand-in's Pay button)",
    )
    who = pay.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--email", help="sign in as this email (as Dev sign-in does) and pay"
    )
    who.add_argument("--user", type=uuid.UUID, help="pay for this user id")
    pay.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the subscription to be ACTIVE (0: don't)",
    )

    messages = commands.add_parser("messages", help="what the Twilio stand-in sent")
    messages.add_argument(
        "--phone", type=_phone_arg, help="only messages to this number"
    )
    messages.add_argument("--limit", type=int, default=50)
    messages.add_argument(
        "--sms", action="store_true", help="with --phone: the SMS sent to it"
    )
    add_telegram_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit code."""
    args = _parser().parse_args(argv)
    if getattr(args, "times", 1) < 1:
        print("--times must be at least 1", file=sys.stderr)
        return 2
    settings = DevCliSettings()
    if args.command in ("send", "wa"):
        return _cmd_send(settings, args)
    if args.command == "register":
        return _cmd_register(settings, args)
    if args.command == "pay":
        return asyncio.run(_pay(settings, args))
    if args.command in ("telegram", "tg"):
        return telegram_command(settings.telegram_api_base, args)
    return _cmd_messages(settings, args)


def cli() -> None:
    """Console entry point of `yourclaw-dev`."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
