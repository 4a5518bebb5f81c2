"""Proof that a phone number is the user's.

`POST /api/v1/users/me/phone` claims a number and shows a 6-digit code; the
number is linked (`user_phones`) only when a WhatsApp message from it carries
that code within 15 minutes. Twilio signs what it delivers, so such a message
proves the sender holds the phone, and proving costs us no outbound message.

Every claim gets the same answer, whoever holds the number, so the API never
tells one account whether another has it; a code simply never takes a number
another account has proven. The code is stored as a salted SHA-256: it is
short, so what protects it is that only a message from the phone can present
it, within 15 minutes and at most `MAX_ATTEMPTS` wrong tries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection

from yourclaw_gateway_api import repository

__all__ = [
    "CODE_TTL",
    "MAX_ATTEMPTS",
    "claim",
    "codes_in",
    "may_prove",
    "prove",
    "wa_me_link",
]

CODE_TTL = dt.timedelta(minutes=15)
MAX_ATTEMPTS = 5
# A code is six digits standing alone ("123456", "code: 123456."), not part of
# a longer number; a message is read for at most a few of them.
_CODE = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")
_MAX_CODES = 3


def _digest(salt: bytes, code: str) -> bytes:
    return hashlib.sha256(salt + code.encode()).digest()


def codes_in(body: str) -> list[str]:
    """The candidate codes of a message body (none: no lookup at all)."""
    return _CODE.findall(body)[:_MAX_CODES] if len(body) >= 6 else []


def wa_me_link(whatsapp_number: str, code: str) -> str:
    """A link that opens WhatsApp with the code typed to our number."""
    digits = re.sub(r"[^0-9]", "", whatsapp_number)
    return f"https://wa.me/{digits}?text={code}"


async def claim(conn: Connection, user_id: UUID, phone: str) -> str | None:
    """A new code for the user's claim on `phone`, replacing any earlier claim;
    None when `phone` is already the user's proven number."""
    if await repository.phone_owner(conn, phone) == user_id:
        await repository.delete_phone_claim(conn, user_id)
        return None
    code = f"{secrets.randbelow(10**6):06d}"
    salt = secrets.token_bytes(16)
    await repository.upsert_phone_claim(
        conn, user_id, phone, _digest(salt, code), salt, expires_in=CODE_TTL
    )
    return code


async def may_prove(pool: asyncpg.Pool, phone: str, message_sid: str) -> bool:
    """Whether `prove` can say yes: a live claim on `phone`, or this message
    already proved it (Twilio's retry)."""
    return await repository.phone_may_be_proven(
        pool, phone, message_sid, max_attempts=MAX_ATTEMPTS
    )


async def prove(
    conn: Connection, phone: str, codes: list[str], message_sid: str
) -> bool:
    """Whether the message `message_sid` from `phone` proves a claim on it (and
    links it); a wrong code counts against every live claim on the number.
    Runs inside the caller's transaction."""
    if await repository.phone_proven_by(conn, phone, message_sid):
        return True  # Twilio's retry of the message that proved it
    claims = await repository.live_phone_claims(conn, phone, max_attempts=MAX_ATTEMPTS)
    if not claims:
        return False
    owner = await repository.phone_owner(conn, phone)
    for row in claims:
        if owner not in (None, row["user_id"]):
            continue  # another account holds the number; it keeps it
        if any(
            hmac.compare_digest(_digest(row["salt"], code), row["code_sha256"])
            for code in codes
        ):
            try:
                async with conn.transaction():  # a savepoint
                    await repository.link_phone(
                        conn, row["user_id"], phone, verified_by=message_sid
                    )
            except asyncpg.UniqueViolationError:
                return False  # another account proved it a moment ago
            await repository.delete_phone_claims(conn, phone, row["user_id"])
            return True
    await repository.count_phone_claim_attempt(conn, phone)
    return False
