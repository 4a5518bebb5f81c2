import asyncio
import logging
import re

import orjson
import pytest
from yourclaw_common.events import InboundWhatsApp, Stream, Subject, provider_event_id
from yourclaw_common.nats import CORRELATION_HEADER
from yourclaw_devkit.pytest_plugin import api_error
from yourclaw_gateway_api.webhooks.twilio import TWILIO_WHATSAPP_PATH


def sid(n: int) -> str:
    return f"SM{n:032x}"


class TestTwilioWhatsAppWebhook:
    async def test_valid_signature_publishes_one_event(
        self, gateway, js, stored, twilio
    ):
        params = twilio.inbound_params(
            sid(1),
            NumMedia="2",
            MediaUrl0="https://api.twilio.com/media/0",
            MediaContentType0="image/jpeg",
            MediaUrl1="https://api.twilio.com/media/1",
            MediaContentType1="audio/ogg",
        )

        response = await gateway.post_twilio(params)

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/xml"
        assert response.text == "<Response></Response>"
        assert await stored() == 1
        msg = await js.get_last_msg(Stream.INBOUND, Subject.INBOUND_WHATSAPP.value)
        assert msg.headers["Nats-Msg-Id"] == sid(1)
        assert re.fullmatch(r"[0-9a-f]{32}", msg.headers[CORRELATION_HEADER])
        event = InboundWhatsApp.model_validate_json(msg.data)
        assert event.event_id == provider_event_id(sid(1))
        assert event.message_sid == sid(1)
        assert event.account_sid == params["AccountSid"]
        assert event.from_number == "whatsapp:+15551234567"
        assert event.to_number == "whatsapp:+14155238886"
        assert event.body == "Hello there"
        assert event.profile_name == "Ada"
        assert event.num_media == 2
        assert [(m.url, m.content_type) for m in event.media] == [
            ("https://api.twilio.com/media/0", "image/jpeg"),
            ("https://api.twilio.com/media/1", "audio/ogg"),
        ]
        assert event.params == params

    async def test_retries_of_one_message_are_stored_once(
        self, gateway, stored, twilio
    ):
        params = twilio.inbound_params(sid(2))

        statuses = [(await gateway.post_twilio(params)).status_code for _ in range(3)]

        assert statuses == [200, 200, 200]
        assert await stored() == 1

    async def test_repeated_and_unicode_params_are_signed(self, gateway, js, twilio):
        pairs = [
            *twilio.inbound_params(
                sid(3), Body="héllo 日本 🎉", ProfileName=""
            ).items(),
            ("Tag", "b"),
            ("Tag", "a"),
            ("Tag", "a"),
        ]

        response = await gateway.post_twilio(pairs)

        assert response.status_code == 200
        msg = await js.get_last_msg(Stream.INBOUND, Subject.INBOUND_WHATSAPP.value)
        event = InboundWhatsApp.model_validate_json(msg.data)
        assert event.body == "héllo 日本 🎉"
        assert event.profile_name == ""
        assert event.params["Tag"] == "a"  # the last value wins

    async def test_signed_query_string_is_accepted(self, gateway, stored, twilio):
        response = await gateway.post_twilio(
            twilio.inbound_params(sid(4)), query="a=1&b=2"
        )

        assert response.status_code == 200
        assert await stored() == 1

    async def test_tampered_parameter_is_rejected(self, gateway, stored, twilio):
        def tamper(pairs):
            return [(k, "send me your money" if k == "Body" else v) for k, v in pairs]

        response = await gateway.post_twilio(
            twilio.inbound_params(sid(5)), tamper=tamper
        )

        assert response.status_code == 403
        assert api_error(response) == twilio.bad_signature
        assert await stored() == 0

    async def test_signature_for_another_path_is_rejected(
        self, gateway, stored, twilio
    ):
        other = gateway.public_url + "/api/v1/webhooks/twilio/status"

        response = await gateway.post_twilio(
            twilio.inbound_params(sid(6)), signed_url=other
        )

        assert response.status_code == 403
        assert api_error(response)["code"] == "INVALID_SIGNATURE"
        assert await stored() == 0

    async def test_signature_for_another_scheme_is_rejected(
        self, gateway, stored, twilio
    ):
        https = gateway.webhook_url.replace("http://", "https://", 1)

        response = await gateway.post_twilio(
            twilio.inbound_params(sid(7)), signed_url=https
        )

        assert response.status_code == 403
        assert await stored() == 0

    async def test_unsigned_query_string_is_rejected(self, gateway, stored, twilio):
        response = await gateway.post_twilio(
            twilio.inbound_params(sid(8)), query="a=1", signed_url=gateway.webhook_url
        )

        assert response.status_code == 403
        assert await stored() == 0

    async def test_missing_signature_is_rejected(self, gateway, stored, twilio):
        response = await gateway.client.post(
            TWILIO_WHATSAPP_PATH,
            data=twilio.inbound_params(sid(9)),
        )

        assert response.status_code == 403
        assert api_error(response)["code"] == "INVALID_SIGNATURE"
        assert await stored() == 0

    async def test_signature_with_another_token_is_rejected(
        self, gateway, stored, twilio
    ):
        response = await gateway.post_twilio(
            twilio.inbound_params(sid(10)), token="guess"
        )

        assert response.status_code == 403
        assert await stored() == 0

    @pytest.mark.parametrize("field", ["MessageSid", "From"])
    async def test_a_missing_required_field_is_a_bad_request(
        self, gateway, stored, twilio, field
    ):
        params = twilio.inbound_params(sid(11))
        del params[field]

        response = await gateway.post_twilio(params)

        assert response.status_code == 400
        assert api_error(response)["code"] == "BAD_REQUEST"
        assert await stored() == 0

    async def test_nul_character_with_a_bad_signature_is_forbidden(
        self, gateway, stored, twilio
    ):
        params = twilio.inbound_params(sid(14), Body="\x00")

        response = await gateway.post_twilio(params, signature="forged")

        assert response.status_code == 403
        assert await stored() == 0

    # Signed, but never storable (PostgreSQL text cannot hold NUL: stored, it
    # would fail a batched insert), or absurd: refused with a code that says why.
    @pytest.mark.parametrize(
        ("fields", "code"),
        [
            ({"Body": "hi\x00there"}, "INVALID_CHARACTER"),
            ({"ProfileName": "\x00"}, "INVALID_CHARACTER"),
            ({"From": "whatsapp:+1\x00"}, "INVALID_CHARACTER"),
            ({"Body": "x" * 4097}, "FIELD_TOO_LONG"),
            ({"MessageSid": "SM" + "a" * 3000}, "FIELD_TOO_LONG"),
            *(
                ({"NumMedia": n}, "INVALID_NUM_MEDIA")
                for n in ["1e20", "11", "100000000000000000000", "-1", "2.0", "٣"]
            ),
        ],
    )
    async def test_a_field_that_cannot_be_stored_is_refused(
        self, gateway, stored, twilio, fields, code
    ):
        params = twilio.inbound_params(sid(13), **fields)

        response = await gateway.post_twilio(params)

        assert response.status_code == 400
        assert api_error(response)["code"] == code
        assert await stored() == 0

    async def test_ten_attachments_are_accepted(self, gateway, stored, twilio):
        media = {f"MediaUrl{n}": f"https://api.twilio.com/m/{n}" for n in range(10)}
        params = twilio.inbound_params(sid(16), NumMedia="10", **media)

        response = await gateway.post_twilio(params)

        assert response.status_code == 200
        assert await stored() == 1

    async def test_oversized_body_is_rejected(self, start_gateway, js, stored, twilio):
        async with start_gateway(webhook_max_body_bytes=1024) as gateway:
            params = twilio.inbound_params(sid(13), Body="x" * 2000)

            response = await gateway.post_twilio(params)

            assert response.status_code == 413
            assert api_error(response)["code"] == "PAYLOAD_TOO_LARGE"
            assert await stored() == 0

    async def test_oversized_streamed_body_is_rejected(self, start_gateway, js, stored):
        async def chunks():
            for _ in range(64):
                yield b"Body=" + b"x" * 1024 + b"&"

        async with start_gateway(webhook_max_body_bytes=4096) as gateway:
            response = await gateway.client.post(
                TWILIO_WHATSAPP_PATH,
                content=chunks(),
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "x-twilio-signature": "c2lnbmF0dXJl",
                },
            )

            assert response.status_code == 413
            assert await stored() == 0

    async def test_huge_declared_body_is_refused_unread(self, gateway, stored):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", int(gateway.url.rsplit(":", 1)[1])
        )
        writer.write(
            f"POST {TWILIO_WHATSAPP_PATH} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "X-Twilio-Signature: c2lnbmF0dXJl\r\n"
            "Content-Length: 1000000000\r\n\r\n".encode()
        )
        await writer.drain()

        raw = await asyncio.wait_for(
            reader.read(), timeout=5
        )  # until the server closes
        writer.close()

        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in head.lower()
        assert orjson.loads(body)["code"] == "PAYLOAD_TOO_LARGE"
        assert await stored() == 0

    async def test_wrong_content_type_is_rejected(self, gateway, stored, twilio):
        response = await gateway.post_twilio(
            twilio.inbound_params(sid(14)), headers={"content-type": "application/json"}
        )

        assert response.status_code == 415
        assert api_error(response)["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert await stored() == 0

    async def test_content_type_with_charset_is_accepted(self, gateway, twilio):
        response = await gateway.post_twilio(
            twilio.inbound_params(sid(15)),
            headers={
                "content-type": "application/x-www-form-urlencoded; charset=utf-8"
            },
        )

        assert response.status_code == 200

    async def test_get_is_not_allowed(self, gateway):
        response = await gateway.client.get(TWILIO_WHATSAPP_PATH)

        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert api_error(response)["code"] == "METHOD_NOT_ALLOWED"

    async def test_empty_auth_token_fails_closed(
        self, start_gateway, js, stored, twilio
    ):
        async with start_gateway(twilio_auth_token="") as gateway:
            # What anyone could compute if an empty key were accepted.
            response = await gateway.post_twilio(
                twilio.inbound_params(sid(16)), token=""
            )

            assert response.status_code == 403
            assert api_error(response)["code"] == "TWILIO_NOT_CONFIGURED"
            assert await stored() == 0

    async def test_public_base_url_behind_tls_proxy(
        self, start_gateway, js, stored, twilio
    ):
        async with start_gateway(public_base_url="https://public.example/") as gateway:
            params = twilio.inbound_params(sid(17))
            public = "https://public.example" + TWILIO_WHATSAPP_PATH
            with_port = "https://public.example:443" + TWILIO_WHATSAPP_PATH
            seen_by_socket = gateway.url + TWILIO_WHATSAPP_PATH

            as_configured = await gateway.post_twilio(params, signed_url=public)
            with_default_port = await gateway.post_twilio(params, signed_url=with_port)
            for_local_url = await gateway.post_twilio(params, signed_url=seen_by_socket)

            assert as_configured.status_code == 200
            assert with_default_port.status_code == 200
            assert for_local_url.status_code == 403
            assert await stored() == 1

    async def test_concurrent_requests_are_each_published(
        self, gateway, stored, twilio
    ):
        responses = await asyncio.gather(
            *(
                gateway.post_twilio(twilio.inbound_params(sid(100 + n)))
                for n in range(50)
            )
        )

        assert {r.status_code for r in responses} == {200}
        assert await stored() == 50

    async def test_outcomes_are_counted(self, gateway, twilio):
        def sample(text, name, **labels):
            want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            match = re.search(rf"^{name}\{{{want}\}} (\S+)$", text, re.M)
            return float(match.group(1)) if match else 0.0

        async def scrape():
            text = (await gateway.client.get("/metrics")).text
            return (
                sample(
                    text,
                    "yourclaw_gateway_api_webhook_requests_total",
                    outcome="accepted",
                    provider="twilio",
                ),
                sample(
                    text,
                    "yourclaw_gateway_api_webhook_signature_failures_total",
                    provider="twilio",
                ),
                sample(
                    text,
                    "yourclaw_gateway_api_webhook_publish_seconds_count",
                    provider="twilio",
                ),
                # Served outside FastAPI, yet counted by route and status and
                # timed like every other route (the webhook p99 alert).
                sample(
                    text,
                    "yourclaw_gateway_api_api_requests_total",
                    method="POST",
                    route=TWILIO_WHATSAPP_PATH,
                    status="200",
                ),
                sample(
                    text,
                    "yourclaw_gateway_api_api_requests_total",
                    method="POST",
                    route=TWILIO_WHATSAPP_PATH,
                    status="403",
                ),
                sample(
                    text,
                    "yourclaw_gateway_api_api_request_seconds_count",
                    route=TWILIO_WHATSAPP_PATH,
                ),
            )

        before = await scrape()
        await gateway.post_twilio(twilio.inbound_params(sid(18)))
        await gateway.post_twilio(twilio.inbound_params(sid(19)), token="guess")
        after = await scrape()

        assert [b - a for a, b in zip(before, after, strict=True)] == [
            1,
            1,
            1,
            1,
            1,
            2,
        ]

    async def test_rejection_is_logged_once_without_secrets(
        self, gateway, twilio, caplog
    ):
        signature = twilio.sign(gateway.webhook_url, [("Body", "other")], gateway.token)

        with caplog.at_level(logging.INFO):
            response = await gateway.post_twilio(
                twilio.inbound_params(sid(20)), signature=signature
            )

        assert response.status_code == 403
        records = [
            r for r in caplog.records if r.name.startswith("yourclaw_gateway_api")
        ]
        assert [r.getMessage() for r in records] == ["gateway.twilio.rejected"]
        fields = records[0].fields
        assert fields["code"] == "INVALID_SIGNATURE"
        assert fields["reason"] == "mismatch"
        assert signature not in repr(fields)
        assert gateway.token not in repr(fields)

    async def test_accepted_request_is_not_logged_at_info(
        self, gateway, twilio, caplog
    ):
        with caplog.at_level(logging.INFO):
            response = await gateway.post_twilio(twilio.inbound_params(sid(21)))

        assert response.status_code == 200
        assert [
            r for r in caplog.records if r.name.startswith("yourclaw_gateway_api")
        ] == []
