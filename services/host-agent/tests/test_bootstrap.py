"""Host bootstrap against an in-process SSH server (asyncssh), no real network.

The server records every command and serves SFTP from a temp dir; when it is
asked to start the agent's systemd unit, the test starts a real host-agent from
the env file bootstrap uploaded, whose first heartbeat registers the host.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest
import pytest_asyncio
from yourclaw_host_agent.bootstrap import (
    BootstrapError,
    BootstrapOptions,
    bootstrap,
    capacity_for,
    render_env,
    render_unit,
)

MEM_KB = 16 * 1024 * 1024  # a 16 GiB host


@dataclass
class SSHHost:
    """The fake host: what it was told, and where its SFTP files landed."""

    port: int
    root: Path
    key_file: Path
    known_hosts: Path
    commands: list[str] = field(default_factory=list)
    fail_on: str | None = None
    on_start: Callable[[Path], Awaitable[None]] | None = None


@pytest_asyncio.fixture(loop_scope="session")
async def ssh_host(tmp_path: Path) -> AsyncIterator[SSHHost]:
    server_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "id_ed25519"
    client_key.write_private_key(str(key_file))
    root = tmp_path / "sftp-root"
    root.mkdir()
    host = SSHHost(0, root, key_file, tmp_path / "known_hosts")

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        command = process.command or ""
        host.commands.append(command)
        if host.fail_on and host.fail_on in command:
            process.stderr.write("E: Unable to locate package\n")
            process.exit(100)
            return
        if "/proc/meminfo" in command:
            process.stdout.write(f"{MEM_KB}\n")
        elif "uname" in command:
            process.stdout.write("Linux x86_64\n")
        if "systemctl restart yourclaw-host-agent" in command and host.on_start:
            await host.on_start(root / ".yourclaw-bootstrap" / "host-agent.env")
        process.exit(0)

    server = await asyncssh.create_server(
        asyncssh.SSHServer,
        "127.0.0.1",
        0,
        server_host_keys=[server_key],
        authorized_client_keys=asyncssh.import_authorized_keys(
            client_key.export_public_key().decode()
        ),
        process_factory=handle,
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
    )
    host.port = server.sockets[0].getsockname()[1]
    host.known_hosts.write_text(
        f"[127.0.0.1]:{host.port} {server_key.export_public_key().decode()}"
    )
    yield host
    server.close()
    await server.wait_closed()


def _options(host: SSHHost, nats_url: str, **kw) -> BootstrapOptions:
    values = {
        "host": "127.0.0.1",
        "port": host.port,
        "username": "ubuntu",
        "key_path": host.key_file,
        "known_hosts": host.known_hosts,
        "host_id": f"h{uuid.uuid4().hex[:8]}",
        "nats_url": nats_url,
        "runtime": "docker",
        "address": "10.0.0.7",
        "wheels": (),
        "wait_heartbeat_seconds": 0,
    }
    values.update(kw)
    return BootstrapOptions(**values)  # type: ignore[arg-type]


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        out[key] = shlex.split(value)[0] if value else ""
    return out


class TestBootstrap:
    async def test_docker_host_is_installed_and_registered(
        self, ssh_host, nats_url, tmp_path, fake_runtime, start_agent
    ):
        wheel = tmp_path / "yourclaw_host_agent-0.1.0-py3-none-any.whl"
        wheel.write_bytes(b"PK fake wheel")
        opts = _options(ssh_host, nats_url, wheels=(wheel,), wait_heartbeat_seconds=20)
        started: list[dict[str, str]] = []

        async def on_start(env_path: Path) -> None:
            # What systemd would do: run the agent with the uploaded env file.
            env = _env_file(env_path)
            started.append(env)
            await start_agent(
                fake_runtime(),
                host_id=env["HOST_ID"],
                host_address=env["HOST_ADDRESS"],
                host_capacity=int(env["HOST_CAPACITY"]),
                nats_url=env["NATS_URL"],
            )

        ssh_host.on_start = on_start
        said: list[str] = []

        beat = await bootstrap(opts, say=said.append)

        assert beat is not None
        assert beat.host_id == opts.host_id
        assert beat.address == "10.0.0.7"
        assert beat.capacity == capacity_for(MEM_KB * 1024) == 9
        commands = ssh_host.commands
        joined = "\n".join(commands)
        # Not root: every system change goes through sudo, without a password prompt.
        assert all(
            c.startswith("sudo -n sh -c ")
            for c in commands
            if "apt-get" in c or "systemctl" in c
        )
        assert "docker.io" in joined
        assert "systemctl enable --now docker" in joined
        assert "useradd --system" in joined
        assert "usermod -aG docker yourclaw" in joined
        assert "uv==0.13.9" in joined
        assert "--python 3.11 /opt/yourclaw/venv" in joined
        assert "--find-links /opt/yourclaw/wheels" in joined
        assert "install_openclaw" not in joined  # docker hosts need no local openclaw
        order = [
            next(i for i, c in enumerate(commands) if needle in c)
            for needle in (
                "install -D -o root -g root -m 0600 .yourclaw-bootstrap/host-agent.env",
                "systemctl daemon-reload",
                "systemctl enable yourclaw-host-agent",
                "systemctl restart yourclaw-host-agent",
                "rm -rf .yourclaw-bootstrap",
            )
        ]
        assert order == sorted(order)
        staged = ssh_host.root / ".yourclaw-bootstrap"
        assert (staged / wheel.name).read_bytes() == b"PK fake wheel"
        unit = (staged / "yourclaw-host-agent.service").read_text()
        assert unit == render_unit(opts)
        assert "KillMode=process" in unit
        assert "EnvironmentFile=/etc/yourclaw/host-agent.env" in unit
        assert "User=yourclaw" in unit
        [env] = started
        assert env["HOST_RUNTIME"] == "docker"
        assert env["HOST_DATA_DIR"] == "/data/yourclaw"
        assert env["NATS_URL"] == nats_url
        assert said[-1].startswith("registered: ")

    async def test_process_host_installs_openclaw(self, ssh_host, nats_url):
        opts = _options(
            ssh_host, nats_url, runtime="process", username="root", capacity=3
        )

        assert await bootstrap(opts) is None

        joined = "\n".join(ssh_host.commands)
        assert (
            "yourclaw_host_agent.install_openclaw --home /opt/yourclaw/openclaw"
            in joined
        )
        assert "docker" not in joined
        assert not any(c.startswith("sudo") for c in ssh_host.commands)
        assert "/proc/meminfo" not in joined  # capacity was given
        env = _env_file(ssh_host.root / ".yourclaw-bootstrap" / "host-agent.env")
        assert env["HOST_CAPACITY"] == "3"
        assert env["HOST_RUNTIME"] == "process"
        assert env["YOURCLAW_ENV"] == "dev"
        assert env["OPENCLAW_INSTALL_DIR"] == "/opt/yourclaw/openclaw"

    async def test_a_failing_step_stops_with_its_name(self, ssh_host, nats_url):
        ssh_host.fail_on = "docker.io"

        with pytest.raises(BootstrapError) as failed:
            await bootstrap(_options(ssh_host, nats_url))

        assert failed.value.step == "installing Docker Engine"
        assert "Unable to locate package" in failed.value.detail
        assert not any("systemctl restart" in c for c in ssh_host.commands)

    async def test_unknown_host_key_is_refused(self, ssh_host, nats_url, tmp_path):
        other = tmp_path / "other_known_hosts"
        other.write_text(
            f"[127.0.0.1]:{ssh_host.port} "
            + asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        )

        with pytest.raises(asyncssh.Error):
            await bootstrap(_options(ssh_host, nats_url, known_hosts=other))

        assert ssh_host.commands == []

    async def test_no_heartbeat_is_an_error(self, ssh_host, nats_url):
        with pytest.raises(BootstrapError) as failed:
            await bootstrap(_options(ssh_host, nats_url, wait_heartbeat_seconds=0.5))

        assert failed.value.step == "registering the host"


def test_capacity_leaves_room_for_the_os():
    gib = 1024**3
    assert capacity_for(4 * gib) == 1
    assert capacity_for(24 * gib) == 14
    assert capacity_for(1 * gib) == 1


class TestEnvFile:
    def test_the_agent_connects_as_its_hosts_nats_user(self):
        opts = BootstrapOptions(
            host="agent-7.hosts.test",
            host_id="eu-7",
            nats_url="nats://nats:4222",
            nats_password="s3cret pass",
        )

        env = dict(
            line.split("=", 1) for line in render_env(opts, capacity=2).splitlines()
        )

        assert env["NATS_USER"] == "host-agent-eu-7"
        assert env["NATS_PASSWORD"] == "'s3cret pass'"

    def test_without_a_password_it_connects_as_the_url_says(self):
        opts = BootstrapOptions(host="h", host_id="eu-7", nats_url="nats://n:4222")

        text = render_env(opts, capacity=2)

        assert "NATS_USER" not in text
        assert "NATS_PASSWORD" not in text
