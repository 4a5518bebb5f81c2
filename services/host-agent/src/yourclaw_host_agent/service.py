"""The rules of host commands, whatever the runtime: idempotent by container name,
and fenced.

Fencing: the provisioner gives every placement of an assistant a generation and
puts it on the commands about it. The host records the generation of each
container it creates (in `<data dir>/.generations.json`, so a restarted agent
still knows) and refuses a command older than that (`STALE_GENERATION`); a
command past its expiry is refused unexecuted (`COMMAND_EXPIRED`). So a command
delivered late — buffered while NATS was away, or from a provisioner that had
given up on this host — never removes or replaces a newer placement.

Sealing: a create's secrets come sealed to this host's key (`HostKey`, made at
first start in `<data dir>/.host-key`, announced in the heartbeat); the service
opens them before anything reads the spec. A spec sealed to another key is
refused (`SEALED_FOR_ANOTHER_KEY`): the provisioner re-seals to the key of the
latest heartbeat.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from yourclaw_common.errors import PermanentError, YourClawError
from yourclaw_common.events import ContainerInfo, ContainerSpec
from yourclaw_common.logging import get_logger
from yourclaw_common.sealing import HOST_KEY_FILE, HostKey

from yourclaw_host_agent.errors import ContainerNotFound, NoCapacity, PortInUse
from yourclaw_host_agent.layout import (
    DataLayout,
    remove_tree,
    user_id_of,
    validate_spec,
    write_files,
)
from yourclaw_host_agent.metrics import (
    GATEWAYS_AWAKE,
    GATEWAYS_SUSPENDED,
    SUSPENSIONS,
    WAKE_SECONDS,
    WAKES,
)
from yourclaw_host_agent.runtimes import ContainerRuntime
from yourclaw_host_agent.sleep import Depth, SleepMarks, SleepRules, available_memory_mb

__all__ = ["CommandExpired", "HostService", "StaleGeneration"]

log = get_logger(__name__)

_ALIVE = ("running", "starting")
# Under memory pressure an awake gateway is stopped only after this much quiet:
# a turn waiting on a slow model writes nothing meanwhile.
_PRESSURE_MIN_IDLE_SECONDS = 60.0
_MIB = 1024 * 1024
_GENERATIONS_FILE = ".generations.json"


def _log_sleep_failed(name: str, exc: Exception) -> None:
    log.warning(
        "host_agent.sleep.failed",
        container=name,
        code=getattr(exc, "code", "OS_ERROR"),
        error=str(exc)[:300],
    )


class CommandExpired(PermanentError):
    """The command arrived after its expiry: its sender no longer waits for it."""

    code = "COMMAND_EXPIRED"


class StaleGeneration(PermanentError):
    """The command is for an older placement than the container this host runs."""

    code = "STALE_GENERATION"


def check_expiry(expires_at: datetime | None, verb: str) -> None:
    """Refuse a command delivered after its expiry."""
    if expires_at is not None and expires_at < datetime.now(UTC):
        raise CommandExpired(
            f"{verb} expired at {expires_at.isoformat()}; not executed"
        )


class _Generations:
    """The placement generation of each container, kept on disk."""

    def __init__(self, path: Path):
        self._path = path
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            loaded = {}
        self._by_name: dict[str, int] = {
            str(k): int(v) for k, v in loaded.items() if isinstance(v, int)
        }

    def get(self, name: str) -> int | None:
        return self._by_name.get(name)

    async def set(self, name: str, generation: int | None) -> None:
        if generation is None:
            if self._by_name.pop(name, None) is None:
                return
        elif self._by_name.get(name) == generation:
            return
        else:
            self._by_name[name] = generation
        await asyncio.to_thread(self._save, dict(self._by_name))

    def _save(self, snapshot: dict[str, int]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot))
        os.replace(tmp, self._path)


class HostService:
    """What a host does for each command; commands on one name run one at a time."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        layout: DataLayout,
        http: httpx.AsyncClient,
        *,
        capacity: int,
        on_change: Callable[[], None] = lambda: None,
        key: HostKey | None = None,
        sleep: SleepRules | None = None,
    ):
        self.runtime = runtime
        self.sleep = sleep or SleepRules()
        self.marks = SleepMarks()
        self.key = key or HostKey.load_or_create(layout.root / HOST_KEY_FILE)
        self.layout = layout
        self.capacity = capacity
        self._http = http
        self._on_change = on_change
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Gateways seen ready since this agent started them or since it
        # started: only those may sleep (a slow boot is not idleness); and
        # those seen still booting, whose idle time counts from when they
        # first answer.
        self._ready: set[str] = set()
        self._booting: set[str] = set()
        # Frozen gateways, watched for requests that arrive while they sleep;
        # those of them whose memory was moved to swap (`_deepen`).
        self._frozen: set[str] = set()
        self._swapped: set[str] = set()
        self._swapping_in: set[asyncio.Task[None]] = set()
        self._generations = _Generations(layout.root / _GENERATIONS_FILE)

    def generation_of(self, name: str) -> int | None:
        """The placement generation of the container this host runs under `name`."""
        return self._generations.get(name)

    def _fence(self, name: str, generation: int | None, verb: str) -> None:
        """Refuse a command for an older placement than the one running here."""
        current = self._generations.get(name)
        if generation is None or current is None or generation >= current:
            return
        log.warning(
            "host_agent.command.stale",
            verb=verb,
            container=name,
            generation=generation,
            current=current,
        )
        raise StaleGeneration(
            f"{verb} is for generation {generation} of {name}; this host runs "
            f"generation {current}",
            generation=generation,
            current=current,
        )

    async def create(
        self, spec: ContainerSpec, *, generation: int | None = None
    ) -> ContainerInfo:
        spec = self.key.open_spec(spec)
        validate_spec(spec)
        async with self._locks[spec.name]:
            self._fence(spec.name, generation, "create")
            info = await self._create(spec)
            if generation is not None:
                await self._generations.set(spec.name, generation)
        return info

    async def _create(self, spec: ContainerSpec) -> ContainerInfo:
        current = await self.runtime.inspect(spec.name)
        paths = self.layout.user(spec.user_id)
        if current.state != "missing" and current.spec_hash == spec.spec_hash:
            if current.state in _ALIVE:
                log.info("host_agent.create.unchanged", container=spec.name)
                return current
            if self.marks.depth(current, paths) is not None:
                # The same spec asleep: it stays asleep (a wake is what
                # brings it back), so a reconcile's re-create never undoes a
                # suspension.
                log.info("host_agent.create.asleep", container=spec.name)
                return current
            # Same spec, but stopped or crashed: bring it back as it was.
            self._ready.discard(spec.name)
            info = await self.runtime.start(spec.name)
            self.marks.touch(paths)
            self._on_change()
            return info
        others = [c for c in await self.runtime.list() if c.name != spec.name]
        # Sleepers leave room: the provisioner overcommits them, and memory
        # pressure stops the longest-idle ones.
        awake = [c for c in others if self._depth(c) is None]
        if current.state == "missing" and len(awake) >= self.capacity:
            raise NoCapacity(
                f"this host runs {len(awake)} of {self.capacity} gateways awake"
            )
        taken = next((c for c in others if c.port == spec.port), None)
        if taken is not None:
            raise PortInUse(
                f"port {spec.port} belongs to {taken.name} on this host",
                port=spec.port,
            )
        replacing = current.state != "missing"
        if replacing:
            # Replace: stop, rewrite files and env, start; the workspace and
            # the gateway's state (sessions) stay.
            await self.runtime.stop(spec.name)
        await self.runtime.prepare(spec, paths)
        await asyncio.to_thread(
            write_files,
            paths,
            dict(spec.files),
            spec.remove_files,
            data_root=self.layout.root,
            owner=self.runtime.file_owner,
        )
        self._ready.discard(spec.name)
        info = await self.runtime.run(spec, paths)
        self.marks.clear(paths)
        self.marks.touch(paths)
        log.info(
            "host_agent.create.done",
            container=spec.name,
            port=spec.port,
            replaced=replacing,
        )
        self._on_change()
        return info

    async def transition(
        self,
        verb: Literal["start", "stop", "restart"],
        name: str,
        *,
        generation: int | None = None,
    ) -> ContainerInfo:
        """Start, stop or restart the container; with `generation`, only a copy
        of that generation or an older one."""
        user_id_of(name)
        act = {
            "start": self.runtime.start,
            "stop": self.runtime.stop,
            "restart": self.runtime.restart,
        }[verb]
        async with self._locks[name]:
            self._fence(name, generation, verb)
            paths = self.layout.for_name(name)
            depth = self._depth(await self.runtime.inspect(name))
            if verb == "stop" and depth is not None:
                # A sleeper stopped (the provisioner makes room for a wake)
                # stays a sleeper, stopped; marked before, as in a suspension.
                self.marks.mark(paths, "stopped")
                info = await act(name)
                if depth == "frozen":
                    SUSPENSIONS.labels("stopped", "command").inc()
            else:
                info = await act(name)
                # Started, restarted, or an awake one stopped by an operator
                # (never woken by a schedule): not a sleeper.
                self.marks.clear(paths)
                if verb != "stop":
                    self.marks.touch(paths)
        self._on_change()
        return info

    async def remove(
        self,
        name: str,
        *,
        purge_workspace: bool = False,
        generation: int | None = None,
    ) -> ContainerInfo:
        """Remove the container; with `generation`, only a copy of that
        generation or an older one (a newer placement is kept)."""
        paths = self.layout.for_name(name)
        async with self._locks[name]:
            self._fence(name, generation, "remove")
            await self.runtime.remove(name)
            self._ready.discard(name)
            await self._generations.set(name, None)
            # The config holds the gateway token: it goes with the container. The
            # workspace stays unless the account is gone.
            target = paths.root if purge_workspace else paths.config
            await asyncio.to_thread(remove_tree, target, data_root=self.layout.root)
            log.info("host_agent.remove.done", container=name, purged=purge_workspace)
        self._on_change()
        return ContainerInfo(name=name, state="missing")

    async def inspect(self, name: str) -> ContainerInfo:
        user_id_of(name)
        return await self.runtime.inspect(name)

    async def list(self) -> list[ContainerInfo]:
        return await self.runtime.list()

    async def logs(self, name: str, tail: int) -> str:
        user_id_of(name)
        return await self.runtime.logs(name, tail)

    async def health(self, name: str, *, wait_seconds: float = 0) -> ContainerInfo:
        """Probe the gateway's GET /readyz, OpenClaw's traffic admission (startup
        done, agents usable; never a chat completion, which would open a
        session), for up to `wait_seconds` while it is starting."""
        user_id_of(name)
        deadline = time.monotonic() + wait_seconds
        info = await self.runtime.inspect(name)
        while True:
            if info.state == "missing":
                raise ContainerNotFound(f"{name} does not exist on this host")
            healthy = info.state in _ALIVE and await self._probe(info.port)
            if healthy:
                self._answered(name)
            if healthy or time.monotonic() >= deadline:
                return info.model_copy(
                    update={
                        "healthy": healthy,
                        "state": "running" if healthy else info.state,
                    }
                )
            await asyncio.sleep(0.1)
            info = await self.runtime.inspect(name)
            if info.state not in _ALIVE and info.state != "missing":
                # Stopped or crashed: waiting longer cannot make it healthy.
                return info.model_copy(update={"healthy": False})

    def _answered(self, name: str) -> bool:
        """Note that the gateway answered its probe: ready until it is stopped
        or re-created. True for its first answer after a boot seen under way:
        it is idle from then, so a boot slower than the idle time does not
        send it to sleep before its first turn."""
        if name in self._ready:
            return False
        self._ready.add(name)
        if name not in self._booting:
            return False
        self._booting.discard(name)
        self.marks.touch(self.layout.for_name(name))
        return True

    async def _probe(self, port: int | None) -> bool:
        if port is None:
            return False
        url = f"http://{self.runtime.probe_host}:{port}/readyz"
        try:
            resp = await self._http.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def supervise(self) -> None:
        await self.runtime.supervise()
        listed = await self.runtime.list()
        # Frozen gateways are watched for knocks (`answer_knocks`) whether or
        # not this host puts gateways to sleep itself: ones adopted after a
        # restart, or frozen by the `suspend` verb or an operator.
        frozen = {c.name for c in listed if c.state == "paused"}
        adopted, self._frozen = frozen - self._frozen, frozen
        self._swapped &= frozen  # a thawed or stopped one holds RAM again
        for name in adopted:
            # Frozen before this agent started (or by an operator), perhaps
            # swapped too: known as such, so it holds no room and its wake is
            # counted right. Looked at once, when first seen frozen.
            usage = await self.runtime.swap_usage(name)
            if usage is not None and usage.swapped > usage.resident:
                self._swapped.add(name)
        if self.sleep.enabled:
            await self._tend_sleepers(listed)

    # -- sleep -----------------------------------------------------------------

    def _depth(self, info: ContainerInfo) -> Depth | None:
        return self.marks.depth(info, self.layout.for_name(info.name))

    def sleep_state(self, info: ContainerInfo) -> tuple[Depth | None, int | None]:
        """How deep the container sleeps, and when its next automation is due
        (Unix seconds), for the heartbeat."""
        paths = self.layout.for_name(info.name)
        due = self.marks.next_due(paths)
        return self.marks.depth(info, paths), int(due) if due is not None else None

    async def suspend(
        self, name: str, *, generation: int | None = None
    ) -> ContainerInfo:
        """Freeze the container now (ops, tests); a sleeper stays as it is."""
        user_id_of(name)
        async with self._locks[name]:
            self._fence(name, generation, "suspend")
            info = await self.runtime.inspect(name)
            if info.state == "missing":
                raise ContainerNotFound(f"{name} does not exist on this host")
            if info.state in _ALIVE:
                info = await self._put_to_sleep(info, "frozen", "command")
        self._on_change()
        return info

    async def wake(
        self, name: str, *, wait_seconds: float = 0, generation: int | None = None
    ) -> ContainerInfo:
        """Unpause or start the container, then probe it for up to
        `wait_seconds`; on an awake one only the probe. A thawed one that was
        ready when it froze is answered without the probe: its process goes
        on where it stopped, and OpenClaw, past a minute frozen, first runs a
        thaw recovery (a health refresh) that its readiness waits behind
        (about half a second) and the turn need not."""
        user_id_of(name)
        started = time.monotonic()
        async with self._locks[name]:
            self._fence(name, generation, "wake")
            from_state = await self._wake(name, "command")
        if from_state in ("frozen", "swapped") and name in self._ready:
            info = await self.runtime.inspect(name)
            info = info.model_copy(update={"healthy": info.state == "running"})
        else:
            info = await self.health(name, wait_seconds=wait_seconds)
        if from_state is not None and info.healthy:
            WAKE_SECONDS.labels(from_state).observe(time.monotonic() - started)
        return info

    async def _wake(self, name: str, reason: str) -> str | None:
        """Under the name's lock: wake it if it sleeps (or is stopped); the
        depth it slept at (`frozen`, `swapped`, `stopped`), None if it was
        awake."""
        paths = self.layout.for_name(name)
        swapped = name in self._swapped
        self._frozen.discard(name)
        self._swapped.discard(name)
        info = await self.runtime.inspect(name)
        if info.state == "missing":
            raise ContainerNotFound(f"{name} does not exist on this host")
        depth = self.marks.depth(info, paths)
        if info.state == "paused":
            # What it has in swap (deep sleep; also one swapped before an
            # agent restart) comes back in one bulk read while it thaws, not
            # 4 KB per fault as the turn touches it.
            task = asyncio.create_task(self._swap_in(name))
            self._swapping_in.add(task)
            task.add_done_callback(self._swapping_in.discard)
            await self.runtime.unfreeze(name)
        elif info.state in ("stopped", "exited"):
            # A boot brings it back into memory: not past the host's capacity.
            # On a full host another gateway makes room, if one may.
            in_memory = [
                c
                for c in await self.runtime.list()
                if c.name != name
                and c.state in (*_ALIVE, "paused")
                and c.name not in self._swapped
            ]
            if len(in_memory) >= self.capacity and not await self._make_room(
                name, in_memory
            ):
                raise NoCapacity(
                    f"this host holds {len(in_memory)} of {self.capacity} "
                    "gateways in memory (awake or frozen)"
                )
            # PortInUse when another process took its port meanwhile: the
            # provisioner moves it to another port of this host.
            await self.runtime.start(name)
        else:
            self.marks.clear(paths)
            return None
        # The mark goes after the runtime call: an agent killed in between
        # finds the container running, which wins over the mark, and the
        # next wake finds nothing left to do.
        self.marks.clear(paths)
        if reason != "request":
            # Not for a knock: its turn is activity of its own, and a stray
            # connection (one made just as it froze) lets it freeze again at
            # the next heartbeat instead of a whole idle time later.
            self.marks.touch(paths)
        from_state = "swapped" if swapped else depth or "stopped"
        WAKES.labels(from_state, reason).inc()
        log.info(
            "host_agent.sleep.woken",
            container=name,
            from_state=from_state,
            reason=reason,
        )
        self._on_change()
        return from_state

    async def _make_room(
        self, waking: str, in_memory: builtins.list[ContainerInfo]
    ) -> bool:
        """Free one gateway's memory so that `waking` can boot on a full host
        (`_deepen`): the longest-idle frozen one, else the longest-idle awake
        one quiet for a minute and serving no turn. It becomes a swapped or
        stopped sleeper (SUSPENDED; its next message wakes it). False when
        none may go."""
        now = time.time()
        frozen: list[tuple[float, ContainerInfo]] = []
        awake: list[tuple[float, ContainerInfo]] = []
        for info in in_memory:
            if self._locks[info.name].locked():
                continue  # a command (or its own wake) is at it
            idle = now - self.marks.last_activity(self.layout.for_name(info.name))
            if info.state == "paused":
                frozen.append((idle, info))
            elif idle >= _PRESSURE_MIN_IDLE_SECONDS and not (
                (await self.runtime.sockets(info.name)).open
            ):
                awake.append((idle, info))
        for _, info in [
            *sorted(frozen, key=lambda c: -c[0]),
            *sorted(awake, key=lambda c: -c[0]),
        ]:
            lock = self._locks[info.name]
            if lock.locked():
                continue
            async with lock:
                try:
                    await self._deepen(info, "room")
                except (YourClawError, OSError) as exc:
                    _log_sleep_failed(info.name, exc)
                    continue
            log.info("host_agent.sleep.room_made", container=waking, stopped=info.name)
            return True
        return False

    async def _put_to_sleep(
        self, info: ContainerInfo, depth: Depth, reason: str
    ) -> ContainerInfo:
        paths = self.layout.for_name(info.name)
        if depth == "frozen":
            info = await self.runtime.freeze(info.name)
            self._frozen.add(info.name)
        else:
            self._ready.discard(info.name)  # it boots again when woken
            # Marked first: an agent killed before the stop sees the engine's
            # state, which wins; one killed after finds a marked sleeper.
            self.marks.mark(paths, "stopped")
            info = await self.runtime.stop(info.name)
        SUSPENSIONS.labels(depth, reason).inc()
        log.info(
            "host_agent.sleep.suspended",
            container=info.name,
            depth=depth,
            reason=reason,
            idle_seconds=round(time.time() - self.marks.last_activity(paths)),
        )
        self._on_change()
        return info

    async def settle(self) -> None:
        """Let read-backs under way finish (at shutdown): each is a thread the
        event loop cannot cancel, done within seconds."""
        await asyncio.gather(*self._swapping_in, return_exceptions=True)

    async def _swap_in(self, name: str) -> None:
        try:
            await self.runtime.swap_in(name)
        except (YourClawError, OSError) as exc:
            _log_sleep_failed(name, exc)  # it faults its pages in instead

    async def _deepen(self, info: ContainerInfo, reason: str) -> ContainerInfo:
        """Free a gateway's memory: frozen with its memory moved to the host's
        swap when the host allows it (a wake stays a thaw), else stopped (a
        wake is a boot). docs/sleep.md, "Deep sleep"."""
        if self.sleep.swap and info.name not in self._swapped:
            if info.state != "paused":
                info = await self._put_to_sleep(info, "frozen", reason)
            moved = await self.runtime.swap_out(
                info.name, keep_free=self.sleep.swap_reserve_mb * _MIB
            )
            if moved is not None:
                self._swapped.add(info.name)
                SUSPENSIONS.labels("swapped", reason).inc()
                log.info(
                    "host_agent.sleep.swapped",
                    container=info.name,
                    reason=reason,
                    swapped_mb=moved.swapped // _MIB,
                    resident_mb=moved.resident // _MIB,
                )
                self._on_change()
                return info
        return await self._put_to_sleep(info, "stopped", reason)

    async def _tend_sleepers(self, listed: builtins.list[ContainerInfo]) -> None:
        """Every heartbeat: freeze the idle, stop the long idle, wake those
        whose automation is due, and stop one gateway if memory runs short."""
        now = time.time()
        rules = self.sleep
        frozen: list[tuple[float, ContainerInfo]] = []
        awake: list[tuple[float, ContainerInfo]] = []
        for info in listed:
            lock = self._locks[info.name]
            if lock.locked():
                continue  # a command is at it; next pass
            paths = self.layout.for_name(info.name)
            depth = self.marks.depth(info, paths)
            if info.state == "running" and info.name not in self._ready:
                # Never put to sleep before it has answered once.
                if not await self._probe(info.port):
                    self._booting.add(info.name)
                    continue
                if self._answered(info.name):
                    continue
            pending = rules.job_pending(self.marks.next_due(paths), now)
            idle = now - self.marks.last_activity(paths)
            # A turn being served (a model streaming for minutes writes no
            # database meanwhile) is no idleness.
            serving = (
                info.state == "running"
                and idle >= min(rules.suspend_after, _PRESSURE_MIN_IDLE_SECONDS)
                and (await self.runtime.sockets(info.name)).open > 0
            )
            async with lock:
                try:
                    if depth is not None and pending:
                        await self._wake(info.name, "schedule")
                    elif info.state == "running" and not pending and not serving:
                        if rules.stop_after and idle >= rules.stop_after:
                            await self._deepen(info, "idle")
                        elif idle >= rules.suspend_after:
                            await self._put_to_sleep(info, "frozen", "idle")
                        elif idle >= _PRESSURE_MIN_IDLE_SECONDS:
                            awake.append((idle, info))
                    elif depth == "frozen" and not pending:
                        if info.name in self._swapped:
                            pass  # its memory is in swap already
                        elif rules.stop_after and idle >= rules.stop_after:
                            await self._deepen(info, "idle")
                        else:
                            frozen.append((idle, info))
                except (YourClawError, OSError) as exc:
                    # One gateway's trouble (no room or port for a scheduled
                    # wake, an engine refusal) holds up neither the others
                    # nor the heartbeat; the next pass tries again.
                    _log_sleep_failed(info.name, exc)
        await self._relieve_memory(frozen, awake)

    async def answer_knocks(self) -> None:
        """Thaw a frozen gateway that a request is waiting at (docs/sleep.md):
        one sent by a turn that read the assistant awake just before it froze
        is answered now, not when something else wakes it."""
        for name in list(self._frozen):
            lock = self._locks[name]
            if lock.locked():
                continue  # a command is at it
            try:
                if not (await self.runtime.sockets(name)).waiting:
                    continue
                async with lock:
                    if name in self._frozen:
                        await self._wake(name, "request")
            except (YourClawError, OSError) as exc:
                _log_sleep_failed(name, exc)

    async def _relieve_memory(
        self,
        frozen: builtins.list[tuple[float, ContainerInfo]],
        awake: builtins.list[tuple[float, ContainerInfo]],
    ) -> None:
        reserve = self.sleep.memory_reserve_mb
        if not reserve:
            return
        available = await asyncio.to_thread(available_memory_mb)
        if available >= reserve:
            return
        # One per pass: the next pass measures what that one freed.
        for _, info in [
            *sorted(frozen, key=lambda c: -c[0]),
            *sorted(awake, key=lambda c: -c[0]),
        ]:
            lock = self._locks[info.name]
            if lock.locked():
                continue
            async with lock:
                current = await self.runtime.inspect(info.name)
                if current.state not in ("running", "paused"):
                    continue
                log.warning(
                    "host_agent.sleep.memory_pressure",
                    available_mb=available,
                    reserve_mb=reserve,
                    container=info.name,
                )
                try:
                    await self._deepen(current, "memory")
                except (YourClawError, OSError) as exc:
                    _log_sleep_failed(info.name, exc)
                    continue
            return

    def count_sleepers(
        self, containers: builtins.list[ContainerInfo]
    ) -> tuple[int, int]:
        """(awake, asleep) among `containers`, and the gauges set to them."""
        depths: list[str | None] = [
            "swapped" if c.name in self._swapped else self._depth(c) for c in containers
        ]
        asleep = {d: depths.count(d) for d in ("frozen", "swapped", "stopped")}
        GATEWAYS_AWAKE.set(depths.count(None))
        for depth, count in asleep.items():
            GATEWAYS_SUSPENDED.labels(depth).set(count)
        return depths.count(None), sum(asleep.values())
