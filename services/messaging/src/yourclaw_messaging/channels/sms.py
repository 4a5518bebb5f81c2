"""SMS through Twilio: our SMS number (`TWILIO_SMS_NUMBER`) and the user's
proven phone number, plain E.164 on both sides.

What differs from WhatsApp: no 24-hour window and no templates (a message we
send first is free-form text), replies as plain text (markdown read aloud as
asterisks is noise on a phone, and one typographic quote makes a whole
message UCS-2, 70 characters a segment instead of 160), and the keywords
carriers require:

- STOP (STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT): the number
  is recorded in `sms_opt_outs` and gets nothing more by SMS, no reply either.
  Twilio's opt-out handling (the default on long codes and toll-free numbers,
  or Advanced Opt-Out on a Messaging Service) has already answered with the
  carrier's confirmation and blocks further sends (error 21610) by itself.
- START, UNSTOP (and YES from an opted-out number): the record goes; Twilio
  confirms the opt-in, so we say nothing.
- HELP, INFO: a short help text (Twilio sends its own standard line too).

The keywords work even for a sender over the rate limits, and do not count
against them (`exempt_from_limits`): a STOP is always recorded, never answered
with a limit notice.

Sending, its retries, the SENDING → SENT record and status callbacks are
`TwilioChannel`'s, as for WhatsApp.
"""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection
from yourclaw_common.events import InboundSms
from yourclaw_common.logging import get_logger

from yourclaw_messaging import metrics, replies, repository
from yourclaw_messaging.channels.base import ChannelName, Incoming
from yourclaw_messaging.channels.markup import (
    BULLET,
    CODE,
    EMPHASIS,
    FENCE,
    HEADING,
    LINK,
    outside_urls,
)
from yourclaw_messaging.channels.twilio_channel import TwilioChannel
from yourclaw_messaging.outgoing import Planned
from yourclaw_messaging.repository.conversations import Recipient

__all__ = ["SmsChannel", "incoming", "plain_text"]

log = get_logger(__name__)

# Twilio concatenates the segments of one message up to 1,600 characters.
MAX_BODY_CHARS = 1600
# Twilio's "the recipient replied STOP" refusal.
OPTED_OUT_CODE = "21610"
# What a reply or notice to an opted-out number is stored with (SKIPPED).
OPTED_OUT = "SMS_OPTED_OUT"

# Twilio's keywords: the whole message, one word, any case.
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "UNSTOP"})
# Twilio opts a number back in on YES too; from anyone else it is just "yes".
_OPT_IN_IF_OUT = frozenset({"YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})

SMS_HELP = (
    "YourClaw: your AI assistant by text. Manage your account at {app_url}. "
    "Send /help for commands. Reply STOP to opt out. Msg & data rates may apply."
)
SMS_SIGNUP = (
    "Hi! This is YourClaw, your always-on AI assistant. This number isn't linked "
    "to an account yet. Sign up at {app_url} and add this number to text your "
    "assistant. Reply STOP to opt out."
)


def incoming(event: InboundSms) -> Incoming:
    return Incoming(
        channel="sms",
        address=event.from_number.strip(),
        key=event.message_sid,
        body=event.body,
        media=event.media,
        verifies_phone=event.verifies_phone,
    )


# Typography outside GSM-7: one such character makes the whole message UCS-2.
_PLAIN = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",
    }
)


def _link(match: re.Match[str]) -> str:
    text, url = match.group(1), match.group(2)
    return url if text.strip() == url else f"{text} ({url})"


def plain_text(text: str) -> str:
    """`text` without the markdown that shows as symbols in an SMS, and with
    typographic quotes and dashes as their plain keyboard forms."""
    text = FENCE.sub("", text)
    text = HEADING.sub("", text)
    text = BULLET.sub(r"\1- ", text)
    text = LINK.sub(_link, text)

    def unmarked(piece: str) -> str:
        for pattern, _ in EMPHASIS:
            piece = pattern.sub(r"\1", piece)
        return CODE.sub(r"\1", piece)

    return outside_urls(text, unmarked).translate(_PLAIN)


def _word(incoming: Incoming) -> str:
    """The message as a keyword is matched: the whole of it, in any case."""
    return incoming.body.strip().upper()


def _keyword(keyword: str, answer: str) -> str:
    """`answer`, counted and logged as the answer to `keyword`."""
    metrics.SMS_KEYWORDS.labels(keyword).inc()
    log.info("messaging.sms.keyword", keyword=keyword)
    return answer


@dataclass
class SmsChannel(TwilioChannel):
    name: ClassVar[ChannelName] = "sms"
    # Where people sign up and manage their account (the HELP answer).
    app_url: str = ""

    # --- what to send ----------------------------------------------------------

    def split(self, text: str) -> list[str]:
        return replies.split_reply(plain_text(text), MAX_BODY_CHARS)

    async def plan_notice(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        """Free-form: SMS has no window. Nothing to a number that opted out."""
        if await repository.sms.user_opted_out(conn, user_id):
            return Planned([plain_text(text)], "proactive", error_code=OPTED_OUT)
        return Planned(self.split(text) or [""], "proactive")

    async def plan_ready(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        return await self.plan_notice(conn, user_id, text)

    async def stranger(self, conn: Connection, address: str, app_url: str) -> str:
        if await repository.inbound.phone_claimed(conn, address):
            return replies.VERIFY_PENDING.format(app_url=app_url)
        return SMS_SIGNUP.format(app_url=app_url)

    def serves(self, address: str) -> bool:
        # Any number: an opt-out is the user's to undo, and a message we send
        # first to it is stored SKIPPED (`plan_notice`), not moved elsewhere.
        return True

    def typing(self, address: str) -> AbstractAsyncContextManager[None]:
        return nullcontext()  # SMS has no typing indicator

    # --- keywords --------------------------------------------------------------

    async def exempt_from_limits(self, incoming: Incoming) -> bool:
        """The keywords `intercept` answers: YES only from an opted-out number
        (from anyone else it is a message to the assistant, limited as any)."""
        word = _word(incoming)
        if word in OPT_OUT_WORDS or word in OPT_IN_WORDS or word in HELP_WORDS:
            return True
        if word not in _OPT_IN_IF_OUT:
            return False
        async with self.pool.acquire() as conn:
            return await repository.sms.opted_out(conn, incoming.address)

    async def intercept(
        self, incoming: Incoming, recipient: Recipient | None
    ) -> str | None:
        """The carriers' keywords; any other message from an opted-out number
        reaches no assistant (nothing could carry the answer)."""
        word = _word(incoming)
        phone = incoming.address
        async with self.pool.acquire() as conn:
            if word in OPT_OUT_WORDS:
                await repository.sms.opt_out(conn, phone)
                return _keyword("stop", "")
            opted_out = await repository.sms.opted_out(conn, phone)
            if word in OPT_IN_WORDS or (opted_out and word in _OPT_IN_IF_OUT):
                await repository.sms.opt_in(conn, phone)
                return _keyword("start", "")
            if word in HELP_WORDS and not opted_out:
                return _keyword("help", SMS_HELP.format(app_url=self.app_url))
        if opted_out:
            metrics.SMS_KEYWORDS.labels("opted_out").inc()
            log.info("messaging.sms.opted_out_message", message_sid=incoming.key)
            return ""
        return None

    # --- Twilio's answers ------------------------------------------------------

    async def rejected(self, row: asyncpg.Record, code: str) -> None:
        if code == OPTED_OUT_CODE:
            # Opted out where we did not see it (another number of the
            # Messaging Service, a STOP before this number was ours).
            async with self.pool.acquire() as conn:
                await repository.sms.opt_out(conn, row["phone_e164"])
            metrics.SMS_KEYWORDS.labels("twilio_21610").inc()
