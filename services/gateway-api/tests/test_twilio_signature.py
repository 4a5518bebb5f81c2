import random
from dataclasses import dataclass
from hashlib import sha256
from urllib.parse import parse_qs, parse_qsl, urlencode, urlparse

import pytest
from twilio.request_validator import RequestValidator, add_port, remove_port
from yourclaw_gateway_api.webhooks.twilio import TWILIO_WHATSAPP_PATH
from yourclaw_gateway_api.webhooks.twilio_signature import TwilioSignature, url_variants

TOKEN = "agreement-token-5f2c"
PATH = TWILIO_WHATSAPP_PATH

BASES = [
    "https://public.example",
    "https://public.example:443",
    "http://public.example",
    "http://public.example:80",
    "http://127.0.0.1:8000",
    "https://public.example:8443",
    "https://public.example/prefix",
]

NAMES = [
    "Body",
    "From",
    "To",
    "MessageSid",
    "MediaUrl0",
    "a",
    "B",
    "Zoë",
    "日本",
    "x y",
]
VALUES = [
    "",
    "hello",
    "Hello there",
    "héllo 日本 🎉",
    "+15551234567",
    "a&b=c",
    "%41",
    "  ",
]


class FormParams:
    def __init__(self, pairs):
        self.pairs = list(pairs)

    def __iter__(self):
        return iter(dict.fromkeys(name for name, _ in self.pairs))

    def __bool__(self):
        return bool(self.pairs)

    def getall(self, name):
        return [value for n, value in self.pairs if n == name]


@dataclass
class Case:
    """A request as it reaches us, and the signature it carries."""

    base: str
    pairs: list[tuple[str, str]]
    signature: str
    query: str = ""
    body: bytes | None = None

    @property
    def url(self) -> str:
        return self.base + PATH + (f"?{self.query}" if self.query else "")

    def raw_body(self) -> bytes:
        return urlencode(self.pairs).encode() if self.body is None else self.body

    def twilio_says(self) -> bool:
        """twilio's own verdict, given what a web framework would hand it."""
        if "bodySHA256" in parse_qs(urlparse(self.url).query):
            params: object = self.raw_body().decode()
        else:
            params = FormParams(
                parse_qsl(self.raw_body().decode(), keep_blank_values=True)
            )
        return RequestValidator(TOKEN).validate(self.url, params, self.signature)

    def lean_says(self) -> bool:
        raw = self.raw_body()
        pairs = parse_qsl(raw.decode(), keep_blank_values=True)
        checker = TwilioSignature(TOKEN, self.base + PATH)
        return checker.is_valid(
            self.signature.encode(), pairs, query=self.query, body=raw
        )


def sign(url, pairs, token=TOKEN):
    return RequestValidator(token).compute_signature(url, FormParams(pairs))


def signed(base, pairs, *, query="", sign_url=None, sign_pairs=None, token=TOKEN, **kw):
    case = Case(base, list(pairs), "", query=query, **kw)
    case.signature = sign(
        sign_url or case.url, case.pairs if sign_pairs is None else sign_pairs, token
    )
    return case


MSG = [
    ("MessageSid", "SM" + "1" * 32),
    ("From", "whatsapp:+15551234567"),
    ("Body", "hi"),
]
JSON_BODY = b'{"MessageSid":"SM1","Body":"h\xc3\xa9"}'
JSON_HASH = sha256(JSON_BODY).hexdigest()


def body_signed(body: bytes, *, digest=None, sent=None, **kw):
    """A request signed Twilio's way for a non-form body: its SHA-256 in the
    query (`digest`, else the body's own), the body `sent` (else `body`)."""
    digest = digest or sha256(body).hexdigest()
    return signed(BASE, [], query=f"bodySHA256={digest}", body=sent or body, **kw)


BASE = "https://public.example"

# name -> (case, what both validators must say)
NAMED_CASES = {
    "exact": (signed(BASE, MSG), True),
    "no_params": (signed(BASE, []), True),
    "repeated_name": (signed(BASE, [*MSG, ("MediaUrl", "b"), ("MediaUrl", "a")]), True),
    "repeated_identical_pair": (
        signed(BASE, [*MSG, ("X", "1"), ("X", "1")], sign_pairs=[*MSG, ("X", "1")]),
        True,
    ),
    "unicode": (
        signed(BASE, [*MSG, ("ProfileName", "Zoë"), ("Body", "héllo 日本 🎉")]),
        True,
    ),
    "empty_values": (signed(BASE, [*MSG, ("Body", ""), ("Empty", "")]), True),
    "signed_with_default_port": (signed(BASE, MSG, sign_url=f"{BASE}:443{PATH}"), True),
    "configured_with_default_port": (
        signed(f"{BASE}:443", MSG, sign_url=BASE + PATH),
        True,
    ),
    "http_default_port": (
        signed(
            "http://public.example", MSG, sign_url=f"http://public.example:80{PATH}"
        ),
        True,
    ),
    "other_port_signed_without_it": (
        signed(f"{BASE}:8443", MSG, sign_url=BASE + PATH),
        True,
    ),
    "http_instead_of_https": (
        signed(BASE, MSG, sign_url=f"http://public.example{PATH}"),
        False,
    ),
    "https_with_port_80": (signed(BASE, MSG, sign_url=f"{BASE}:80{PATH}"), False),
    "other_path": (
        signed(BASE, MSG, sign_url=f"{BASE}/api/v1/webhooks/twilio/other"),
        False,
    ),
    "other_host": (signed(BASE, MSG, sign_url=f"https://evil.example{PATH}"), False),
    "other_token": (signed(BASE, MSG, token="not-the-token"), False),
    "tampered_value": (
        signed(BASE, [*MSG[:2], ("Body", "hi!")], sign_pairs=MSG),
        False,
    ),
    "added_param": (signed(BASE, [*MSG, ("Extra", "1")], sign_pairs=MSG), False),
    "dropped_param": (signed(BASE, MSG[:2], sign_pairs=MSG), False),
    "value_moved_between_names": (
        signed(BASE, [("A", "1"), ("B", "2")], sign_pairs=[("A", "2"), ("B", "1")]),
        False,
    ),
    "repeated_value_dropped": (
        signed(BASE, [("M", "a")], sign_pairs=[("M", "a"), ("M", "b")]),
        False,
    ),
    "query_signed": (signed(BASE, MSG, query="a=1&b=2"), True),
    "query_reordered": (
        signed(BASE, MSG, query="b=2&a=1", sign_url=f"{BASE}{PATH}?a=1&b=2"),
        False,
    ),
    "query_not_signed": (signed(BASE, MSG, query="a=1", sign_url=BASE + PATH), False),
    "query_with_default_port": (
        signed(BASE, MSG, query="a=1", sign_url=f"{BASE}:443{PATH}?a=1"),
        True,
    ),
    "body_sha256": (body_signed(JSON_BODY), True),
    "body_sha256_with_default_port": (
        body_signed(JSON_BODY, sign_url=f"{BASE}:443{PATH}?bodySHA256={JSON_HASH}"),
        True,
    ),
    "body_sha256_body_tampered": (
        body_signed(JSON_BODY, sent=JSON_BODY + b" "),
        False,
    ),
    "body_sha256_upper_case": (
        body_signed(JSON_BODY, digest=JSON_HASH.upper()),
        False,
    ),
    "body_sha256_signature_over_params": (
        body_signed(JSON_BODY, sign_pairs=[("k", "v")]),
        False,
    ),
    "form_body_sha256": (body_signed(urlencode(MSG).encode()), True),
    "body_sha256_blank_is_ignored": (signed(BASE, MSG, query="bodySHA256="), True),
    "signature_with_whitespace": (
        Case(BASE, MSG, sign(BASE + PATH, MSG) + " "),
        False,
    ),
    "empty_signature": (Case(BASE, MSG, ""), False),
}


def random_case(rng: random.Random) -> Case:
    base = rng.choice(BASES)
    pairs = [(rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randint(0, 8))]
    if pairs and rng.random() < 0.3:
        pairs.append(rng.choice(pairs))  # an exact repeat
    query = rng.choice(["", "", "a=1", "x=%20y&a=1"])
    body = None
    if rng.random() < 0.15:
        body = f'{{"n":{rng.randint(0, 9)}}}'.encode()
        query = f"bodySHA256={sha256(body).hexdigest()}"
    case = Case(base, pairs, "", query=query, body=body)
    sign_url, sign_pairs, token = case.url, list(pairs), TOKEN
    mutation = rng.choice(
        [
            "none",
            "none",
            "none",
            "value",
            "add",
            "drop",
            "scheme",
            "port",
            "token",
            "body",
        ]
    )
    if mutation == "value" and sign_pairs:
        i = rng.randrange(len(sign_pairs))
        sign_pairs[i] = (sign_pairs[i][0], sign_pairs[i][1] + "x")
    elif mutation == "add":
        sign_pairs.append(("Extra", rng.choice(VALUES)))
    elif mutation == "drop" and sign_pairs:
        sign_pairs.pop(rng.randrange(len(sign_pairs)))
    elif mutation == "scheme":
        sign_url = (
            sign_url.replace("https://", "http://", 1)
            if sign_url.startswith("https")
            else sign_url.replace("http://", "https://", 1)
        )
    elif mutation == "port":
        parsed = urlparse(sign_url)
        sign_url = remove_port(parsed) if parsed.port else add_port(parsed)
    elif mutation == "token":
        token = "other-token"
    elif mutation == "body" and body is not None:
        case.body = body + b"\n"
    case.signature = sign(sign_url, sign_pairs, token)
    return case


RANDOM_CASES = [random_case(random.Random(seed)) for seed in range(400)]


class TestTwilioSignature:
    def test_twilio_published_example_verifies(self):
        # The example of Twilio's security docs and twilio-python's tests.
        checker = TwilioSignature("12345", "https://mycompany.com/myapp.php")
        params = {
            "CallSid": "CA1234567890ABCDE",
            "Caller": "+12349013030",
            "Digits": "1234",
            "From": "+12349013030",
            "To": "+18005551212",
        }
        assert checker.is_valid(
            b"0/KCTR6DLpKmkAf8muzZqo1nDgQ=", params.items(), query="foo=1&bar=2"
        )

    @pytest.mark.parametrize(
        ("name", "expected"), [(n, e) for n, (_, e) in NAMED_CASES.items()]
    )
    def test_agrees_with_request_validator_on_named_case(self, name, expected):
        case = NAMED_CASES[name][0]
        assert case.twilio_says() is expected
        assert case.lean_says() is expected

    def test_agrees_with_request_validator_on_random_cases(self):
        verdicts = [(case.twilio_says(), case.lean_says()) for case in RANDOM_CASES]
        disagreements = [
            (case, twilio, lean)
            for case, (twilio, lean) in zip(RANDOM_CASES, verdicts, strict=True)
            if twilio != lean
        ]
        assert disagreements == []
        valid = sum(twilio for twilio, _ in verdicts)
        # Both kinds are well represented, so agreement means something.
        assert 100 < valid < len(RANDOM_CASES) - 100

    @pytest.mark.parametrize(
        "url",
        [
            "https://public.example/p",
            "https://public.example:443/p",
            "https://public.example:8443/p?a=1",
            "http://127.0.0.1:8000/p",
            "http://public.example/p?bodySHA256=ab",
            "HTTPS://Public.Example/p",
        ],
    )
    def test_url_variants_are_twilio_s(self, url):
        parsed = urlparse(url)
        assert url_variants(url) == (remove_port(parsed), add_port(parsed))

    def test_empty_token_is_refused(self):
        with pytest.raises(ValueError, match="empty"):
            TwilioSignature("", "https://public.example/p")
