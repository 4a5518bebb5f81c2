"""docker-compose.yml and the images: what an operator gets from `docker compose up`."""

import importlib.util
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from yourclaw_host_agent.install_openclaw import OPENCLAW_VERSION
from yourclaw_provisioner.render import PLAYWRIGHT_MCP_COMMAND

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = ["gateway-api", "messaging", "billing", "provisioner", "host-agent"]
WORKERS = ["messaging", "billing", "provisioner", "host-agent"]
SECRET = re.compile(r"(TOKEN|SECRET|PASSWORD|_KEY)$")


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose missing: `make system-tools` installs it"
    with tempfile.NamedTemporaryFile(suffix=".env") as empty:
        return subprocess.run(
            # An empty env file: a developer's .env must not make this pass.
            [exe, "--env-file", empty.name, "-f", str(COMPOSE), "config"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", **env},
        )


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose_config(ENCRYPTION_KEY="test-key")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid(config):
    assert set(config["services"]) >= {
        *SERVICES,
        "web",
        "nats",
        "postgres",
        "prometheus",
        "grafana",
    }


def test_the_encryption_key_must_come_from_the_environment():
    result = compose_config()
    assert result.returncode != 0
    assert "ENCRYPTION_KEY" in result.stderr


def test_secrets_are_referenced_never_written_in_the_file():
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET.search(key) and key != "GF_SECURITY_ADMIN_USER":
                assert str(value).startswith("${"), f"{name}: {key} is inlined"


def test_every_service_is_restarted_and_health_checked(config):
    # A crashed service comes back by itself (issue 17: supervision); what
    # others wait on for `service_healthy` has a healthcheck in the file, the
    # images of our own services carry theirs (HEALTHCHECK, tested below).
    for name, service in config["services"].items():
        assert service.get("restart") == "unless-stopped", name
    for name in ("nats", "postgres"):
        check = config["services"][name]["healthcheck"]
        assert check["test"][0] == "CMD"
        assert int(check["retries"]) >= 3
    for name in SERVICES:
        for dependency in config["services"][name]["depends_on"].values():
            assert dependency["condition"] == "service_healthy", name


def test_jetstream_persists_to_a_volume(config):
    nats = config["services"]["nats"]
    assert "-js" in nats["command"]
    assert "/data" in _mount_targets(nats)


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_serves_metrics_where_prometheus_scrapes(config, name):
    env = config["services"][name]["environment"]
    assert int(env["METRICS_PORT"]) > 0
    assert env["METRICS_HOST"] == "0.0.0.0"
    targets = _scrape_targets()
    assert f"{name}:{env['METRICS_PORT']}" in targets[f"yourclaw-{name}"]


def test_prometheus_scrapes_the_api_on_its_port(config):
    port = config["services"]["gateway-api"]["environment"]["API_PORT"]
    assert f"gateway-api:{port}" in _scrape_targets()["yourclaw-gateway-api"]


def test_host_agent_drives_the_engine_with_the_docker_runtime(config):
    agent = config["services"]["host-agent"]
    assert agent["environment"]["HOST_RUNTIME"] == "docker"
    assert "/var/run/docker.sock" in _mount_targets(agent)


def test_grafana_gets_its_datasource_and_dashboards(config):
    mounts = _mount_targets(config["services"]["grafana"])
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= mounts


@pytest.mark.parametrize("name", SERVICES)
def test_service_image_is_multi_stage_non_root_with_healthcheck(config, name):
    build = config["services"][name]["build"]
    dockerfile = (Path(build["context"]) / build["dockerfile"]).read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    assert "uv sync --frozen --no-dev" in dockerfile
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user
    assert user[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
    module = "yourclaw_" + name.replace("-", "_")
    entry = re.search(r"^ENTRYPOINT \[(.*)\]", dockerfile, re.M)
    assert entry
    assert f'"python", "-m", "{module}"' in entry.group(1)
    assert importlib.util.find_spec(module) is not None


def test_web_image_is_the_standalone_next_build():
    dockerfile = (ROOT / "deploy/web/Dockerfile").read_text()
    assert ".next/standalone" in dockerfile
    assert re.search(r"^USER node", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)


def test_tenant_image_pins_the_openclaw_the_host_agent_expects():
    dockerfile = (ROOT / "deploy/openclaw/Dockerfile").read_text()
    assert re.search(r"^ARG NODE_IMAGE=node:24-", dockerfile, re.M)
    assert f"ARG OPENCLAW_VERSION={OPENCLAW_VERSION}\n" in dockerfile
    assert re.search(r"^ARG PLAYWRIGHT_MCP_VERSION=\d+\.\d+\.\d+$", dockerfile, re.M)
    assert "chromium" in dockerfile
    assert re.search(r"^USER node$", dockerfile, re.M)  # 1000:1000
    # The runtime starts `node dist/index.js gateway …` in /app on port 18789.
    assert re.search(r"^WORKDIR /app$", dockerfile, re.M)
    assert "EXPOSE 18789" in dockerfile
    assert not re.search(r"docker(-ce)?-cli|docker\.io", dockerfile)


def test_tenant_image_has_the_browser_tools_the_rendered_config_starts():
    dockerfile = (ROOT / "deploy/openclaw/Dockerfile").read_text()
    # render.py starts this command as the `playwright` MCP server.
    assert f"/usr/local/bin/{PLAYWRIGHT_MCP_COMMAND}" in dockerfile
    assert "/usr/bin/chromium" in dockerfile


def _scrape_targets() -> dict[str, list[str]]:
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in prom["scrape_configs"]
    }


def _mount_targets(service: dict) -> set[str]:
    # Compose v1 prints `source:target:mode`; v2 prints mappings.
    return {
        v["target"] if isinstance(v, dict) else v.split(":")[1]
        for v in service.get("volumes", [])
    }
