"""The alert rules an operator is paged by: valid for Prometheus, unit-tested
with promtool, each with a runbook section."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool missing: `make system-tools` installs it (package prometheus)"
    return subprocess.run(
        [exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def alerts() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_alert_rules_pass_promtool_check():
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid_and_loads_the_rules():
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rule_unit_tests_pass():
    result = promtool("test", "rules", str(PROMETHEUS / "tests" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dlq_and_consumer_lag_alerts_are_unit_tested():
    suite = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    tested = {
        case["alertname"]
        for test in suite["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")  # a case where it must fire, not only stay quiet
    }
    assert {"DeadLetterQueueNotEmpty", "ConsumerLagGrowing"} <= tested


def test_the_issue_s_alerts_exist():
    names = {rule["alert"] for rule in alerts()}
    assert {
        "WebhookLatencyHigh",
        "ConsumerLagGrowing",
        "DeadLetterQueueNotEmpty",
        "ProvisioningFailureRatio",
        "HostDown",
        "NoHeartbeats",
        "TwilioErrorRate",
        "StripeSignatureFailures",
    } <= names


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_runbook_section(rule):
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(), re.M)
    assert rule["alert"] in headings, f"docs/runbook.md has no '## {rule['alert']}'"
    assert rule["annotations"]["runbook_url"] == (
        f"docs/runbook.md#{rule['alert'].lower()}"
    )
    assert rule["labels"]["severity"] in {"page", "warning"}
