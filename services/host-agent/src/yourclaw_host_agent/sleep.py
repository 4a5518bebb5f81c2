"""What the host knows about a gateway's sleep, read from the user's folders
(docs/sleep.md).

Activity: OpenClaw 2026.9.6 keeps its sessions in SQLite
(`config/agents/<agent>/agent/openclaw-agent.sqlite` and its `-wal`), written
on every turn and automation run; the newest mtime of those, or of the agent's
own mark of the last create or wake (`run/woken`), is the last activity.

Schedule: its cron store is the table `cron_jobs` of `config/state/openclaw.sqlite`
(`enabled`, `declaration_key`, `state_json.nextRunAtMs`). Only the user's own
jobs count: OpenClaw declares maintenance jobs of its own (a heartbeat every
30 minutes, a nightly memory promotion, a weekly skill review; they carry a
`declaration_key`) which would otherwise wake every sleeper twice an hour.
The store is opened read-only; a locked, missing or foreign one reads as "no
job".

Depth: frozen is the runtime's own state (`paused`), so a restarted agent
sees it; a stopped sleeper is told from a container an operator stopped by
`run/sleep.json`, written before the stop and removed after a wake.

A knock: a frozen process accepts nothing, but its kernel still queues what
arrives. A connection waiting in the gateway's listen queue, or unread bytes
on a connection it holds (a keep-alive one), is a request that came while it
slept; the host thaws it. A connection it holds is a turn being served (a
model streaming for minutes writes no database meanwhile): no gateway is put
to sleep while it holds one. Both are read from the process's own view of
/proc/<pid>/net/tcp (`gateway_sockets`), the container's network namespace
for a container; the process runtime counts only the sockets the gateway's
own processes hold, since it shares the host's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil
from yourclaw_common.events import ContainerInfo
from yourclaw_common.logging import get_logger

from yourclaw_host_agent.layout import UserPaths

__all__ = [
    "AGENT_DB_GLOB",
    "CRON_DB",
    "Depth",
    "SleepMarks",
    "SleepRules",
    "Sockets",
    "available_memory_mb",
    "gateway_sockets",
]

log = get_logger(__name__)

Depth = Literal["frozen", "stopped"]

# Relative to the user's config folder (OpenClaw's state dir).
AGENT_DB_GLOB = "agents/*/agent/openclaw-agent.sqlite"
CRON_DB = Path("state") / "openclaw.sqlite"
_MARK = "sleep.json"
_WOKEN = "woken"
_NEXT_DUE = (
    "SELECT state_json FROM cron_jobs WHERE enabled = 1 AND declaration_key IS NULL"
)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def available_memory_mb() -> int:
    """What the kernel says can be allocated without swapping (MemAvailable)."""
    return int(psutil.virtual_memory().available // (1024 * 1024))


def _read_next_due(db: Path) -> float | None:
    # `mode=ro` never changes the file; a busy writer waits at most the
    # timeout, then the store reads as "no job" until the next pass.
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute(_NEXT_DUE).fetchall()
    except sqlite3.Error as exc:
        log.debug("host_agent.sleep.cron_unreadable", db=str(db), error=str(exc))
        return None
    finally:
        conn.close()
        _give_back_sidecars(db)
    due: list[float] = []
    for (state_json,) in rows:
        try:
            at = json.loads(state_json or "{}").get("nextRunAtMs")
        except (ValueError, AttributeError):
            continue
        if isinstance(at, int | float) and at > 0:
            due.append(at / 1000)
    return min(due, default=None)


def _give_back_sidecars(db: Path) -> None:
    """A reader of a WAL database the gateway has closed creates its `-wal`
    and `-shm` files, and leaves them. Owned by the agent, they would keep
    the gateway (uid 1000) from opening its own store at the next boot. SQLite
    hands them to the database's owner when run as root; an agent that is
    not root but may chown (the systemd unit's) does the same here."""
    try:
        owner = db.stat()
    except OSError:
        return
    for suffix in ("-wal", "-shm"):
        sidecar = db.with_name(db.name + suffix)
        try:
            if sidecar.stat().st_uid != owner.st_uid:
                os.chown(sidecar, owner.st_uid, owner.st_gid)
        except OSError:
            continue  # none, or not ours to give: as SQLite left it


_LISTEN, _ESTABLISHED = "0A", "01"


@dataclass(frozen=True)
class Sockets:
    """A gateway's sockets on its port, as its kernel sees them."""

    # Connections it holds (a turn being served, or a keep-alive one).
    open: int = 0
    # A request waits: a connection not yet accepted, or unread bytes on one.
    waiting: bool = False
    # It listens on the port (booted that far).
    listening: bool = False


def gateway_sockets(
    pid: int, port: int, *, owners: Collection[int] | None = None
) -> Sockets:
    """The sockets of the process `pid`'s network namespace on `port`; none
    when they cannot be read (the process is gone). With `owners`, only the
    sockets those processes hold: where a gateway shares the host's namespace
    (the process runtime), another process may use its port number."""
    held = None if owners is None else _socket_inodes(owners)
    open_, waiting, listening = 0, False, False
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local rem st tx_queue:rx_queue tr:tm retrnsmt uid timeout
            # inode …; for a listener the kernel shows its accept queue as
            # rx_queue.
            fields = line.split()
            if len(fields) < 10 or fields[3] not in (_LISTEN, _ESTABLISHED):
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            if held is not None and fields[9] not in held:
                continue
            open_ += fields[3] == _ESTABLISHED
            listening = listening or fields[3] == _LISTEN
            waiting = waiting or int(fields[4].split(":")[1], 16) > 0
    return Sockets(open_, waiting, listening)


def _socket_inodes(pids: Collection[int]) -> set[str]:
    """The inodes of the sockets the processes `pids` have open."""
    found = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                found.add(target[len("socket:[") : -1])
    return found


@dataclass(frozen=True)
class SleepRules:
    """The host's sleep settings (IDLE_SUSPEND_AFTER_SECONDS, …); the default
    sleeps nothing."""

    suspend_after: float = 0.0
    stop_after: float = 0.0
    wake_lead: float = 60.0
    memory_reserve_mb: int = 0
    # Deep sleep moves a frozen gateway's memory to the host's swap instead
    # of stopping it, keeping this much swap free (docs/sleep.md).
    swap: bool = False
    swap_reserve_mb: int = 1024

    @property
    def enabled(self) -> bool:
        return self.suspend_after > 0

    def job_pending(self, due: float | None, now: float) -> bool:
        """A job is due within the lead, or was due a short while ago and may
        not have run yet: the gateway must be (and stay) awake. Bounded, so a
        job that never runs does not keep it awake for good."""
        if due is None:
            return False
        return due - self.wake_lead <= now < due + max(self.suspend_after, 60.0)


@dataclass
class _Cached:
    key: tuple[float | None, float | None]
    due: float | None


class SleepMarks:
    """Reads activity and schedule from a user's folders, and keeps the
    agent's own marks there."""

    def __init__(self) -> None:
        # The cron store is read again only when it (or its -wal) changed.
        self._due: dict[Path, _Cached] = {}
        # A gateway with neither mark nor database (made by an older agent)
        # is idle from this agent's start.
        self.started_at = time.time()

    def last_activity(self, paths: UserPaths) -> float:
        """Unix time of the last turn, automation run, create or wake."""
        times = [_mtime(paths.run / _WOKEN)]
        for db in paths.config.glob(AGENT_DB_GLOB):
            times += [_mtime(db), _mtime(db.with_name(db.name + "-wal"))]
        return max((t for t in times if t is not None), default=self.started_at)

    def touch(self, paths: UserPaths) -> None:
        """A create or wake: activity now."""
        paths.run.mkdir(parents=True, exist_ok=True)
        (paths.run / _WOKEN).touch()

    def next_due(self, paths: UserPaths) -> float | None:
        """Unix time the user's next enabled automation is due, if any."""
        db = paths.config / CRON_DB
        key = (_mtime(db), _mtime(db.with_name(db.name + "-wal")))
        if key[0] is None:
            self._due.pop(db, None)
            return None
        cached = self._due.get(db)
        if cached is None or cached.key != key:
            cached = _Cached(key, _read_next_due(db))
            self._due[db] = cached
        return cached.due

    def marked(self, paths: UserPaths) -> Depth | None:
        try:
            depth = json.loads((paths.run / _MARK).read_text()).get("depth")
        except (OSError, ValueError, AttributeError):
            return None
        return depth if depth in ("frozen", "stopped") else None

    def mark(self, paths: UserPaths, depth: Depth) -> None:
        paths.run.mkdir(parents=True, exist_ok=True)
        tmp = paths.run / f".{_MARK}.tmp"
        tmp.write_text(json.dumps({"depth": depth, "at": int(time.time())}))
        os.replace(tmp, paths.run / _MARK)

    def clear(self, paths: UserPaths) -> None:
        (paths.run / _MARK).unlink(missing_ok=True)

    def depth(self, info: ContainerInfo, paths: UserPaths) -> Depth | None:
        """How deep the container sleeps; None: awake, or stopped by an operator."""
        if info.state == "paused":
            return "frozen"
        if info.state in ("stopped", "exited") and self.marked(paths) == "stopped":
            return "stopped"
        return None
