"""main(): settings → runtime (adopt what runs) → NATS → commands + heartbeat
→ wait for SIGTERM → drain. Gateways keep running when the agent stops."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import suppress

import httpx
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from yourclaw_common.events import (
    ContainerState,
    HostHeartbeat,
    HostVerb,
    host_command,
)
from yourclaw_common.logging import (
    bind_correlation_id,
    configure_logging,
    get_logger,
)
from yourclaw_common.nats import CORRELATION_HEADER, connect_as
from yourclaw_common.ops import serve_ops
from yourclaw_common.runtime import install_signal_handlers

from yourclaw_host_agent.handlers import handle_command
from yourclaw_host_agent.layout import DataLayout
from yourclaw_host_agent.metrics import CONTAINERS, HEARTBEATS
from yourclaw_host_agent.runtimes import ContainerRuntime
from yourclaw_host_agent.service import HostService
from yourclaw_host_agent.settings import HostAgentSettings
from yourclaw_host_agent.sleep import SleepRules

__all__ = ["HostAgent", "build_runtime", "main", "run"]

log = get_logger(__name__)

# Two agents for one host (a restart overlapping the old one): one answers.
_QUEUE = "host-agent"
# How often frozen gateways are checked for a waiting request: a message that
# reached one waits at most this long before its thaw (reading a few /proc
# files per frozen gateway).
KNOCK_POLL_SECONDS = 0.5
_STATES = ("running", "starting", "paused", "stopped", "exited")


def build_runtime(settings: HostAgentSettings, layout: DataLayout) -> ContainerRuntime:
    """The runtime HOST_RUNTIME names."""
    if settings.host_runtime == "docker":
        from yourclaw_host_agent.firewall import EgressAllow
        from yourclaw_host_agent.runtimes.docker import DockerRuntime, FirewallSettings

        firewall = None
        if settings.tenant_firewall:
            firewall = FirewallSettings(
                host_ports=tuple(settings.tenant_host_ports),
                egress_allow=tuple(
                    EgressAllow.parse(e) for e in settings.tenant_egress_allow
                ),
            )
        return DockerRuntime(
            socket_path=settings.docker_socket,
            publish_ip=settings.docker_publish_ip,
            stop_timeout=settings.gateway_stop_timeout_seconds,
            network=settings.tenant_network,
            bridge=settings.tenant_bridge,
            subnet=settings.tenant_subnet or None,
            firewall=firewall,
            pull_missing=settings.docker_pull_missing,
            rss_ceiling_percent=settings.gateway_rss_ceiling_percent,
            rss_check_seconds=settings.gateway_rss_check_seconds,
            restart_grace_seconds=settings.gateway_restart_grace_seconds,
            data_dir=str(layout.root),
            warm_pool=settings.warm_pool_size,
            port_grid=settings.port_grid,
            pool_image=settings.openclaw_image,
        )
    from yourclaw_host_agent.runtimes.process import ProcessRuntime

    log.warning(
        "host_agent.process_runtime.not_isolated",
        message=(
            "HOST_RUNTIME=process: assistants run as bare processes under this "
            "agent's user and can read each other's files and this agent's "
            "environment. Use it for tests and machines without Docker only."
        ),
    )

    return ProcessRuntime(
        layout,
        openclaw_dir=settings.openclaw_install_dir,
        stop_timeout=settings.gateway_stop_timeout_seconds,
        warm_pool=settings.warm_pool_size,
        port_grid=settings.port_grid,
    )


class HostAgent:
    """Serves `host.<host_id>.<verb>` and announces the host on `heartbeat.<host_id>`."""

    def __init__(
        self,
        settings: HostAgentSettings,
        nc: NATS,
        service: HostService,
        *,
        wake: asyncio.Event,
    ):
        self.settings = settings
        self.nc = nc
        self.service = service
        # Set by the service when a command changed something: beat now.
        self._wake = wake
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []

    async def subscribe(self) -> None:
        for verb in HostVerb:
            subject = host_command(self.settings.host_id, verb)
            self._subs.append(
                await self.nc.subscribe(subject, queue=_QUEUE, cb=self._on_request)
            )
        await self.nc.flush()

    async def _on_request(self, msg: Msg) -> None:
        # nats-py runs one callback at a time per subscription; a slow create must
        # not hold up a health probe.
        task = asyncio.create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        cid = (msg.headers or {}).get(CORRELATION_HEADER)
        with bind_correlation_id(cid):
            reply = await handle_command(self.service, verb, msg.data)
            if msg.reply:
                try:
                    await msg.respond(reply.model_dump_json().encode())
                except Exception as exc:
                    log.warning("host_agent.reply_failed", verb=verb, error=str(exc))

    async def heartbeat(self) -> HostHeartbeat:
        containers = await self.service.list()
        oom_kills = self.service.runtime.oom_kills()
        counts: Counter[str] = Counter(c.state for c in containers)
        for state in _STATES:
            CONTAINERS.labels(state).set(counts[state])
        awake, asleep = self.service.count_sleepers(containers)
        sleep = {c.name: self.service.sleep_state(c) for c in containers}
        return HostHeartbeat(
            host_id=self.settings.host_id,
            address=self.settings.host_address,
            runtime=self.service.runtime.kind,
            capacity=self.settings.host_capacity,
            used=len(containers),
            awake=awake,
            asleep=asleep,
            public_key=self.service.key.public_key,
            containers=tuple(
                ContainerState(
                    name=c.name,
                    state=c.state,
                    port=c.port,
                    oom_killed_at=oom_kills.get(c.name),
                    sleeping=sleep[c.name][0],
                    next_wake_at=sleep[c.name][1],
                )
                for c in containers
            ),
        )

    async def beat_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.service.supervise()
                beat = await self.heartbeat()
                await self.nc.publish(
                    beat.publish_subject(), beat.model_dump_json().encode()
                )
                HEARTBEATS.labels("sent").inc()
            except Exception as exc:
                HEARTBEATS.labels("failed").inc()
                log.warning("host_agent.heartbeat_failed", error=str(exc)[:300])
            waits = [
                asyncio.create_task(stop.wait()),
                asyncio.create_task(self._wake.wait()),
            ]
            await asyncio.wait(
                waits,
                timeout=self.settings.host_heartbeat_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for waiter in waits:
                waiter.cancel()

    async def close(self) -> None:
        for sub in self._subs:
            with suppress(Exception):
                await sub.unsubscribe()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _answer_knocks(service: HostService, stop: asyncio.Event) -> None:
    """Thaw frozen gateways a request waits at, every KNOCK_POLL_SECONDS."""
    while not stop.is_set():
        try:
            await service.answer_knocks()
        except Exception as exc:
            log.warning("host_agent.knocks_failed", error=str(exc)[:300])
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), KNOCK_POLL_SECONDS)


async def run(
    settings: HostAgentSettings,
    stop: asyncio.Event,
    *,
    runtime: ContainerRuntime | None = None,
) -> None:
    """Serve until `stop` is set (tests call this directly, with their own runtime)."""
    layout = DataLayout(settings.data_dir.resolve())
    runtime = runtime or build_runtime(settings, layout)
    await runtime.open()
    ops: asyncio.Server | None = None
    nc: NATS | None = None
    try:
        async with httpx.AsyncClient() as http:
            nc = await connect_as(settings, name=f"host-agent-{settings.host_id}")
            wake = asyncio.Event()
            service = HostService(
                runtime,
                layout,
                http,
                capacity=settings.host_capacity,
                on_change=wake.set,
                sleep=SleepRules(
                    suspend_after=settings.idle_suspend_after_seconds,
                    stop_after=settings.idle_stop_after_seconds,
                    wake_lead=settings.wake_lead_seconds,
                    memory_reserve_mb=settings.host_memory_reserve_mb,
                    swap=settings.swap_sleepers,
                    swap_reserve_mb=settings.host_swap_reserve_mb,
                ),
            )
            agent = HostAgent(settings, nc, service, wake=wake)

            async def readiness() -> dict[str, bool]:
                assert nc is not None
                return {"nats": nc.is_connected, "runtime": await runtime.ping()}

            if settings.metrics_port:
                ops = await serve_ops(
                    settings.metrics_host, settings.metrics_port, readiness
                )
            await agent.subscribe()
            log.info(
                "host_agent.started",
                host_id=settings.host_id,
                runtime=runtime.kind,
                data_dir=str(layout.root),
                capacity=settings.host_capacity,
                host_key=service.key.key_id,
            )
            knocks = asyncio.create_task(_answer_knocks(service, stop))
            try:
                await agent.beat_forever(stop)
            finally:
                # Stopped, or cancelled: the watcher goes with the agent.
                knocks.cancel()
                with suppress(asyncio.CancelledError):
                    await knocks
                await agent.close()
                await service.settle()
    finally:
        if ops is not None:
            ops.close()
        if nc is not None:
            with suppress(Exception):
                await nc.drain()
        await runtime.close()
        log.info("host_agent.stopped", host_id=settings.host_id)


async def sweep(settings: HostAgentSettings | None = None) -> int:
    """Stop and remove every gateway of this host's data dir, whichever runtime
    started it (`make clean`); the files stay. Returns how many went."""
    settings = settings or HostAgentSettings()
    data_dir = settings.data_dir.resolve()
    removed = 0
    from yourclaw_host_agent.runtimes.process import ProcessRuntime

    process = ProcessRuntime(
        DataLayout(data_dir),
        openclaw_dir=settings.openclaw_install_dir,
        install=False,
        stop_timeout=settings.gateway_stop_timeout_seconds,
    )
    try:
        for info in await process.list():
            await process.remove(info.name)
            removed += 1
    finally:
        await process.close()
    from yourclaw_host_agent.runtimes.docker import DockerRuntime

    docker = DockerRuntime(
        socket_path=settings.docker_socket,
        stop_timeout=settings.gateway_stop_timeout_seconds,
        data_dir=str(data_dir),
    )
    try:
        if await docker.ping():
            for info in await docker.list():
                await docker.remove(info.name)
                removed += 1
            removed += await docker.retire_pool()
    finally:
        await docker.close()
    print(f"removed {removed} gateway(s) of {data_dir}", flush=True)  # noqa: T201
    return removed


async def main() -> None:
    settings = HostAgentSettings()
    configure_logging(settings.service_name, settings.log_level)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    await run(settings, stop)
