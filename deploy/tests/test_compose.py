"""docker-compose.yml and the images: what an operator gets from `docker compose up`."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from yourclaw_common.db_roles import SERVICE_ROLES, login_name
from yourclaw_common.db_roles import password_env as db_password_env
from yourclaw_common.nats_auth import host_user, password_env, users_for
from yourclaw_host_agent.install_openclaw import OPENCLAW_VERSION
from yourclaw_provisioner.render import PLAYWRIGHT_MCP_COMMAND

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = [
    "gateway-api",
    "messaging",
    "billing",
    "provisioner",
    "host-agent",
    "llm-proxy",
]
WORKERS = ["messaging", "billing", "provisioner", "host-agent", "llm-proxy"]
COMPOSE_HOST = "compose"
SECRET = re.compile(r"(TOKEN|SECRET|PASSWORD|_KEY)$")


def compose_config(*overrides: Path, **env: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose missing: `make system-tools` installs it"
    files = [arg for f in (COMPOSE, *overrides) for arg in ("-f", str(f))]
    with tempfile.NamedTemporaryFile(suffix=".env") as empty:
        return subprocess.run(
            # An empty env file: a developer's .env must not make this pass.
            [exe, "--env-file", empty.name, *files, "config"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", **env},
        )


NATS_PASSWORDS = {
    password_env(user): f"test-{user}" for user in users_for([COMPOSE_HOST])
}
DB_PASSWORDS = {db_password_env(s): f"db-{s}" for s in SERVICE_ROLES}


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose_config(ENCRYPTION_KEY="test-key", **NATS_PASSWORDS, **DB_PASSWORDS)
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
    result = compose_config(**NATS_PASSWORDS, **DB_PASSWORDS)
    assert result.returncode != 0
    assert "ENCRYPTION_KEY" in result.stderr


def test_nats_passwords_must_come_from_the_environment():
    result = compose_config(ENCRYPTION_KEY="test-key", **DB_PASSWORDS)
    assert result.returncode != 0
    assert "NATS_PASSWORD_" in result.stderr


def test_nats_takes_the_committed_users_with_their_passwords(config):
    nats = config["services"]["nats"]
    assert nats["command"][:2] == ["-c", "/etc/nats/auth.conf"]
    assert any(
        v.endswith(":/etc/nats/auth.conf:ro")
        or (isinstance(v, dict) and v.get("target") == "/etc/nats/auth.conf")
        for v in nats["volumes"]
    )
    # The committed file is what the renderer writes for this compose host.
    rendered = subprocess.run(
        [sys.executable, "-m", "yourclaw_common.nats_auth", "--host", COMPOSE_HOST],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (ROOT / "deploy/nats/auth.conf").read_text() == rendered
    assert set(nats["environment"]) == set(NATS_PASSWORDS)


@pytest.fixture(scope="module")
def tls_config() -> dict:
    result = compose_config(
        ROOT / "deploy/compose.nats-tls.yml",
        ENCRYPTION_KEY="test-key",
        NATS_TLS_DIR="/srv/nats-tls",
        **NATS_PASSWORDS,
        **DB_PASSWORDS,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _mounts(service: dict) -> dict[str, str]:
    """target → source of a service's bind mounts, in either syntax."""
    found = {}
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            found[v["target"]] = v["source"]
        else:
            source, target = v.split(":")[:2]
            found[target] = source
    return found


def test_plain_compose_nats_is_dev_only(config):
    """Without NATS_TLS=1 the services run as dev: production settings refuse
    a plain NATS URL off loopback (docs/security.md)."""
    for name in SERVICES:
        env = config["services"][name]["environment"]
        assert (env["NATS_URL"], env["YOURCLAW_ENV"]) == ("nats://nats:4222", "dev")


def test_with_nats_tls_nats_requires_tls_with_the_local_certificate(tls_config):
    nats = tls_config["services"]["nats"]
    assert nats["command"][:2] == ["-c", "/etc/nats/tls.conf"]
    mounts = _mounts(nats)
    assert mounts["/etc/nats/tls/server.pem"] == "/srv/nats-tls/server.pem"
    assert mounts["/etc/nats/tls/server-key.pem"] == "/srv/nats-tls/server-key.pem"
    conf = (ROOT / "deploy/nats/tls.conf").read_text()
    assert "include auth.conf" in conf
    assert 'cert_file: "/etc/nats/tls/server.pem"' in conf


@pytest.mark.parametrize("name", SERVICES)
def test_with_nats_tls_each_service_verifies_nats_against_the_local_ca(
    tls_config, name
):
    service = tls_config["services"][name]
    env = service["environment"]
    assert env["NATS_URL"] == "tls://nats:4222"
    assert env["YOURCLAW_ENV"] == "production"
    mounts = _mounts(service)
    assert mounts[env["NATS_TLS_CA_FILE"]] == "/srv/nats-tls/ca.pem"
    # The CA certificate only: no service holds a key of the NATS TLS.
    assert not any(
        source.startswith("/srv/nats-tls/") and "key" in source
        for source in mounts.values()
    )
    # Its identity is unchanged.
    assert env["NATS_USER"] == config_user(name, env)


def config_user(name: str, env: dict) -> str:
    return host_user(env["HOST_ID"]) if name == "host-agent" else name


def test_database_passwords_must_come_from_the_environment():
    result = compose_config(ENCRYPTION_KEY="test-key", **NATS_PASSWORDS)
    assert result.returncode != 0
    assert "DB_PASSWORD_" in result.stderr


@pytest.mark.parametrize("name", sorted(SERVICE_ROLES))
def test_each_service_uses_its_own_database_login(config, name):
    service = config["services"][name]
    env = service["environment"]
    password = DB_PASSWORDS[db_password_env(name)]
    assert env["DATABASE_URL"] == (
        f"postgresql://{login_name(name)}:{password}@postgres:5432/yourclaw"
    )
    # Its role cannot migrate; `migrate` has, before it starts.
    assert env["RUN_MIGRATIONS"] == "false"
    assert service["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert bool(env["ENCRYPTION_KEY"]) == (name != "billing")


def test_migrate_runs_as_the_owner_and_makes_the_logins(config):
    migrate = config["services"]["migrate"]
    assert migrate["command"] == ["python", "-m", "yourclaw_common.db_roles"]
    assert migrate["environment"]["DATABASE_URL"].startswith("postgresql://yourclaw:")
    assert DB_PASSWORDS.items() <= migrate["environment"].items()
    assert importlib.util.find_spec("yourclaw_common.db_roles") is not None


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_connects_as_its_own_nats_user(config, name):
    env = config["services"][name]["environment"]
    user = host_user(env["HOST_ID"]) if name == "host-agent" else name
    assert env["NATS_USER"] == user
    assert env["NATS_PASSWORD"] == NATS_PASSWORDS[password_env(user)]


def test_secrets_are_referenced_never_written_in_the_file():
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET.search(key) and key != "GF_SECURITY_ADMIN_USER":
                # Empty: a secret withheld (billing's ENCRYPTION_KEY), not inlined.
                assert value == "" or str(value).startswith("${"), (
                    f"{name}: {key} is inlined"
                )


def test_every_service_is_restarted_and_health_checked(config):
    # A crashed service comes back by itself (issue 17: supervision); what
    # others wait on for `service_healthy` has a healthcheck in the file, the
    # images of our own services carry theirs (HEALTHCHECK, tested below).
    for name, service in config["services"].items():
        # migrate is a one-shot the others wait to see finish.
        wanted = "no" if name == "migrate" else "unless-stopped"
        assert service.get("restart") == wanted, name
    for name in ("nats", "postgres"):
        check = config["services"][name]["healthcheck"]
        assert check["test"][0] == "CMD"
        assert int(check["retries"]) >= 3
    for name in SERVICES:
        for needed, dependency in config["services"][name]["depends_on"].items():
            wanted = (
                "service_completed_successfully"
                if needed == "migrate"
                else "service_healthy"
            )
            assert dependency["condition"] == wanted, name


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


def test_provider_keys_are_given_to_the_llm_proxy_only(config):
    for name, service in config["services"].items():
        env = service.get("environment") or {}
        has_keys = any(k in env for k in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"))
        assert has_keys == (name == "llm-proxy"), name


def test_host_agent_drives_the_engine_with_the_docker_runtime(config):
    agent = config["services"]["host-agent"]
    assert agent["environment"]["HOST_RUNTIME"] == "docker"
    assert "/var/run/docker.sock" in _mount_targets(agent)


def test_grafana_gets_its_datasource_and_dashboards(config):
    mounts = _mount_targets(config["services"]["grafana"])
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= mounts


@pytest.mark.parametrize("name", SERVICES)
def test_python_services_run_the_one_services_image_with_their_module(config, name):
    service = config["services"][name]
    assert service["image"].startswith("yourclaw-services:")
    # `make images` builds it: its context is prepared on the host.
    assert "build" not in service
    module = "yourclaw_" + name.replace("-", "_")
    assert service["command"][:3] == ["python", "-m", module]
    assert importlib.util.find_spec(module) is not None
    assert service["environment"]["SERVICE_NAME"] == name


def test_the_services_image_is_multi_stage_non_root_with_healthcheck():
    dockerfile = (ROOT / "deploy/services/Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=yourclaw-base:bookworm$", dockerfile, re.M)
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    assert "--require-hashes" in dockerfile  # the locked wheels, nothing else
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user
    assert user[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
    for name in SERVICES:  # one definition: the per-service Dockerfiles are gone
        assert not (ROOT / "deploy" / name / "Dockerfile").exists()


def test_the_gateway_healthcheck_asks_its_api_port(config):
    env = config["services"]["gateway-api"]["environment"]
    assert env["HEALTHCHECK_PORT"] == env["API_PORT"]


def test_web_image_is_built_offline_and_configured_at_run_time(config):
    dockerfile = (ROOT / "deploy/web/Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=yourclaw-base:bookworm$", dockerfile, re.M)
    assert re.search(r"^USER node", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
    web = config["services"]["web"]
    assert "build" not in web  # `make images` prepares its context
    assert web["environment"]["PUBLIC_BASE_URL"]


def test_tenant_image_pins_the_openclaw_the_host_agent_expects(builder):
    dockerfile = (ROOT / "deploy/openclaw/Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=yourclaw-base:bookworm$", dockerfile, re.M)
    # The builder passes the pin of install_openclaw.py, the one source of truth.
    assert builder.openclaw_version() == OPENCLAW_VERSION
    assert (
        f"ARG PLAYWRIGHT_MCP_VERSION={builder.PLAYWRIGHT_MCP_VERSION}\n" in dockerfile
    )
    lock = json.loads((ROOT / "deploy/openclaw/package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == {
        "@playwright/mcp": builder.PLAYWRIGHT_MCP_VERSION,
        "openclaw": OPENCLAW_VERSION,
    }
    assert lock["packages"]["node_modules/openclaw"]["version"] == OPENCLAW_VERSION
    assert "chromium" in dockerfile
    assert re.search(r"^USER node$", dockerfile, re.M)  # 1000:1000
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in dockerfile
    # The runtime starts `node dist/index.js gateway …` in /app on port 18789.
    assert re.search(r"^WORKDIR /app$", dockerfile, re.M)
    assert "EXPOSE 18789" in dockerfile
    assert not re.search(r"docker(-ce)?-cli|docker\.io", dockerfile)


def test_tenant_image_has_the_browser_tools_the_rendered_config_starts():
    dockerfile = (ROOT / "deploy/openclaw/Dockerfile").read_text()
    # render.py starts this command as the `playwright` MCP server;
    # @playwright/mcp 0.0.83's own name for it is playwright-mcp.
    assert f"/usr/local/bin/{PLAYWRIGHT_MCP_COMMAND}" in dockerfile
    assert "/usr/local/bin/playwright-mcp" in dockerfile
    assert "PLAYWRIGHT_MCP_EXECUTABLE_PATH=/usr/bin/chromium" in dockerfile
    assert "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1" in dockerfile


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
