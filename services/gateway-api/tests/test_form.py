import random
import string
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

import pytest
from yourclaw_gateway_api.webhooks.form import parse_form

ALPHABET = string.ascii_letters + string.digits + "&=+%;/?:@ _-.~é🙂\u00a0"


class TestParseForm:
    @pytest.mark.parametrize(
        "body",
        [
            "",
            "a=1&b=2",
            "a=&b",
            "&&a=1&&",
            "Body=hello+world%21&From=whatsapp%3A%2B15551234567",
            "x=%ZZ&y=%e2%82&z=%C3%A9",
            "k=v=w",
            "a=1;b=2",
            "=novalue&=",
            urlencode({"Body": "café 🙂 + & = % ;", "Media": "https://x/y?z=1&w=2"}),
            urlencode([("r", "1"), ("r", "2"), ("r", "1")]),
        ],
    )
    def test_agrees_with_parse_qsl(self, body):
        assert parse_form(body) == parse_qsl(body, keep_blank_values=True)

    def test_agrees_with_parse_qsl_on_random_bodies(self):
        rng = random.Random(1234)
        for _ in range(3000):
            raw = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60)))
            for body in (raw, quote(raw, safe="&="), quote_plus(raw, safe="&=%")):
                assert parse_form(body) == parse_qsl(body, keep_blank_values=True), body
