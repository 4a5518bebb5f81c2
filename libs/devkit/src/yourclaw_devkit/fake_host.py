"""A lightweight host-agent stand-in: the `host.<host_id>.<verb>` protocol and
heartbeats, with containers that are only records (and, optionally, a tiny HTTP
gateway per container answering `/healthz` and OpenAI chat completions).
Like the host-agent, it has a key pair, announces the public key in its
heartbeat and opens the sealed specs it is sent.

For tests and `bench/provisioning.py`, where the real host-agent would start a
real OpenClaw per user. Knobs let tests inject faults: failing or held creates,
gateways that never get healthy, silent heartbeats, vanished containers, idle
containers put to sleep and wakes that fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from yourclaw_common.errors import YourClawError
from yourclaw_common.events import (
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    CreateContainer,
    HostHeartbeat,
    HostReply,
    NamedContainer,
)
from yourclaw_common.sealing import HostKey

__all__ = ["FakeContainer", "FakeHost"]


@dataclass
class FakeContainer:
    spec: ContainerSpec
    created_at: float
    state: str = "running"
    server: asyncio.Server | None = None
    # Put to sleep (`FakeHost.sleep`): "frozen" or "stopped"; None: awake.
    sleeping: Literal["frozen", "stopped"] | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class FakeHost:
    """One fake host on a NATS connection; `await start()`, then `await stop()`."""

    nc: NATS
    host_id: str
    address: str = "127.0.0.1"
    capacity: int = 100
    heartbeat_interval: float = 0.5
    # Seconds after create until the gateway reports healthy.
    boot_seconds: float = 0.0
    # Serve a tiny HTTP gateway on each container's port (binds real ports).
    serve_http: bool = False
    # Its key pair; `rotate_key()` stands for a rotation or a lost disk.
    key: HostKey = field(default_factory=HostKey.generate)
    # Announce no public key, as an agent older than sealing.
    keyless: bool = False
    # The key heartbeats announce when not `key` (see `rotate_key`).
    announced: HostKey | None = None

    containers: dict[str, FakeContainer] = field(default_factory=dict)
    # Every command received, in order: (verb, parsed payload).
    commands: list[tuple[str, Any]] = field(default_factory=list)
    # The user's workspace survives remove unless purged: user_id → files.
    workspaces: dict[UUID, dict[str, str]] = field(default_factory=dict)
    # Fencing, as the host-agent does it: the placement generation of each
    # container, and every command refused (verb, code).
    generations: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)

    # Fault injection.
    fail_creates: int = 0
    # Ports a stray process holds: creates on them answer PORT_IN_USE.
    taken_ports: set[int] = field(default_factory=set)
    never_healthy: bool = False
    heartbeats_paused: bool = False
    # Cut off from NATS: no heartbeats, commands go unanswered.
    partitioned: bool = False
    # Container name → when the kernel "killed it for memory" (reported).
    oom_kills: dict[str, int] = field(default_factory=dict)
    # Wakes answered WAKE_FAILED before one succeeds; seconds a wake takes.
    refuse_wakes: int = 0
    wake_seconds: float = 0.0
    # When set, creates wait on it (after `create_received` is set).
    hold_creates: asyncio.Event | None = None
    create_received: asyncio.Event = field(default_factory=asyncio.Event)

    _subs: list[Subscription] = field(default_factory=list)
    _beat: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> FakeHost:
        self._subs.append(
            await self.nc.subscribe(f"host.{self.host_id}.*", cb=self._on_command)
        )
        await self.heartbeat()
        self._beat = asyncio.create_task(self._heartbeats())
        return self

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        for container in self.containers.values():
            self._close_server(container)

    def rotate_key(self, *, announce: bool = True) -> HostKey:
        """A new key pair, announced from the next heartbeat on; with
        `announce=False` heartbeats still carry the old public key until
        `announce_key()` (a restarted agent whose new key is not in yet)."""
        if not announce:
            self.announced = self.announced or self.key
        self.key = HostKey.generate()
        return self.key

    def announce_key(self) -> None:
        """Heartbeats carry the key the host holds again."""
        self.announced = None

    # What tests look at.

    def creates(self) -> list[ContainerSpec]:
        return [p.spec for verb, p in self.commands if verb == "create"]

    def removes(self) -> list[NamedContainer]:
        return [p for verb, p in self.commands if verb == "remove"]

    def running(self) -> set[str]:
        return {n for n, c in self.containers.items() if c.state == "running"}

    # Faults.

    def vanish(self, name: str) -> None:
        """The container disappears without anyone asking (crash, manual rm)."""
        container = self.containers.pop(name, None)
        if container is not None:
            self._close_server(container)

    def sleep(self, name: str, mode: Literal["frozen", "stopped"] = "stopped") -> None:
        """The host-agent put the idle container to sleep: "frozen" (paused)
        or "stopped"; either way its gateway stops answering until a wake."""
        container = self.containers[name]
        container.sleeping = mode
        container.state = "paused" if mode == "frozen" else "stopped"
        self._close_server(container)

    def wakes(self) -> list[NamedContainer]:
        return [p for verb, p in self.commands if verb == "wake"]

    def add_stray(self, spec: ContainerSpec) -> None:
        """A container this host runs that nobody asked it for."""
        self.containers[spec.name] = FakeContainer(spec, time.monotonic())

    async def heartbeat(self) -> None:
        hb = HostHeartbeat(
            host_id=self.host_id,
            address=self.address,
            runtime="process",
            capacity=self.capacity,
            used=len(self.containers),
            awake=sum(1 for c in self.containers.values() if c.sleeping is None),
            asleep=sum(1 for c in self.containers.values() if c.sleeping),
            public_key=None
            if self.keyless
            else (self.announced or self.key).public_key,
            containers=tuple(
                ContainerState(
                    name=c.name,
                    state=c.state,
                    port=c.spec.port,
                    oom_killed_at=self.oom_kills.get(c.name),
                    sleeping=c.sleeping,
                )
                for c in self.containers.values()
            ),
        )
        await self.nc.publish(hb.publish_subject(), hb.model_dump_json().encode())

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if not (self.heartbeats_paused or self.partitioned):
                with contextlib.suppress(Exception):
                    await self.heartbeat()

    # The protocol.

    async def _on_command(self, msg: Msg) -> None:
        if self.partitioned:
            return
        # nats-py runs one callback at a time per subscription; a held create
        # must not block health checks.
        task = asyncio.create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        try:
            reply = await self._dispatch(verb, msg.data)
        except Exception as exc:  # a stand-in answers, whatever happens
            reply = HostReply(ok=False, code="INTERNAL", error=str(exc)[:200])
        with contextlib.suppress(Exception):
            await msg.respond(reply.model_dump_json().encode())

    def _fence(
        self, verb: str, name: str, generation: int | None, expires_at: datetime | None
    ) -> HostReply | None:
        """The host-agent's refusals: an expired command, an older generation."""
        code = None
        if expires_at is not None and expires_at < datetime.now(UTC):
            code = "COMMAND_EXPIRED"
        current = self.generations.get(name)
        if generation is not None and current is not None and generation < current:
            code = "STALE_GENERATION"
        if code is None:
            return None
        self.refused.append((verb, code))
        return HostReply(ok=False, code=code, error=f"{verb} refused: {code}")

    async def _dispatch(self, verb: str, data: bytes) -> HostReply:
        if verb == "create":
            create = CreateContainer.model_validate_json(data)
            try:
                # Tests look at the spec as the host runs it, opened.
                create = create.model_copy(
                    update={"spec": self.key.open_spec(create.spec)}
                )
            except YourClawError as exc:
                self.commands.append((verb, create))
                self.refused.append((verb, exc.code))
                return HostReply(ok=False, code=exc.code, error=exc.detail)
            self.commands.append((verb, create))
            name = create.spec.name
            refused = self._fence(verb, name, create.generation, create.expires_at)
            if refused is not None:
                return refused
            reply = await self._create(create.spec)
            if reply.ok and create.generation is not None:
                self.generations[name] = create.generation
            return reply
        if verb == "list":
            self.commands.append((verb, None))
            return HostReply(
                ok=True, containers=[self._info(c) for c in self.containers.values()]
            )
        named = NamedContainer.model_validate_json(data)
        self.commands.append((verb, named))
        refused = self._fence(verb, named.name, named.generation, named.expires_at)
        if refused is not None:
            return refused
        container = self.containers.get(named.name)
        if verb == "remove":
            self.generations.pop(named.name, None)
            if container is not None:
                self._close_server(container)
                del self.containers[named.name]
            if named.purge_workspace and container is not None:
                self.workspaces.pop(container.spec.user_id, None)
            return HostReply(ok=True)
        if container is None:
            return HostReply(
                ok=True, container=ContainerInfo(name=named.name, state="missing")
            )
        if verb == "wake":
            return await self._wake(container, named.wait_seconds)
        if verb == "health":
            deadline = time.monotonic() + named.wait_seconds
            info = await self._health(container)
            while not info.healthy and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                if self.containers.get(named.name) is not container:
                    break
                info = await self._health(container)
            return HostReply(ok=True, container=info)
        if verb in ("inspect", "start", "restart"):
            if verb != "inspect":
                container.state = "running"
                container.created_at = time.monotonic()
            return HostReply(ok=True, container=self._info(container))
        if verb == "stop":
            container.state = "stopped"
            return HostReply(ok=True, container=self._info(container))
        if verb == "logs":
            return HostReply(ok=True, logs=f"fake logs of {named.name}\n")
        return HostReply(ok=False, code="UNKNOWN_VERB", error=verb)

    async def _create(self, spec: ContainerSpec) -> HostReply:
        self.create_received.set()
        if self.hold_creates is not None:
            await self.hold_creates.wait()
        current = self.containers.get(spec.name)
        if current is not None and current.spec.spec_hash == spec.spec_hash:
            return HostReply(ok=True, container=self._info(current))
        if self.fail_creates > 0:
            self.fail_creates -= 1
            return HostReply(ok=False, code="CREATE_FAILED", error="injected failure")
        if spec.port in self.taken_ports:
            return HostReply(
                ok=False, code="PORT_IN_USE", error=f"port {spec.port} is taken"
            )
        # Sleepers leave room (the provisioner overcommits them).
        awake = sum(1 for c in self.containers.values() if c.sleeping is None)
        if current is None and awake >= self.capacity:
            return HostReply(ok=False, code="NO_CAPACITY", error="host is full")
        if current is not None:
            self._close_server(current)
        workspace = self.workspaces.setdefault(spec.user_id, {})
        for path, content in spec.files.items():
            if path.startswith("workspace/"):
                workspace[path] = content
        container = FakeContainer(spec, time.monotonic())
        self.containers[spec.name] = container
        if self.serve_http:
            container.server = await _serve_gateway(spec, self.address)
        return HostReply(ok=True, container=self._info(container))

    async def _wake(self, container: FakeContainer, wait_seconds: float) -> HostReply:
        if self.refuse_wakes > 0:
            self.refuse_wakes -= 1
            return HostReply(ok=False, code="WAKE_FAILED", error="injected failure")
        if container.sleeping is not None:
            await asyncio.sleep(min(self.wake_seconds, wait_seconds))
            container.sleeping = None
            container.state = "running"
            container.created_at = time.monotonic() - self.boot_seconds
            if self.serve_http and container.server is None:
                container.server = await _serve_gateway(container.spec, self.address)
        return HostReply(ok=True, container=await self._health(container))

    async def _health(self, container: FakeContainer) -> ContainerInfo:
        booted = time.monotonic() - container.created_at >= self.boot_seconds
        healthy = booted and not self.never_healthy and container.state == "running"
        if healthy and container.server is not None:
            healthy = await _probe(self.address, container.spec.port)
        return self._info(container, healthy=healthy)

    def _info(
        self, container: FakeContainer, *, healthy: bool | None = None
    ) -> ContainerInfo:
        state = container.state
        if state == "running" and healthy is False and not self.never_healthy:
            state = "starting"
        return ContainerInfo(
            name=container.name,
            state=state,
            port=container.spec.port,
            spec_hash=container.spec.spec_hash,
            healthy=healthy,
        )

    @staticmethod
    def _close_server(container: FakeContainer) -> None:
        if container.server is not None:
            container.server.close()
            container.server = None


def _gateway_token(spec: ContainerSpec) -> str | None:
    try:
        config = json.loads(spec.files["config/openclaw.json"])
        return str(config["gateway"]["auth"]["token"])
    except (KeyError, ValueError, TypeError):
        return None


async def _serve_gateway(spec: ContainerSpec, address: str) -> asyncio.Server:
    """`GET /healthz` and `POST /v1/chat/completions` (bearer = the spec's token)."""
    token = _gateway_token(spec)

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            method, path, *_ = request.decode("latin-1").split()
            status, payload = _route(method, path, headers, body, token)
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, address, spec.port)


def _route(
    method: str, path: str, headers: dict[str, str], body: bytes, token: str | None
) -> tuple[str, dict[str, Any]]:
    if method == "GET" and path in ("/healthz", "/readyz"):
        return "200 OK", {"ok": True, "status": "live"}
    if method == "POST" and path == "/v1/chat/completions":
        if token is None or headers.get("authorization") != f"Bearer {token}":
            return "401 Unauthorized", {"error": {"message": "unauthorized"}}
        messages = json.loads(body or b"{}").get("messages") or [{}]
        text = str(messages[-1].get("content", ""))
        return "200 OK", {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"Echo: {text}"},
                    "finish_reason": "stop",
                }
            ],
        }
    return "404 Not Found", {"error": {"message": "not found"}}


async def _probe(address: str, port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port), timeout=1
        )
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout=1)
        return status.startswith(b"HTTP/1.1 200")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
