"""Errors of the messaging service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from yourclaw_common.errors import PermanentError, TransientError


class TwilioSendError(TransientError):
    """Twilio did not take the message; retry later (5xx, 429, auth, network)."""

    code = "TWILIO_UNAVAILABLE"


class TwilioRejected(PermanentError):
    """Twilio refused this message for good (bad number, outside window, …)."""

    code = "TWILIO_REJECTED"


class AssistantUnavailable(TransientError):
    """The user's assistant did not answer usably."""

    code = "ASSISTANT_UNAVAILABLE"


class AssistantNotReady(AssistantUnavailable):
    """The assistant's gateway refused the connection or answered 502/503/504:
    it is (re)starting and will answer shortly."""

    code = "ASSISTANT_NOT_READY"


class AssistantLockedOut(AssistantUnavailable):
    """The gateway failed the turn on its own state locks (OpenClaw's threads
    contending, as at a thaw after a long freeze): asked once more when the
    turn called no model (`Turns._may_ask_again`)."""

    code = "ASSISTANT_LOCKED_OUT"


class AssistantStarting(TransientError):
    """The turn waits for a (re)starting assistant: redelivered with backoff."""

    code = "ASSISTANT_STARTING"


class SendUnconfirmed(TransientError):
    """A send whose outcome is unknown (another handler's in flight, or one
    that died before recording it) is looked at again later."""

    code = "SEND_UNCONFIRMED"


class MediaRejected(PermanentError):
    """An inbound attachment we will not hand to the assistant (too large)."""

    code = "MEDIA_REJECTED"


class Unstorable(PermanentError):
    """PostgreSQL refuses a value of this message; storing it again cannot help."""

    code = "UNSTORABLE"


# SQLSTATE classes a value itself causes, so a retry fails the same way: data
# exceptions (22: NUL in text, a number out of range), integrity violations (23)
# and program limits (54: a key too long for its index).
_VALUE_ERROR_CLASSES = frozenset({"22", "23", "54"})


@contextmanager
def unstorable_as_permanent() -> Iterator[None]:
    """Turn PostgreSQL's refusal of a value into `Unstorable`: terminated, not
    retried, and (in a batch) a cue to store the items one by one."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        state = str(getattr(exc, "sqlstate", "") or "")
        if state[:2] not in _VALUE_ERROR_CLASSES:
            raise
        raise Unstorable(
            f"PostgreSQL refused the value ({state}): {exc}"[:300], sqlstate=state
        ) from exc


def is_unstorable(exc: Exception) -> bool:
    return isinstance(exc, Unstorable)
