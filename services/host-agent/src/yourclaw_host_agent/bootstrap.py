"""Turn a fresh Linux host into a YourClaw container host, over SSH (asyncssh).

`python -m yourclaw_host_agent bootstrap --host 10.0.0.7 --user ubuntu --key
~/.ssh/id_ed25519 --host-id h7 --nats-url tls://nats.internal:4222 --wheels dist/`

Installs the runtime (Docker Engine for `docker`; Node from the wheel plus the
pinned openclaw for `process`), a Python 3.11 venv with the host-agent from the
given wheels, a systemd unit and its env file; starts the agent; then waits for
its first heartbeat (`heartbeat.<host id>`), which is what registers the host with the
provisioner. Every step is idempotent: re-running it upgrades the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncssh
from pydantic import ValidationError
from yourclaw_common.events import HostHeartbeat
from yourclaw_common.nats import connect
from yourclaw_common.nats_auth import heartbeat_subject, host_user

__all__ = [
    "BootstrapError",
    "BootstrapOptions",
    "bootstrap",
    "cli",
    "render_env",
    "render_unit",
]

SERVICE = "yourclaw-host-agent"
# The uv the project uses (scripts/bootstrap-uv.sh): it fetches Python 3.11 too.
UV_VERSION = "0.13.9"
_GIB = 1024**3
# Warm gateways use ~1.3 GB RSS; keep 2 GiB for the OS and the agent.
_GATEWAY_BYTES = int(1.5 * _GIB)
_RESERVED_BYTES = 2 * _GIB
_STAGING = ".yourclaw-bootstrap"


class BootstrapError(Exception):
    """A bootstrap step failed on the remote host."""

    def __init__(self, step: str, detail: str):
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


@dataclass(frozen=True)
class BootstrapOptions:
    host: str
    host_id: str
    nats_url: str
    username: str = "root"
    port: int = 22
    key_path: Path | None = None
    # None: ~/.ssh/known_hosts. accept_unknown_host skips the check (first contact).
    known_hosts: Path | None = None
    accept_unknown_host: bool = False
    runtime: Literal["process", "docker"] = "docker"
    # What others use to reach ports published on this host (default: --host).
    address: str | None = None
    # None: computed from the host's memory.
    capacity: int | None = None
    wheels: tuple[Path, ...] = ()
    # A pip requirement; installed from the uploaded wheels when there are some.
    package: str = "yourclaw-host-agent"
    prefix: str = "/opt/yourclaw"
    data_dir: str = "/data/yourclaw"
    service_user: str = "yourclaw"
    metrics_port: int = 9464
    # Extra variables for the agent's env file (e.g. LOG_LEVEL, NATS creds).
    extra_env: dict[str, str] = field(default_factory=dict)
    # 0: don't wait for the first heartbeat.
    wait_heartbeat_seconds: float = 60.0
    # NATS as seen from where bootstrap runs (default: nats_url).
    check_nats_url: str | None = None
    # The password of this host's NATS user (host-agent-<host id>); the agent
    # connects as that user when it is set.
    nats_password: str = ""


def capacity_for(mem_bytes: int) -> int:
    """Gateways a host of this memory takes."""
    return max(1, (mem_bytes - _RESERVED_BYTES) // _GATEWAY_BYTES)


def render_env(opts: BootstrapOptions, *, capacity: int) -> str:
    """The agent's EnvironmentFile (0600: it may hold NATS credentials)."""
    values = {
        "SERVICE_NAME": "host-agent",
        "HOST_ID": opts.host_id,
        "HOST_ADDRESS": opts.address or opts.host,
        "HOST_RUNTIME": opts.runtime,
        "HOST_CAPACITY": str(capacity),
        "HOST_DATA_DIR": opts.data_dir,
        "NATS_URL": opts.nats_url,
        **(
            {"NATS_USER": host_user(opts.host_id), "NATS_PASSWORD": opts.nats_password}
            if opts.nats_password
            else {}
        ),
        "OPENCLAW_INSTALL_DIR": f"{opts.prefix}/openclaw",
        "METRICS_PORT": str(opts.metrics_port),
        "METRICS_HOST": "127.0.0.1",
        # The process runtime isolates nothing: the agent refuses it outside
        # dev, so such a host is a dev host, and says so.
        **({"YOURCLAW_ENV": "dev"} if opts.runtime == "process" else {}),
        **opts.extra_env,
    }
    for key, value in values.items():
        if "\n" in value or "\n" in key:
            raise ValueError(f"newline in {key}")
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


UNIT_CAPABILITIES = (
    "CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE CAP_NET_ADMIN CAP_NET_RAW "
    "CAP_SYS_PTRACE CAP_SYS_NICE"
)


def render_unit(opts: BootstrapOptions) -> str:
    """The systemd unit of the agent."""
    after = (
        "network-online.target docker.service"
        if opts.runtime == "docker"
        else "network-online.target"
    )
    # Gateways of the process runtime are the agent's children: they would
    # inherit every ambient capability, so that agent gets none.
    powers = (
        "# Of root's powers the agent gets only those it uses (a tenant none: it\n"
        "# runs in a container): the tenant firewall (iptables), handing a new\n"
        "# tenant its files (uid 1000) and tending them, and deep sleep (a\n"
        "# container's cgroup limits, the read-back of its swapped memory).\n"
        f"AmbientCapabilities={UNIT_CAPABILITIES}\n"
        f"CapabilityBoundingSet={UNIT_CAPABILITIES}\n"
        if opts.runtime == "docker"
        else ""
    )
    return f"""[Unit]
Description=YourClaw host-agent ({opts.host_id})
After={after}
Wants=network-online.target

[Service]
Type=simple
User={opts.service_user}
Group={opts.service_user}
EnvironmentFile=/etc/yourclaw/host-agent.env
WorkingDirectory={opts.prefix}
ExecStart={opts.prefix}/venv/bin/python -m yourclaw_host_agent serve
Restart=always
RestartSec=2
TimeoutStopSec=30
# Gateways of the process runtime run in their own sessions and must outlive an
# agent restart: stop only the agent's own process, not the whole cgroup.
KillMode=process
{powers}NoNewPrivileges=true
ProtectSystem=full
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


class _Remote:
    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        *,
        sudo: str,
        say: Callable[[str], None],
    ):
        self.conn = conn
        self.sudo = sudo
        self.say = say

    async def run(self, step: str, command: str, *, root: bool = True) -> str:
        self.say(step)
        full = (
            f"{self.sudo}sh -c {shlex.quote(command)}"
            if root and self.sudo
            else command
        )
        result = await self.conn.run(full, check=False)
        if result.exit_status != 0:
            stderr = str(result.stderr or "")[-1500:]
            raise BootstrapError(step, f"exit {result.exit_status}: {stderr.strip()}")
        return str(result.stdout or "")


async def _wait_heartbeat(url: str, host_id: str, timeout: float) -> HostHeartbeat:
    nc = await connect(url, name="host-bootstrap", max_reconnect_attempts=3)
    found: asyncio.Future[HostHeartbeat] = asyncio.get_running_loop().create_future()

    async def on_beat(msg: object) -> None:
        try:
            beat = HostHeartbeat.model_validate_json(msg.data)  # type: ignore[attr-defined]
        except ValidationError:
            return
        if beat.host_id == host_id and not found.done():
            found.set_result(beat)

    try:
        await nc.subscribe(heartbeat_subject(host_id), cb=on_beat)
        async with asyncio.timeout(timeout):
            return await found
    finally:
        await nc.drain()


async def bootstrap(
    opts: BootstrapOptions, *, say: Callable[[str], None] = lambda _: None
) -> HostHeartbeat | None:
    """Set up the host; return its first heartbeat (None when not waiting)."""
    known_hosts: object = () if opts.known_hosts is None else str(opts.known_hosts)
    if opts.accept_unknown_host:
        known_hosts = None
    keys = [str(opts.key_path)] if opts.key_path else ()
    say(f"connecting to {opts.username}@{opts.host}:{opts.port}")
    async with asyncssh.connect(
        opts.host,
        opts.port,
        username=opts.username,
        client_keys=keys,
        known_hosts=known_hosts,
        agent_path=None if opts.key_path else (),
    ) as conn:
        remote = _Remote(
            conn, sudo="" if opts.username == "root" else "sudo -n ", say=say
        )
        q = shlex.quote
        prefix, data, user = q(opts.prefix), q(opts.data_dir), q(opts.service_user)

        await remote.run(
            "checking the host", "uname -sm && test -d /run/systemd/system", root=False
        )
        capacity = opts.capacity
        if capacity is None:
            mem_kb = await remote.run(
                "reading the host's memory",
                "awk '/^MemTotal:/ {print $2}' /proc/meminfo",
                root=False,
            )
            capacity = capacity_for(int(mem_kb.strip() or 0) * 1024)
            say(f"capacity: {capacity} gateways")

        apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
        await remote.run(
            "installing Python prerequisites",
            "python3 -c 'import venv, ensurepip' 2>/dev/null || "
            f"(apt-get update -qq && {apt} python3 python3-venv)",
        )
        if opts.runtime == "docker":
            await remote.run(
                "installing Docker Engine",
                f"command -v dockerd >/dev/null || (apt-get update -qq && {apt} docker.io)",
            )
            await remote.run("starting Docker Engine", "systemctl enable --now docker")
        await remote.run(
            "creating the service user",
            f"id -u {user} >/dev/null 2>&1 || useradd --system --home-dir {prefix} "
            f"--shell /usr/sbin/nologin {user}",
        )
        if opts.runtime == "docker":
            # The agent (never a tenant) talks to the Engine socket.
            await remote.run(
                "letting the agent use Docker", f"usermod -aG docker {user}"
            )
        await remote.run(
            "creating folders",
            f"install -d -o {user} -g {user} -m 0750 {prefix} {data} && "
            "install -d -o root -g root -m 0755 /etc/yourclaw",
        )

        say("uploading files")
        async with conn.start_sftp_client() as sftp:
            if not await sftp.exists(_STAGING):
                await sftp.mkdir(_STAGING)
            for wheel in opts.wheels:
                await sftp.put(str(wheel), f"{_STAGING}/{wheel.name}")
            async with sftp.open(f"{_STAGING}/host-agent.env", "w") as handle:
                await handle.write(render_env(opts, capacity=capacity))
            async with sftp.open(f"{_STAGING}/{SERVICE}.service", "w") as handle:
                await handle.write(render_unit(opts))
        await remote.run(
            "installing the unit and its env file",
            f"install -D -o root -g root -m 0600 {_STAGING}/host-agent.env /etc/yourclaw/host-agent.env && "
            f"install -D -o root -g root -m 0644 {_STAGING}/{SERVICE}.service /etc/systemd/system/{SERVICE}.service",
        )

        venv = f"{prefix}/venv"
        uv = f"{prefix}/tools/bin/uv"
        find_links = ""
        if opts.wheels:
            await remote.run(
                "copying wheels",
                f"install -d -m 0755 {prefix}/wheels && install -m 0644 {_STAGING}/*.whl {prefix}/wheels/",
            )
            find_links = f"--find-links {prefix}/wheels "
        await remote.run(
            "installing uv",
            f"test -x {uv} || (python3 -m venv {prefix}/tools && "
            f"{prefix}/tools/bin/pip install --quiet uv=={UV_VERSION})",
        )
        await remote.run(
            "installing the host-agent (Python 3.11 venv)",
            f"UV_PYTHON_INSTALL_DIR={prefix}/python {uv} venv --allow-existing --python 3.11 {venv} && "
            f"{uv} pip install --python {venv}/bin/python {find_links}--upgrade {q(opts.package)} && "
            f"chown -R {user}:{user} {prefix}",
        )
        if opts.runtime == "process":
            await remote.run(
                "installing openclaw (Node 24 from the wheel)",
                f"runuser -u {user} -- env HOME={prefix} {venv}/bin/python -m "
                f"yourclaw_host_agent.install_openclaw --home {prefix}/openclaw",
            )
        await remote.run("reloading systemd", "systemctl daemon-reload")
        await remote.run("enabling the host-agent", f"systemctl enable {SERVICE}")
        # A restart also upgrades a running agent; gateways survive it (KillMode).
        await remote.run("starting the host-agent", f"systemctl restart {SERVICE}")
        await remote.run("cleaning up", f"rm -rf {_STAGING}", root=False)

    if opts.wait_heartbeat_seconds <= 0:
        return None
    say(f"waiting for the first heartbeat of {opts.host_id}")
    try:
        beat = await _wait_heartbeat(
            opts.check_nats_url or opts.nats_url,
            opts.host_id,
            opts.wait_heartbeat_seconds,
        )
    except TimeoutError as exc:
        raise BootstrapError(
            "registering the host",
            f"no heartbeat from {opts.host_id} in {opts.wait_heartbeat_seconds:.0f} s "
            f"(journalctl -u {SERVICE} on the host)",
        ) from exc
    say(f"registered: {beat.host_id} ({beat.runtime}, capacity {beat.capacity})")
    return beat


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m yourclaw_host_agent bootstrap",
        description="Set up a fresh host over SSH and register it.",
    )
    parser.add_argument("--host", required=True, help="address to SSH to")
    parser.add_argument(
        "--user", default="root", help="SSH user (sudo without password if not root)"
    )
    parser.add_argument("--key", type=Path, help="SSH private key")
    parser.add_argument("--port", type=int, default=22)
    parser.add_argument("--known-hosts", type=Path, help="default ~/.ssh/known_hosts")
    parser.add_argument(
        "--accept-unknown-host",
        action="store_true",
        help="skip host key checking (first contact only)",
    )
    parser.add_argument("--host-id", required=True, help="HOST_ID of the new host")
    parser.add_argument("--nats-url", required=True, help="NATS as the host reaches it")
    parser.add_argument(
        "--check-nats-url", help="NATS as this machine reaches it (default --nats-url)"
    )
    parser.add_argument(
        "--nats-password-env",
        metavar="VAR",
        help="environment variable holding the password of the host's NATS user "
        "host-agent-<host id> (not on the command line: ps shows that)",
    )
    parser.add_argument("--runtime", choices=["docker", "process"], default="docker")
    parser.add_argument("--address", help="HOST_ADDRESS (default --host)")
    parser.add_argument(
        "--capacity", type=int, help="HOST_CAPACITY (default: from memory)"
    )
    parser.add_argument(
        "--wheels",
        type=Path,
        help="folder of wheels to install from (uv build --all-packages)",
    )
    parser.add_argument(
        "--package", default="yourclaw-host-agent", help="pip requirement to install"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra agent setting",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait for the first heartbeat (0: don't)",
    )
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env if "=" in item)
    opts = BootstrapOptions(
        host=args.host,
        host_id=args.host_id,
        nats_url=args.nats_url,
        username=args.user,
        port=args.port,
        key_path=args.key,
        known_hosts=args.known_hosts,
        accept_unknown_host=args.accept_unknown_host,
        runtime=args.runtime,
        address=args.address,
        capacity=args.capacity,
        wheels=tuple(sorted(args.wheels.glob("*.whl"))) if args.wheels else (),
        package=args.package,
        extra_env=extra,
        wait_heartbeat_seconds=args.wait,
        check_nats_url=args.check_nats_url,
        nats_password=os.environ.get(args.nats_password_env, "")
        if args.nats_password_env
        else "",
    )

    def say(text: str) -> None:
        sys.stderr.write(f"==> {text}\n")
        sys.stderr.flush()

    try:
        asyncio.run(bootstrap(opts, say=say))
    except (BootstrapError, OSError, asyncssh.Error) as exc:
        sys.exit(f"bootstrap failed: {exc}")
