"""Phone numbers as people type them, into E.164 (`+14155550100`).

Accepted: a leading `+` or international `00`, then the digits, with spaces,
dashes, dots or brackets anywhere between them (`+1 (415) 555-0100`,
`0044 7700 900123`). What cannot be read gets one sentence saying what to fix.
"""

from __future__ import annotations

import re

__all__ = ["INPUT_PATTERN", "MAX_INPUT_CHARS", "InvalidPhoneNumber", "to_e164"]

MAX_INPUT_CHARS = 40
_SEPARATOR = r"[\s().\-]"
# Exactly what `to_e164` accepts, for the API document (tested to agree).
INPUT_PATTERN = (
    rf"^{_SEPARATOR}*(\+|0{_SEPARATOR}*0){_SEPARATOR}*[1-9]"
    rf"({_SEPARATOR}*[0-9]){{6,14}}{_SEPARATOR}*$"
)
_SEPARATORS = re.compile(_SEPARATOR)
# E.164: a country code that does not start with 0, 7 to 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_EXAMPLE = "e.g. +1 415 555 0100"


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number in international form; the message says
    what to fix, in words a user reads."""


def to_e164(raw: str) -> str:
    """E.164 from a number in a common international spelling."""
    if len(raw) > MAX_INPUT_CHARS:
        raise InvalidPhoneNumber(
            f"That is too long for a phone number ({MAX_INPUT_CHARS} characters "
            "at most)."
        )
    compact = _SEPARATORS.sub("", raw)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if _E164.fullmatch(compact):
        return compact
    digits = compact.removeprefix("+")
    if not compact:
        raise InvalidPhoneNumber(
            f"Enter your WhatsApp number with its country code, {_EXAMPLE}."
        )
    if not re.fullmatch(r"[0-9]+", digits):
        raise InvalidPhoneNumber(
            "A phone number can only contain digits, spaces, dashes, dots and "
            f"brackets after a leading +, {_EXAMPLE}."
        )
    if not compact.startswith("+"):
        raise InvalidPhoneNumber(
            "Start the number with + (or 00) and its country code, "
            f"{_EXAMPLE} or +44 7700 900123."
        )
    if digits.startswith("0"):
        raise InvalidPhoneNumber(
            "A country code never starts with 0: after the + comes the country "
            f"code, such as 1 for the US or 44 for the UK ({_EXAMPLE})."
        )
    count = len(digits)
    raise InvalidPhoneNumber(
        f"That number has {count} {'digit' if count == 1 else 'digits'}; with "
        "its country code a phone number has 7 to 15. Check for a missing or "
        "extra digit."
    )
