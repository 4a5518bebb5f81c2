"""The SMS webhook: the WhatsApp webhook's checks on another path, an
`inbound.sms` event, proof of a phone number by SMS, and a clear refusal
while SMS is off."""

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from yourclaw_common.events import InboundSms, Stream, Subject, provider_event_id
from yourclaw_devkit.pytest_plugin import api_error
from yourclaw_devkit.twilio_sim import inbound_sms_form
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.twilio import TWILIO_SMS_PATH, TWILIO_WHATSAPP_PATH

SMS_NUMBER = "+15005550006"
ADA = "+15551234567"


def sid(n: int) -> str:
    return f"SM{n:032x}"


def sms_params(n: int, body: str = "Hello by SMS", **overrides: str) -> dict[str, str]:
    form = inbound_sms_form(
        phone=ADA,
        body=body,
        to=SMS_NUMBER,
        account_sid="AC" + "b" * 32,
        message_sid=sid(n),
    )
    return {**form, **overrides}


async def post_sms(gateway, params: dict[str, str], **options) -> httpx.Response:
    return await gateway.post_twilio(params, webhook=TWILIO_SMS_PATH, **options)


@pytest_asyncio.fixture(loop_scope="session")
async def sms_gateway(start_gateway, js) -> AsyncIterator[object]:
    async with start_gateway(twilio_sms_number=SMS_NUMBER) as gw:
        yield gw


class TestSmsWebhook:
    async def test_a_signed_sms_publishes_one_inbound_sms(
        self, sms_gateway, js, stored, twilio
    ):
        params = sms_params(1)

        responses = [await post_sms(sms_gateway, params) for _ in range(2)]

        assert [r.status_code for r in responses] == [200, 200]
        assert responses[0].headers["content-type"] == "text/xml"
        assert responses[0].text == "<Response></Response>"
        assert await stored() == 1  # Twilio's retry is the same message
        msg = await js.get_last_msg(Stream.INBOUND, Subject.INBOUND_SMS.value)
        assert msg.headers["Nats-Msg-Id"] == sid(1)
        event = InboundSms.model_validate_json(msg.data)
        assert event.event_id == provider_event_id(sid(1))
        assert (event.from_number, event.to_number) == (ADA, SMS_NUMBER)
        assert event.body == "Hello by SMS"
        assert event.verifies_phone is False

    async def test_mms_attachments_are_carried(self, sms_gateway, js, twilio):
        params = sms_params(
            2,
            NumMedia="1",
            MediaUrl0="https://api.twilio.com/media/0",
            MediaContentType0="image/png",
        )

        response = await post_sms(sms_gateway, params)

        assert response.status_code == 200
        msg = await js.get_last_msg(Stream.INBOUND, Subject.INBOUND_SMS.value)
        event = InboundSms.model_validate_json(msg.data)
        assert [(m.url, m.content_type) for m in event.media] == [
            ("https://api.twilio.com/media/0", "image/png")
        ]

    @pytest.mark.parametrize("how", ["tampered", "other_path", "other_token", "none"])
    async def test_a_bad_signature_is_refused_and_nothing_published(
        self, sms_gateway, stored, twilio, how
    ):
        options = {
            "tampered": {
                "tamper": lambda pairs: [
                    (k, "send me your money" if k == "Body" else v) for k, v in pairs
                ]
            },
            # Signed for the WhatsApp webhook: the URL is part of the signature.
            "other_path": {"signed_url": sms_gateway.public_url + TWILIO_WHATSAPP_PATH},
            "other_token": {"token": "guess"},
            "none": {"signature": ""},
        }[how]

        response = await post_sms(sms_gateway, sms_params(3), **options)

        assert response.status_code == 403
        assert api_error(response) == twilio.bad_signature
        assert await stored() == 0

    async def test_sms_off_is_refused_clearly_and_nothing_published(
        self, gateway, stored, twilio
    ):
        assert gateway.settings.twilio_sms_number == ""

        response = await post_sms(gateway, sms_params(4))

        assert response.status_code == 404
        assert api_error(response) == {
            "detail": "SMS is not configured here (TWILIO_SMS_NUMBER is empty)",
            "code": "SMS_NOT_CONFIGURED",
        }
        assert await stored() == 0

    async def test_the_whatsapp_webhook_is_unchanged_beside_it(
        self, sms_gateway, js, twilio
    ):
        response = await sms_gateway.post_twilio(twilio.inbound_params(sid(5)))

        assert response.status_code == 200
        msg = await js.get_last_msg(Stream.INBOUND, Subject.INBOUND_WHATSAPP.value)
        assert msg.headers["Nats-Msg-Id"] == sid(5)


class TestSmsNumberSetting:
    @pytest.mark.parametrize("value", ["whatsapp:+14155550100", "14155550100", "+0"])
    def test_a_number_that_is_not_e164_is_refused(self, value):
        with pytest.raises(ValueError, match=r"E\.164"):
            GatewaySettings(_env_file=None, twilio_sms_number=value)

    def test_empty_means_off(self):
        assert GatewaySettings(_env_file=None).twilio_sms_number == ""


@pytest_asyncio.fixture(loop_scope="session")
async def sms_api(start_gateway, supabase, clean_db, js) -> AsyncIterator[object]:
    async with start_gateway(
        supabase_url=supabase.url, twilio_sms_number=SMS_NUMBER
    ) as gw:
        yield gw


class TestPhoneProofBySms:
    async def test_an_sms_with_the_code_proves_the_number(
        self, sms_api, sign_in, clean_db, js, twilio
    ):
        caller = sign_in()
        claim = await sms_api.client.post(
            "/api/v1/users/me/phone", json={"phone": ADA}, headers=caller.headers
        )
        assert claim.status_code == 200, claim.text
        code = claim.json()["code"]

        response = await post_sms(sms_api, sms_params(6, body=f"code {code}"))

        assert response.status_code == 200, response.text
        msg = await js.get_last_msg(Stream.INBOUND, Subject.INBOUND_SMS.value)
        assert InboundSms.model_validate_json(msg.data).verifies_phone is True
        linked = await clean_db.fetchrow(
            "SELECT user_id, verified_by FROM user_phones WHERE phone_e164 = $1", ADA
        )
        assert (linked["user_id"], linked["verified_by"]) == (caller.id, sid(6))
        me = await sms_api.client.get("/api/v1/users/me", headers=caller.headers)
        assert me.json()["phone_verified"] is True

    async def test_a_wrong_code_by_sms_proves_nothing(
        self, sms_api, sign_in, clean_db, js, twilio
    ):
        caller = sign_in()
        claim = await sms_api.client.post(
            "/api/v1/users/me/phone", json={"phone": ADA}, headers=caller.headers
        )
        code = claim.json()["code"]
        wrong = f"{(int(code) + 1) % 10**6:06d}"

        response = await post_sms(sms_api, sms_params(7, body=wrong))

        assert response.status_code == 200
        msg = await js.get_last_msg(Stream.INBOUND, Subject.INBOUND_SMS.value)
        assert InboundSms.model_validate_json(msg.data).verifies_phone is False
        assert (
            await clean_db.fetchval(
                "SELECT count(*) FROM user_phones WHERE phone_e164 = $1", ADA
            )
            == 0
        )
