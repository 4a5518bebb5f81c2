import re

import pytest
from yourclaw_gateway_api.phones import (
    INPUT_PATTERN,
    MAX_INPUT_CHARS,
    InvalidPhoneNumber,
    to_e164,
)

SAMPLES = [
    "+1 (415) 555-0100",
    "0044 7700 900123",
    "0 0 44 7700 900123",
    "+44.7700.900.123",
    "\t+1-415-555-0100\n",
    "(+1) 415 5550100",
    "+49 30 901820",
    "+999999999999999",
    "12",
    "4155550100",
    "+0123456789",
    "00 0123456789",
    "+00123456789",
    "00+14155550100",
    "1+5551234567",
    "+1555",
    "+1234567890123456",
    "+1 555 CALL NOW",
    "whatsapp:+15551234567",
    "+" + "".join(chr(0xFF10 + int(d)) for d in "14155550100"),  # full-width
    "+",
    "00",
    "",
    "   ",
    "+1" + "0" * 60,
]


class TestToE164:
    @pytest.mark.parametrize("typed", SAMPLES)
    def test_the_documented_pattern_accepts_exactly_what_is_read(self, typed):
        documented = (
            len(typed) <= MAX_INPUT_CHARS
            and re.search(INPUT_PATTERN, typed) is not None
        )
        try:
            to_e164(typed)
            read = True
        except InvalidPhoneNumber:
            read = False

        assert read == documented

    def test_common_spellings(self):
        assert to_e164("+1 (415) 555-0100") == "+14155550100"
        assert to_e164("0044 7700 900123") == "+447700900123"
        assert to_e164("+44.7700.900.123") == "+447700900123"

    def test_a_single_digit_is_counted_in_the_singular(self):
        with pytest.raises(InvalidPhoneNumber, match="has 1 digit;"):
            to_e164("+1")
