import io
import json
import logging
import subprocess
import sys

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
    def test_a_captured_line_shows_the_fields_with_secrets_redacted(self, caplog):
        get_logger("fields-formatter-test").warning(
            "messaging.assistant.failed",
            error="assistant unreachable: ServerDisconnectedError",
            gateway_token="t0p",
        )
        (record,) = caplog.records
        line = FieldsFormatter(logging.Formatter("%(levelname)s %(message)s")).format(
            record
        )
        assert line.startswith("WARNING messaging.assistant.failed ")
        assert "error='assistant unreachable: ServerDisconnectedError'" in line
        assert "gateway_token='[redacted]'" in line
        assert "t0p" not in line


def test_pytest_shows_the_fields_in_a_failed_tests_log(request):
    handler = request.config.pluginmanager.get_plugin("logging-plugin").report_handler
    assert isinstance(handler.formatter, FieldsFormatter)


def test_a_failed_tests_report_names_the_error(tmp_path):
    (tmp_path / "test_fails.py").write_text(
        "from yourclaw_common.logging import get_logger\n"
        "def test_fails():\n"
        "    get_logger('x').warning('turn.failed', error='boom', proxy_token='s' + '3c')\n"
        "    assert False\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "yourclaw_common.testing.plugin",
         "-p", "no:cacheprovider", "-q", str(tmp_path / "test_fails.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "turn.failed error='boom' proxy_token='[redacted]'" in run.stdout
    assert "s3c" not in run.stdout
