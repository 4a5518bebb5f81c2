import io
import json
import logging

import pytest
from yourclaw_common.logging import (
    FieldsFormatter,
    bind_correlation_id,
    configure_logging,
    get_logger,
)


@pytest.fixture
def captured():
    configure_logging("test-svc", "DEBUG")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    old = handler.setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    handler.setStream(old)


class TestStructLogger:
    def test_json_line_with_service_event_and_fields(self, captured):
        get_logger("x").info("billing.inbox.duplicate", event_id="e1", attempts=2)
        (line,) = captured()
        assert line["service"] == "test-svc"
        assert line["event"] == "billing.inbox.duplicate"
        assert line["event_id"] == "e1"
        assert line["attempts"] == 2
        assert line["level"] == "info"

    def test_correlation_id_appears_while_bound(self, captured):
        log = get_logger("x")
        with bind_correlation_id("corr-9"):
            log.info("inside")
        log.info("outside")
        inside, outside = captured()
        assert inside["correlation_id"] == "corr-9"
        assert "correlation_id" not in outside

    def test_secret_looking_fields_are_redacted(self, captured):
        get_logger("x").info(
            "e",
            gateway_token="t0p",
            auth_token="t0p",
            api_key="t0p",
            authorization="Bearer t0p",
            twilio_signature="t0p",
            client_secret="t0p",
            session_key="wa:u1",
            dedupe_key="SM1",
            token_count=3,
            key_last4="abcd",
        )
        (line,) = captured()
        assert "t0p" not in json.dumps(line)
        assert line["session_key"] == "wa:u1"
        assert line["dedupe_key"] == "SM1"
        assert line["token_count"] == 3
        assert line["key_last4"] == "abcd"

    def test_exceptions_carry_type_and_trace(self, captured):
        try:
            raise ValueError("boom")
        except ValueError:
            get_logger("x").exception("failed")
        (line,) = captured()
        assert line["exc_type"] == "ValueError"
        assert "boom" in line["exc"]


class TestFieldsFormatter:
    def test_a_captured_line_shows_the_fields_with_secrets_redacted(self):
        records: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)

        logger = logging.getLogger("fields-formatter-test")
        keep = Keep()
        logger.addHandler(keep)
        try:
            get_logger("fields-formatter-test").warning(
                "messaging.assistant.failed",
                error="assistant unreachable: ServerDisconnectedError",
                gateway_token="t0p",
            )
        finally:
            logger.removeHandler(keep)
        (record,) = records
        line = FieldsFormatter("%(levelname)s %(message)s").format(record)
        assert line.startswith("WARNING messaging.assistant.failed ")
        assert "error='assistant unreachable: ServerDisconnectedError'" in line
        assert "gateway_token='[redacted]'" in line
        assert "t0p" not in line


def test_pytest_shows_the_fields_in_a_failed_tests_log(request):
    handler = request.config.pluginmanager.get_plugin("logging-plugin").report_handler
    assert isinstance(handler.formatter, FieldsFormatter)
