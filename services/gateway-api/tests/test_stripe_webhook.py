import hashlib
import hmac
import time

import httpx
import orjson
import pytest
import stripe
from yourclaw_common.events import (
    Stream,
    StripeEventReceived,
    Subject,
    provider_event_id,
)
from yourclaw_devkit.pytest_plugin import api_error, stream_size
from yourclaw_gateway_api.webhooks.stripe import (
    STRIPE_WEBHOOK_PATH,
    InvalidStripeSignature,
    StripeSignature,
)

SECRET = "whsec_test_0123456789abcdef"


def stripe_event(
    evt_id: str = "evt_1", type_: str = "invoice.paid", **data: object
) -> dict:
    return {
        "id": evt_id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": type_,
        "data": {"object": {"id": "in_1", "object": "invoice", **data}},
    }


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), b"%d.%s" % (t, payload), hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


@pytest.fixture
async def stripe_gateway(start_gateway, js):
    async with start_gateway(stripe_webhook_secret=SECRET) as gw:
        yield gw


async def post(gw, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["stripe-signature"] = signature
    return await gw.client.post(STRIPE_WEBHOOK_PATH, content=body, headers=headers)


class TestStripeSignature:
    def test_accepts_what_stripe_python_signs(self):
        payload = orjson.dumps(stripe_event())
        header = stripe.WebhookSignature.generate_signature_header(
            payload.decode(), SECRET
        )

        StripeSignature(SECRET).verify(payload, header, now=time.time())
        # And stripe-python agrees with our own signer (used by devsim and tests).
        stripe.WebhookSignature.verify_header(payload, sign(payload), SECRET, 300)

    @pytest.mark.parametrize(
        ("header", "reason"),
        [
            ("", "missing"),
            (None, "missing"),
            ("v1=abc", "malformed"),
            ("t=12x,v1=abc", "malformed"),
            ("t=1,t=2,v1=abc", "malformed"),
            ("t=1800000000", "malformed"),
        ],
    )
    def test_malformed_headers_are_rejected(self, header, reason):
        with pytest.raises(InvalidStripeSignature) as caught:
            StripeSignature(SECRET).verify(b"{}", header, now=time.time())
        assert caught.value.reason == reason

    def test_stripe_python_rejects_what_we_reject(self):
        payload = orjson.dumps(stripe_event())
        header = sign(payload, secret="whsec_other")

        with pytest.raises(InvalidStripeSignature):
            StripeSignature(SECRET).verify(payload, header, now=time.time())
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(payload, header, SECRET, 300)

    def test_boundaries_of_the_time_window(self):
        payload = b"{}"
        now = 1_800_000_000
        check = StripeSignature(SECRET)

        check.verify(payload, sign(payload, timestamp=now - 300), now=now)
        check.verify(payload, sign(payload, timestamp=now + 300), now=now)
        with pytest.raises(InvalidStripeSignature, match="stale"):
            check.verify(payload, sign(payload, timestamp=now - 301), now=now)
        with pytest.raises(InvalidStripeSignature, match="future"):
            check.verify(payload, sign(payload, timestamp=now + 301), now=now)


class TestStripeWebhook:
    async def test_signed_event_is_published_once_with_its_id(self, stripe_gateway, js):
        event = stripe_event("evt_published", "invoice.payment_failed")
        body = orjson.dumps(event)

        responses = [await post(stripe_gateway, body, sign(body)) for _ in range(3)]

        assert [r.status_code for r in responses] == [200, 200, 200]
        assert responses[0].json() == {"received": True, "queued": True}
        # Stripe's retries of one event are stored once.
        assert await stream_size(js, Stream.BILLING) == 1
        msg = await js.get_last_msg(
            Stream.BILLING, Subject.BILLING_INVOICE_PAYMENT_FAILED.value
        )
        assert msg.headers["Nats-Msg-Id"] == "evt_published"
        received = StripeEventReceived.model_validate_json(msg.data)
        assert received.event_id == provider_event_id("evt_published")
        assert received.stripe_event_id == "evt_published"
        assert received.type == "invoice.payment_failed"
        assert received.created == event["created"]
        assert received.data == event["data"]

    @pytest.mark.parametrize(
        ("stripe_type", "subject"),
        [
            ("checkout.session.completed", Subject.BILLING_CHECKOUT_COMPLETED),
            (
                "customer.subscription.deleted",
                Subject.BILLING_CUSTOMER_SUBSCRIPTION_DELETED,
            ),
        ],
    )
    async def test_subject_is_the_type_with_underscores(
        self, stripe_gateway, js, stripe_type, subject
    ):
        body = orjson.dumps(stripe_event("evt_subject", stripe_type))

        response = await post(stripe_gateway, body, sign(body))

        assert response.status_code == 200
        msg = await js.get_last_msg(Stream.BILLING, subject.value)
        assert StripeEventReceived.model_validate_json(msg.data).type == stripe_type

    async def test_two_v1_signatures_with_one_valid_are_accepted(
        self, stripe_gateway, js
    ):
        body = orjson.dumps(stripe_event("evt_rolled"))
        t = int(time.time())
        old = sign(body, secret="whsec_previous", timestamp=t).split("v1=")[1]
        header = f"t={t},v1={old},{sign(body, timestamp=t).split(',')[1]}"

        response = await post(stripe_gateway, body, header)

        assert response.status_code == 200
        assert await stream_size(js, Stream.BILLING) == 1

    @pytest.mark.parametrize(
        "case",
        ["wrong_secret", "reserialised_body", "stale", "future", "missing", "v0_only"],
    )
    async def test_bad_signatures_are_rejected_and_nothing_is_published(
        self, stripe_gateway, js, case
    ):
        event = stripe_event(f"evt_{case}")
        body = orjson.dumps(event)
        now = int(time.time())
        signature: str | None
        if case == "wrong_secret":
            signature = sign(body, secret="whsec_someone_else")
        elif case == "reserialised_body":
            # Same JSON value, other bytes: what a framework's parse+dump gives.
            signature = sign(body)
            body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
        elif case == "stale":
            signature = sign(body, timestamp=now - 301)
        elif case == "future":
            signature = sign(body, timestamp=now + 3600)
        elif case == "missing":
            signature = None
        else:
            signature = sign(body).replace("v1=", "v0=")

        response = await post(stripe_gateway, body, signature)

        assert response.status_code == 403
        assert api_error(response)["code"] == "INVALID_SIGNATURE"
        assert await stream_size(js, Stream.BILLING) == 0

    async def test_unknown_types_are_acknowledged_and_dropped(self, stripe_gateway, js):
        body = orjson.dumps(stripe_event("evt_unknown", "charge.refunded"))

        response = await post(stripe_gateway, body, sign(body))

        assert response.status_code == 200
        assert response.json() == {"received": True, "queued": False}
        assert await stream_size(js, Stream.BILLING) == 0

    async def test_signed_body_that_is_not_an_event_is_400(self, stripe_gateway, js):
        body = b'{"hello": "world"}'

        response = await post(stripe_gateway, body, sign(body))

        assert response.status_code == 400
        assert api_error(response)["code"] == "INVALID_EVENT"
        assert await stream_size(js, Stream.BILLING) == 0

    async def test_empty_secret_fails_closed(self, start_gateway, js):
        body = orjson.dumps(stripe_event("evt_no_secret"))
        async with start_gateway(stripe_webhook_secret="") as gw:
            # Signed with the empty key, the one an attacker would use.
            response = await post(gw, body, sign(body, secret=""))

        assert response.status_code == 403
        assert api_error(response)["code"] == "STRIPE_NOT_CONFIGURED"
        assert await stream_size(js, Stream.BILLING) == 0

    async def test_publish_failure_answers_503_so_stripe_retries(
        self, stripe_gateway, js
    ):
        await js.delete_stream(Stream.BILLING)
        body = orjson.dumps(stripe_event("evt_no_stream"))

        response = await post(stripe_gateway, body, sign(body))

        assert response.status_code == 503
        assert api_error(response)["code"] == "PUBLISH_FAILED"

    async def test_secret_and_signature_never_reach_the_logs(
        self, stripe_gateway, caplog
    ):
        body = orjson.dumps(stripe_event("evt_logs"))
        good, bad = sign(body), sign(body, secret="whsec_wrong")

        with caplog.at_level("DEBUG"):
            assert (await post(stripe_gateway, body, good)).status_code == 200
            assert (await post(stripe_gateway, body, bad)).status_code == 403

        events = [r.getMessage() for r in caplog.records]
        assert "gateway.stripe.accepted" in events
        assert "gateway.stripe.rejected" in events
        # Messages and every structured field of every record.
        text = caplog.text + "".join(str(vars(r)) for r in caplog.records)
        assert SECRET not in text
        assert good.split("v1=")[1] not in text
        assert bad.split("v1=")[1] not in text
