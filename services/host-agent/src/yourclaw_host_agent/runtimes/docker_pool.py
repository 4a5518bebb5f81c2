"""The `docker` runtime's warm pool (`WARM_POOL_SIZE`).

The runtime keeps that many spare containers booted, created by the same
`create_payload` as a user's (same flags, network and firewall), each on the
next free port of the provisioner's port grid, with its own slot folder
`<data>/.slots/<slot>/{config,workspace}` mounted and the config of the agent's
last create (`<data>/.slots/template.json`) with every credential replaced by
a random value nobody knows (no user file); so a claim changes only those
values, which OpenClaw hot-applies in about a second. Before the first create
there is no such config: spares boot with the gateway block alone, and are
replaced once one is seen.

A create for a new user on a spare's port claims it: the Engine renames the
container to the user's name (once: the spare's name is gone after, so no
second user can claim it), `<data>/<user_id>` becomes a link to the slot (the
mounts keep their sources, so an Engine restart of the container still finds
them), the spec's files land there and OpenClaw hot-reloads them. Labels are
fixed at create: a claimed container carries `yourclaw.pool-slot` instead of
`yourclaw.user_id`, and the agent's record of the claim
(`<data>/<user_id>/run/claim.json`: the spec without its files) says whose it
is; its next start or restart re-creates it with the user's labels.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from yourclaw_common.events import ContainerInfo, ContainerSpec
from yourclaw_common.logging import get_logger

from yourclaw_host_agent.errors import (
    InvalidRequest,
    PortInUse,
    RuntimeFailure,
    RuntimeUnavailable,
)
from yourclaw_host_agent.layout import UserPaths, user_id_of, write_files
from yourclaw_host_agent.metrics import WARM_CLAIMS, WARM_GATEWAYS
from yourclaw_host_agent.runtimes.docker_api import (
    MANAGED_LABEL,
    MIB,
    engine_message,
)
from yourclaw_host_agent.runtimes.warm import (
    CONFIG_FILE,
    admits_traffic,
    port_free,
    spare_config,
    spare_template,
    took_config,
)

if TYPE_CHECKING:
    from yourclaw_host_agent.runtimes.docker import DockerRuntime

__all__ = ["CLAIM_FILE", "POOL_LABEL", "POOL_PREFIX", "WarmPool"]

log = get_logger(__name__)

# Warm spares: their slot folders under the data dir, their label and names.
_SLOTS = ".slots"
POOL_LABEL = "yourclaw.pool-slot"
POOL_PREFIX = "yourclaw-pool-"
CLAIM_FILE = "claim.json"
# The last create's config without its credentials (`<data>/.slots/<file>`),
# and the label that says which one a spare booted with.
_TEMPLATE_FILE = "template.json"
_TEMPLATE_LABEL = "yourclaw.pool-template"
_NO_TEMPLATE = "none"
# How long a port stays reserved for a create between `prepare` and `run`.
_RESERVE_SECONDS = 120.0


@dataclass(frozen=True)
class _Spare:
    name: str
    slot: str
    port: int
    state: str
    template: str


@dataclass(eq=False)
class WarmPool:
    """The spares of one data dir, and the claims on them, through `engine`."""

    engine: DockerRuntime
    data_dir: str
    size: int
    port_grid: range
    image: str
    takeover_timeout: float
    # Spares are spawned, claimed and retired under this lock, so a spare
    # never goes to two users and a port never gets two spares.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    # Ports a create is about to use (between `prepare` and `run`), with
    # when: the pool must not boot a spare there meanwhile.
    _reserved: dict[int, float] = field(default_factory=dict, init=False)
    # Container name → the slot `prepare` claimed for it, until `run`.
    _claims: dict[str, str] = field(default_factory=dict, init=False)
    _fill_task: asyncio.Task[None] | None = field(default=None, init=False)

    async def close(self) -> None:
        # Spares keep running: the next agent on this data dir adopts them
        # (`make clean` and the sweep remove them).
        if self._fill_task is not None:
            self._fill_task.cancel()
            await asyncio.gather(self._fill_task, return_exceptions=True)
            self._fill_task = None

    def refill(self) -> None:
        """Bring the pool to its size, in the background: a spare's create
        must not hold up the heartbeat."""
        if self._fill_task is None or self._fill_task.done():
            self._fill_task = asyncio.create_task(self._fill_pool())

    async def prepare(self, spec: ContainerSpec, paths: UserPaths) -> None:
        """Before anything is written: hand a new user the spare on their
        port, or retire a spare in the way of their container."""
        if self.size:
            await asyncio.to_thread(self._learn_template, spec)
        # Even with the pool off: a spare left from a larger WARM_POOL_SIZE
        # may hold the port.
        async with self._lock:
            self._reserved[spec.port] = time.monotonic()
            spare = next((s for s in await self._spares() if s.port == spec.port), None)
            if spare is None:
                return
            if await self._claim(spare, spec, paths):
                self._claims[spec.name] = spare.slot
                WARM_CLAIMS.labels("taken").inc()
                log.info(
                    "host_agent.warm.claimed", container=spec.name, slot=spare.slot
                )
                return
            # Someone with files or keys of their own, another profile, or a
            # spare still booting: the port is theirs, the spare goes.
            WARM_CLAIMS.labels("retired").inc()
            await self._retire(spare)

    async def take_over(
        self, spec: ContainerSpec, paths: UserPaths
    ) -> ContainerInfo | None:
        """The spare `prepare` claimed for the spec, once it runs the spec's
        config; None if none was claimed, or it did not take the config in
        time (then it is replaced by a cold container)."""
        if spec.name not in self._claims:
            return None
        await asyncio.to_thread(self._save_claim, paths, spec)
        if await took_config(self.engine.probe_host, spec, self.takeover_timeout):
            log.info("host_agent.warm.taken", container=spec.name, port=spec.port)
            return await self.engine.inspect(spec.name)
        log.warning("host_agent.warm.reload_timeout", container=spec.name)
        return None

    def release(self, spec: ContainerSpec) -> None:
        """The create of `spec` is over: its claim and its port's reservation go."""
        self._claims.pop(spec.name, None)
        self._reserved.pop(spec.port, None)

    def claim_of(self, name: str) -> ContainerSpec | None:
        """The recorded claim of a container that was a warm spare."""
        try:
            user_id = user_id_of(name)
        except InvalidRequest:
            return None
        path = Path(self.data_dir) / str(user_id) / "run" / CLAIM_FILE
        try:
            spec = ContainerSpec.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None
        return spec if spec.name == name else None

    async def retire_all(self) -> int:
        """Remove every unclaimed spare of this data dir (the sweep)."""
        async with self._lock:
            spares = await self._spares()
            for spare in spares:
                await self._retire(spare)
        return len(spares)

    # -- claims ----------------------------------------------------------------

    @property
    def _template_path(self) -> Path:
        return Path(self.data_dir) / _SLOTS / _TEMPLATE_FILE

    def _learn_template(self, spec: ContainerSpec) -> None:
        """Keep the spec's config, credentials replaced, for the next spares."""
        template = spare_template(spec.files.get(CONFIG_FILE, ""))
        if template is None or template == self._template():
            return
        path = self._template_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(template)
        tmp.chmod(0o600)
        tmp.replace(path)

    def _template(self) -> str | None:
        try:
            return self._template_path.read_text()
        except OSError:
            return None

    async def _claim(
        self, spare: _Spare, spec: ContainerSpec, paths: UserPaths
    ) -> bool:
        fresh = not paths.root.exists() and not paths.root.is_symlink()
        if not fresh or spec.env or spare.state != "running":
            return False
        if not await self._fits(spare.name, spec):
            return False
        if not await admits_traffic(self.engine.probe_host, spec.port):
            return False
        resp = await self.engine._call(
            "POST", f"/containers/{spare.name}/rename?name={quote(spec.name)}"
        )
        if resp.status_code != 204:
            log.warning(
                "host_agent.warm.rename_failed",
                container=spec.name,
                error=engine_message(resp),
            )
            return False
        await asyncio.to_thread(self._link_slot, paths, spare.slot)
        return True

    def _link_slot(self, paths: UserPaths, slot: str) -> None:
        paths.root.parent.mkdir(parents=True, exist_ok=True)
        paths.root.symlink_to(Path(_SLOTS) / slot)

    async def _fits(self, name: str, spec: ContainerSpec) -> bool:
        """Whether the spare was created with the profile `spec` asks for."""
        resp = await self.engine._call("GET", f"/containers/{name}/json")
        if resp.status_code != 200:
            return False
        data = resp.json()
        host = data.get("HostConfig") or {}
        return bool(
            (data.get("Config") or {}).get("Image") == spec.image
            and host.get("Memory") == spec.memory_mb * MIB
            and host.get("NanoCpus") == int(spec.cpus * 1e9)
            and host.get("PidsLimit") == spec.pids_limit
        )

    def _save_claim(self, paths: UserPaths, spec: ContainerSpec) -> None:
        # The spec without its files (config and workspace are on disk): what
        # a start or restart re-creates the container from.
        write_files(
            paths,
            {
                f"run/{CLAIM_FILE}": spec.model_copy(
                    update={"files": {}}
                ).model_dump_json()
            },
            data_root=Path(self.data_dir),
        )

    # -- spares ----------------------------------------------------------------

    async def _spares(self) -> list[_Spare]:
        """The unclaimed spares of this data dir, whatever their state."""
        found = []
        engine = self.engine
        for item in await engine._containers([POOL_LABEL, *engine._labels()]):
            name = str((item.get("Names") or [""])[0]).lstrip("/")
            labels = item.get("Labels") or {}
            port = str(labels.get("yourclaw.port", ""))
            if name.startswith(POOL_PREFIX) and port.isdigit():
                found.append(
                    _Spare(
                        name,
                        str(labels[POOL_LABEL]),
                        int(port),
                        str(item.get("State", "")),
                        str(labels.get(_TEMPLATE_LABEL, _NO_TEMPLATE)),
                    )
                )
        return found

    async def _retire(self, spare: _Spare) -> None:
        await self.engine._delete(spare.name)
        await asyncio.to_thread(
            shutil.rmtree, Path(self.data_dir) / _SLOTS / spare.slot, True
        )
        log.info("host_agent.warm.retired", port=spare.port, slot=spare.slot)

    async def _fill_pool(self) -> None:
        try:
            async with self._lock:
                await self._fill()
        except (RuntimeUnavailable, RuntimeFailure, PortInUse, OSError) as exc:
            log.warning("host_agent.warm.fill_failed", error=str(exc)[:300])

    async def _fill(self) -> None:
        alive = 0
        templated = self._template() is not None
        for spare in await self._spares():
            if (
                spare.state in ("running", "restarting")
                and alive < self.size
                # One booted before any config was seen would restart on its
                # claim: replaced as soon as there is a template. One from an
                # older template stays (what differs, a model say, hot-applies).
                and not (templated and spare.template == _NO_TEMPLATE)
            ):
                alive += 1
            else:  # exited, never started, one too many, or without a template
                await self._retire(spare)
        now = time.monotonic()
        self._reserved = {
            p: at for p, at in self._reserved.items() if now - at < _RESERVE_SECONDS
        }
        taken = set(self._reserved)
        for item in await self.engine._containers(self.engine._labels()):
            label = str((item.get("Labels") or {}).get("yourclaw.port", ""))
            if label.isdigit():
                taken.add(int(label))
        for port in self.port_grid:
            if alive >= self.size:
                break
            if port in taken or not port_free(port, self.engine.probe_host):
                continue
            await self._spawn_spare(port)
            alive += 1
        WARM_GATEWAYS.set(alive)

    async def _spawn_spare(self, port: int) -> None:
        slot = uuid.uuid4().hex
        paths = UserPaths(Path(self.data_dir) / _SLOTS / slot)
        # The last user's config with credentials nobody knows, and an empty
        # workspace.
        template = await asyncio.to_thread(self._template)
        template_id = (
            hashlib.sha256(template.encode()).hexdigest()[:16]
            if template is not None
            else _NO_TEMPLATE
        )
        await asyncio.to_thread(
            write_files,
            paths,
            {CONFIG_FILE: json.dumps(spare_config(template), indent=2)},
            data_root=Path(self.data_dir),
            owner=self.engine.file_owner,
        )
        # Nobody's: the user's profile but no user, no LLM credential, no env.
        spec = ContainerSpec(
            user_id=uuid.UUID(int=0),
            name=f"{POOL_PREFIX}{slot}",
            port=port,
            image=self.image,
            spec_hash="pool",
        )
        await self.engine._ensure_ready()
        resp = await self.engine._create(
            spec,
            paths,
            labels={
                MANAGED_LABEL: "true",
                POOL_LABEL: slot,
                _TEMPLATE_LABEL: template_id,
                "yourclaw.data_dir": self.data_dir,
                "yourclaw.spec_hash": spec.spec_hash,
                "yourclaw.port": str(port),
            },
        )
        spare = _Spare(spec.name, slot, port, "created", template_id)
        if resp.status_code != 201:
            await self._retire(spare)
            raise RuntimeFailure(f"cannot create a spare: {engine_message(resp)}")
        try:
            await self.engine._start(spec.name)
        except (PortInUse, RuntimeFailure):
            await self._retire(spare)  # someone else's port, say: try later
            raise
        log.info("host_agent.warm.spawned", port=port, slot=slot)
