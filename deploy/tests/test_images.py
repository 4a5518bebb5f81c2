"""The images `make images` builds, checked on the real engine: the tenant,
services and web images from the outside with `docker run` and
`docker inspect`. A cold build takes minutes; afterwards the builder finds the
images up to date by their inputs label and these tests take seconds.
"""

import json
import os
import re
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
from yourclaw_host_agent.install_openclaw import OPENCLAW_VERSION

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def built(builder: ModuleType) -> dict[str, str]:
    if not builder.engine_answers():
        pytest.skip("no Docker Engine answers here (`make engine` starts one)")
    return builder.build_images(builder.TARGETS)


@pytest.fixture(scope="module")
def tenant(built: dict[str, str]) -> str:
    return built["openclaw"]


def run_in(image: str, *command: str) -> subprocess.CompletedProcess[str]:
    # The image's own entrypoint and user: what the runtime starts.
    return _docker("run", "--rm", "--network", "none", image, *command)


def inspect(image: str) -> dict:
    return json.loads(_docker("image", "inspect", image).stdout)[0]


class TestTenantImage:
    def test_is_tagged_with_the_pinned_openclaw_and_latest(self, tenant):
        assert inspect(f"yourclaw-openclaw:{OPENCLAW_VERSION}")["Id"] == tenant
        assert inspect("yourclaw-openclaw:latest")["Id"] == tenant

    def test_runs_as_node_uid_1000(self, tenant):
        assert inspect(tenant)["Config"]["User"] == "node"
        assert run_in(tenant, "id", "-u").stdout.strip() == "1000"
        assert run_in(tenant, "id", "-g").stdout.strip() == "1000"
        home = run_in(tenant, "sh", "-c", "echo $HOME; stat -c %u /home/node/.openclaw")
        assert home.stdout.split() == ["/home/node", "1000"]

    def test_pid_1_is_tini(self, tenant):
        config = inspect(tenant)["Config"]
        assert config["Entrypoint"] == ["/usr/bin/tini", "--"]
        cmdline = run_in(tenant, "cat", "/proc/1/cmdline").stdout.split("\0")
        assert cmdline[:2] == ["/usr/bin/tini", "--"]

    def test_keeps_the_runtime_contract(self, tenant):
        config = inspect(tenant)["Config"]
        assert config["WorkingDir"] == "/app"
        assert config["Cmd"] == [
            "node",
            "dist/index.js",
            "gateway",
            "--bind",
            "lan",
            "--port",
            "18789",
        ]
        assert run_in(tenant, "test", "-f", "/app/dist/index.js").returncode == 0

    def test_node_is_24_or_newer(self, tenant):
        version = run_in(tenant, "node", "--version").stdout.strip()
        match = re.fullmatch(r"v(\d+)\.\d+\.\d+", version)
        assert match, version
        assert int(match.group(1)) >= 24

    def test_openclaw_is_the_pinned_version(self, tenant):
        done = run_in(tenant, "openclaw", "--version")
        assert done.returncode == 0, done.stderr
        assert re.search(rf"\b{re.escape(OPENCLAW_VERSION)}\b", done.stdout)

    @pytest.mark.parametrize("command", ["playwright-mcp", "mcp-server-playwright"])
    def test_playwright_mcp_is_on_path(self, tenant, command):
        done = run_in(tenant, command, "--help")
        assert done.returncode == 0, done.stderr
        assert "Playwright MCP" in done.stdout

    def test_playwright_uses_debians_chromium_headless_without_sandbox(self, tenant):
        env = dict(e.split("=", 1) for e in inspect(tenant)["Config"]["Env"])
        assert env["PLAYWRIGHT_MCP_EXECUTABLE_PATH"] == "/usr/bin/chromium"
        assert env["PLAYWRIGHT_MCP_HEADLESS"] == "true"
        assert env["PLAYWRIGHT_MCP_SANDBOX"] == "false"
        assert env["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] == "1"
        done = run_in(tenant, "/usr/bin/chromium", "--version")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Chromium ")

    def test_the_browser_tool_drives_chromium_under_the_hardened_profile(self, tenant):
        """One real MCP tool call over stdio: playwright-mcp opens a page in
        Debian's Chromium, with the runtime's restrictions and no network."""
        page = "data:text/html,<title>hello-yourclaw</title><h1>Hi</h1>"
        messages = [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"},
                },
            },
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "browser_navigate", "arguments": {"url": page}},
            },
        ]
        with subprocess.Popen(
            [
                "docker",
                "run",
                "--rm",
                "-i",
                "--network",
                "none",
                "--read-only",
                "--tmpfs",
                "/tmp:rw,nosuid,nodev,size=256m",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "--memory",
                "1g",
                "--pids-limit",
                "256",
                "--env",
                "XDG_CACHE_HOME=/tmp/cache",
                tenant,
                "playwright-mcp",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as server:
            assert server.stdin
            assert server.stdout
            replies: dict[int, dict] = {}
            for message in messages:
                server.stdin.write(json.dumps(message) + "\n")
                server.stdin.flush()
                while "id" in message and message["id"] not in replies:
                    line = server.stdout.readline()
                    assert line, server.stderr.read() if server.stderr else ""
                    reply = json.loads(line)
                    replies[reply.get("id", -1)] = reply
            server.stdin.close()
            server.wait(timeout=60)
        assert replies[1]["result"]["serverInfo"]["name"] == "Playwright"
        text = replies[2]["result"]["content"][0]["text"]
        assert "Page Title: hello-yourclaw" in text, text

    def test_has_no_docker_cli_or_socket(self, tenant):
        done = run_in(
            tenant,
            "sh",
            "-c",
            "command -v docker dockerd containerd runc; "
            "ls /var/run/docker.sock /run/docker.sock /usr/bin/docker 2>/dev/null; "
            "true",
        )
        assert done.stdout.strip() == ""
        assert not inspect(tenant)["Config"].get("Volumes")

    def test_a_rebuild_with_nothing_changed_reuses_the_image(self, builder, tenant):
        again = builder.build_images(["openclaw"])
        assert again["openclaw"] == tenant


class TestServicesImage:
    @pytest.mark.parametrize("service", SERVICES)
    def test_every_service_is_installed_with_its_commands(self, built, service):
        """Every services/<name> (a new one too): `python -m yourclaw_<name>`
        and the console scripts its pyproject declares."""
        module = "yourclaw_" + service.replace("-", "_")
        done = run_in(built["services"], "python", "-c", f"import {module}.__main__")
        assert done.returncode == 0, done.stderr
        project = tomllib.loads(
            (ROOT / "services" / service / "pyproject.toml").read_text()
        )
        for script in project["project"].get("scripts", {}):
            assert run_in(built["services"], "sh", "-c", f"command -v {script}").stdout

    def test_runs_non_root_on_debians_python_311(self, built):
        assert run_in(built["services"], "id", "-u").stdout.strip() == "10001"
        version = run_in(built["services"], "python", "--version").stdout
        assert version.startswith("Python 3.11.")

    def test_a_rebuild_with_nothing_changed_reuses_the_image(self, builder, built):
        assert builder.build_images(["services"])["services"] == built["services"]


class TestWebImage:
    def test_serves_the_app_as_node_with_its_settings_read_at_run_time(self, built):
        name = f"yourclaw-web-test-{os.getpid()}"
        started = _docker(
            "run", "--detach", "--rm", "--name", name,
            "--publish", "127.0.0.1::3000",
            "--env", "PUBLIC_BASE_URL=http://api.example.test",
            "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/app/.next/cache",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            built["web"],
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        try:
            port = _docker("port", name, "3000/tcp").stdout.split(":")[-1].strip()
            deadline = time.monotonic() + 60
            page = ""
            while time.monotonic() < deadline and not page:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/", timeout=5
                    ) as r:
                        page = r.read().decode()
                except OSError:
                    time.sleep(0.5)
            assert page, _docker("logs", name).stderr
            assert "<html" in page
            user = _docker("exec", name, "id", "-u").stdout.strip()
            assert user == "1000"
        finally:
            _docker("rm", "--force", name)


def test_the_make_up_and_test_step_rebuilds_nothing_when_the_images_are_built(built):
    # Nothing rebuilt is what makes the step take seconds; the time itself is
    # not asserted (a loaded machine is slow, not wrong).
    done = subprocess.run(
        [str(ROOT / "scripts/ensure-containers.sh")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for repo in ("base", "openclaw", "services", "web"):
        assert re.search(rf"yourclaw-{repo}:\S+ is up to date", done.stderr)


def test_without_root_or_engine_make_up_and_test_say_so_in_one_line_and_go_on():
    """As an unprivileged user (no sudo, no access to the engine's socket)."""
    if os.geteuid() != 0:
        pytest.skip("becomes the user nobody, which needs root")
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         str(ROOT / "scripts/ensure-containers.sh"),
         "assistants will run as bare processes (dev only)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert "needs root" in lines[0]
    assert "assistants will run as bare processes (dev only)" in lines[0]


def test_make_engine_changes_nothing_when_an_engine_answers(builder):
    if not builder.engine_answers():
        pytest.skip("no Docker Engine answers here (`make engine` starts one)")
    done = subprocess.run(
        [str(ROOT / "scripts/ensure-docker.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "already answers" in done.stdout
    assert "nothing to do" in done.stdout
