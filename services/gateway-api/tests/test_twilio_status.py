"""`POST /api/v1/webhooks/twilio/status`: signed exactly like the inbound webhook."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import orjson
import pytest
from twilio.request_validator import RequestValidator
from yourclaw_common.events import InboundWhatsAppStatus, Stream, Subject
from yourclaw_gateway_api.webhooks.twilio import TWILIO_STATUS_PATH


def status_params(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "b" * 32,
        "ApiVersion": "2010-04-01",
        "ChannelPrefix": "whatsapp",
        "From": "whatsapp:+14155238886",
        "To": "whatsapp:+15551234567",
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        **extra,
    }


async def post_status(
    gateway, params, *, token=None, signature=None, tamper=None, query=""
):
    path = TWILIO_STATUS_PATH + (f"?{query}" if query else "")
    url = gateway.public_url + path
    if signature is None:
        signature = RequestValidator(token or gateway.token).compute_signature(
            url, params
        )
    sent = {**params, **(tamper or {})}
    return await gateway.client.post(
        path,
        content=urlencode(sent).encode(),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signature,
        },
    )


class TestTwilioStatusWebhook:
    async def test_nul_character_is_refused(self, gateway, js):
        response = await post_status(
            gateway, status_params("SM" + "2" * 32, "failed", ErrorCode="6\x00")
        )

        assert response.status_code == 400
        assert orjson.loads(response.content)["code"] == "INVALID_CHARACTER"

    async def test_signed_callback_is_published_with_its_error_code(self, gateway, js):
        response = await post_status(
            gateway, status_params("SM" + "1" * 32, "failed", ErrorCode="63016")
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/xml")
        assert response.text == "<Response></Response>"
        msg = await js.get_last_msg(
            Stream.INBOUND, Subject.INBOUND_WHATSAPP_STATUS.value
        )
        event = InboundWhatsAppStatus.model_validate_json(msg.data)
        assert (event.message_sid, event.message_status, event.error_code) == (
            "SM" + "1" * 32,
            "failed",
            "63016",
        )

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            (
                "0b7e9a52-3c1f-4d5e-9f60-1a2b3c4d5e6f",
                "0b7e9a52-3c1f-4d5e-9f60-1a2b3c4d5e6f",
            ),
            ("not-a-uuid", None),
        ],
        ids=["ours", "garbled"],
    )
    async def test_the_message_id_on_the_callback_url_is_passed_on(
        self, gateway, js, given, expected
    ):
        """Messaging names each message on its StatusCallback URL; Twilio signs
        that URL, query included. A garbled id still applies the callback."""
        sid = "SM" + uuid.uuid4().hex
        response = await post_status(
            gateway, status_params(sid, "sent"), query=f"message_id={given}"
        )
        assert response.status_code == 200
        msg = await js.get_last_msg(
            Stream.INBOUND, Subject.INBOUND_WHATSAPP_STATUS.value
        )
        event = InboundWhatsAppStatus.model_validate_json(msg.data)
        assert event.message_sid == sid
        assert (str(event.message_id) if event.message_id else None) == expected

    async def test_retried_callback_is_stored_once(self, gateway, js):
        params = status_params("SM" + "2" * 32, "delivered")
        for _ in range(3):
            assert (await post_status(gateway, params)).status_code == 200
        info = await js.stream_info(Stream.INBOUND)
        assert info.state.messages == 1

    async def test_bad_or_missing_signature_is_403_and_nothing_published(
        self, gateway, js, twilio
    ):
        params = status_params("SM" + "3" * 32, "delivered")
        tampered = await post_status(gateway, params, tamper={"MessageStatus": "read"})
        wrong_key = await post_status(gateway, params, token="not-the-token")
        missing = await post_status(gateway, params, signature="")
        for response in (tampered, wrong_key, missing):
            assert response.status_code == 403
            assert orjson.loads(response.content) == twilio.bad_signature
        info = await js.stream_info(Stream.INBOUND)
        assert info.state.messages == 0

    async def test_signed_but_without_a_sid_is_400(self, gateway, js):
        params = status_params("SM" + "4" * 32, "sent")
        del params["MessageSid"], params["SmsSid"]
        response = await post_status(gateway, params)
        assert response.status_code == 400
        assert orjson.loads(response.content)["code"] == "BAD_REQUEST"

    async def test_unconfigured_token_refuses_everything(self, start_gateway, js):
        async with start_gateway(twilio_auth_token="") as gw:
            response = await post_status(
                gw, status_params("SM" + "5" * 32, "sent"), token="x"
            )
        assert response.status_code == 403
        assert orjson.loads(response.content)["code"] == "TWILIO_NOT_CONFIGURED"
