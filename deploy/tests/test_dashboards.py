"""Grafana dashboards and alert rules query only what the services export.

The static tests check the dashboards load in Grafana (provisioned datasource,
valid PromQL). The end-to-end test starts the whole product as `make up` does
(every service in its own process), sends a WhatsApp message through it,
scrapes every service's /metrics, and checks that every metric named in a
dashboard or an alert rule is one of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from yourclaw_common.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


_NAME = re.compile(r"\byourclaw_[a-z0-9_]+")
_NAME_REGEX = re.compile(r'__name__=~"([^"]+)"')


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target of every dashboard."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def alert_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(f"alert {r['alert']}", r["expr"]) for g in groups for r in g["rules"]]


def referenced(expr: str) -> tuple[set[str], set[str]]:
    """Metric names in a query, and the `__name__` regexes it selects with."""
    regexes = set(_NAME_REGEX.findall(expr))
    plain = set(_NAME.findall(_NAME_REGEX.sub("", expr)))
    return plain, regexes


class TestDashboardFiles:
    def test_the_four_dashboards_exist_with_unique_uids(self):
        names = {p.stem for p in DASHBOARDS}
        assert names == {"platform-overview", "messaging-pipeline", "fleet", "billing"}
        uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
        assert len(set(uids)) == len(uids)

    def test_panels_use_the_provisioned_datasource(self):
        provisioned = yaml.safe_load(
            (GRAFANA / "provisioning/datasources/prometheus.yml").read_text()
        )["datasources"]
        (datasource,) = provisioned
        for path in DASHBOARDS:
            for panel in json.loads(path.read_text())["panels"]:
                assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
                assert panel["targets"], panel["title"]

    def test_dashboards_are_provisioned_from_the_mounted_folder(self):
        provider = yaml.safe_load(
            (GRAFANA / "provisioning/dashboards/yourclaw.yml").read_text()
        )["providers"][0]
        assert provider["options"]["path"] == "/var/lib/grafana/dashboards"

    def test_every_query_is_valid_promql(self, tmp_path):
        """promtool parses each query as a recording rule."""
        rules = {
            "groups": [
                {
                    "name": "dashboards",
                    "rules": [
                        {"record": f"dashboard:query_{i}:value", "expr": expr}
                        for i, (_, expr) in enumerate(dashboard_queries())
                    ],
                }
            ]
        }
        path = tmp_path / "dashboard-queries.yml"
        path.write_text(yaml.safe_dump(rules))
        exe = shutil.which("promtool")
        assert exe, "promtool missing: `make system-tools` installs it"
        result = subprocess.run(
            [exe, "check", "rules", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_issue_s_panels_are_there(self):
        exprs = " ".join(expr for _, expr in dashboard_queries())
        for wanted in (
            "yourclaw_gateway_api_api_request_seconds_bucket",  # webhook p99
            "yourclaw_messaging_assistant_turn_seconds_bucket",  # turn latency
            "consumer_pending_messages",  # lag
            "event_redeliveries_total",
            "dead_letter_messages",  # DLQ
            "yourclaw_provisioner_host_capacity",
            "yourclaw_provisioner_jobs_total",  # funnel and failures
            "yourclaw_billing_subscriptions",
            "yourclaw_billing_stripe_events_total",
        ):
            assert wanted in exprs, wanted


def _exported(text: str) -> set[str]:
    """Sample names a /metrics page can carry, from its TYPE lines (families
    without samples yet included)."""
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        elif kind == "summary":
            names |= {family, f"{family}_sum", f"{family}_count"}
        else:
            names.add(family)
    return names


class _Output:
    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        assert proc.stdout is not None
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, marker: str, proc: subprocess.Popen[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "".join(self.lines)
            if marker in text:
                return text
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{marker!r} not seen:\n{''.join(self.lines)[-4000:]}")


def _dev(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "yourclaw_devkit.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def exported_by_service(tmp_path_factory) -> dict[str, set[str]]:
    """`make up`, one WhatsApp round trip, then every service's /metrics."""
    tmp = tmp_path_factory.mktemp("up")
    os.chmod(tmp, 0o755)  # the embedded PostgreSQL user must reach .data/
    api_port, devsim_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NATS_URL", "DATABASE_URL", "PYTEST_XDIST_WORKER")
    }
    env.update(
        API_PORT=str(api_port),
        DEVSIM_PORT=str(devsim_port),
        WEB_PORT=str(free_port()),
        LLM_PROXY_PORT=str(free_port()),
        # No spare OpenClaw booting beside the other tests: the metrics are
        # the same without it.
        WARM_POOL_SIZE="0",
        PYTHONUNBUFFERED="1",
        # Dev sign-in and the stand-ins need it (what `make up` sets).
        YOURCLAW_ENV="dev",
        # The openclaw `make test` installed (`make openclaw`), as `make up` in
        # the repository finds it: no second npm install from the temp dir.
        OPENCLAW_INSTALL_DIR=str(ROOT / ".tools" / "openclaw"),
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "yourclaw_devkit.up"],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = _Output(up).wait_for("YourClaw is running", up, timeout=180)
        workers = dict(
            re.findall(r"^\s+(\S+)\s+metrics/health on (http://\S+)$", banner, re.M)
        )
        assert set(workers) >= {"messaging", "billing", "provisioner", "host-agent"}
        _dev(["register", "--phone", "+15551234567"], tmp, env)
        sent = _dev(["send", "--from", "+15551234567", "metrics please"], tmp, env)
        assert "Echo: metrics please" in sent
        pages = {"gateway-api": f"http://127.0.0.1:{api_port}/metrics"}
        pages |= {name: f"{url}/metrics" for name, url in workers.items()}
        exported = {}
        for name, url in pages.items():
            response = httpx.get(url, timeout=10)
            assert response.status_code == 200, name
            exported[name] = _exported(response.text)
        return exported
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(10)


@pytest.mark.slow
class TestQueriesUseExportedMetrics:
    def test_each_service_exports_under_its_own_prefix(self, exported_by_service):
        for service, names in exported_by_service.items():
            prefix = "yourclaw_" + service.replace("-", "_") + "_"
            ours = {n for n in names if n.startswith("yourclaw_")}
            assert ours, f"{service} exports no yourclaw_ metric"
            assert all(n.startswith(prefix) for n in ours), service

    def test_workers_export_the_runner_metrics(self, exported_by_service):
        for service in ("messaging", "billing", "provisioner"):
            prefix = "yourclaw_" + service
            for what in (
                "consumer_pending_messages",
                "dead_letter_messages",
                "events_dead_lettered_total",
                "event_redeliveries_total",
                "event_handler_seconds_bucket",
            ):
                assert f"{prefix}_{what}" in exported_by_service[service]

    @pytest.mark.parametrize(
        ("where", "expr"),
        [*dashboard_queries(), *alert_queries()],
        ids=lambda value: value if len(value) < 60 else None,
    )
    def test_query_names_only_exported_metrics(self, exported_by_service, where, expr):
        exported = set().union(*exported_by_service.values())
        plain, regexes = referenced(expr)
        missing = plain - exported
        assert not missing, f"{where} queries {sorted(missing)}: not exported"
        for regex in regexes:
            matching = {n for n in exported if re.fullmatch(regex, n)}
            assert matching, f"{where}: no exported metric matches {regex!r}"
