"""main(): settings → pg pool → nats → topology → consumers, job runner, heartbeats,
wake requests and reconcile → wait for SIGTERM → drain."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import uuid

from yourclaw_common.crypto import SecretBox
from yourclaw_common.db import create_pool
from yourclaw_common.events import Subject
from yourclaw_common.logging import configure_logging, get_logger
from yourclaw_common.runtime import install_signal_handlers, open_runtime, run_consumers

from yourclaw_provisioner import repository
from yourclaw_provisioner.consumers import CONSUMERS
from yourclaw_provisioner.handlers import (
    on_deprovision_requested,
    on_provision_requested,
    on_subscription_activated,
    on_subscription_canceled,
)
from yourclaw_provisioner.hosts import HostClient
from yourclaw_provisioner.jobs import JobRunner
from yourclaw_provisioner.lifecycle import Waker
from yourclaw_provisioner.reconcile import Fleet, Reconciler
from yourclaw_provisioner.service import Provisioner
from yourclaw_provisioner.settings import ProvisionerSettings

log = get_logger(__name__)

_CONSUMERS = [
    CONSUMERS.PROVISIONER_PROVISION_REQUESTED,
    CONSUMERS.PROVISIONER_DEPROVISION_REQUESTED,
    CONSUMERS.PROVISIONER_SUBSCRIPTION_ACTIVATED,
    CONSUMERS.PROVISIONER_SUBSCRIPTION_CANCELED,
]


def replica_id() -> str:
    """Unique per process, readable in `provisioning_jobs.locked_by`."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def run(settings: ProvisionerSettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set (tests call this directly)."""
    secrets = SecretBox(settings.encryption_key.get_secret_value())
    async with open_runtime(settings, stop=stop, consumers=_CONSUMERS) as runtime:
        hosts = HostClient(
            runtime.nc,
            command_timeout=settings.host_command_timeout_seconds,
            create_timeout=settings.host_create_timeout_seconds,
        )
        provisioner = Provisioner(
            pool=runtime.pool,
            hosts=hosts,
            secrets=secrets,
            settings=settings,
            replica=replica_id(),
        )
        fleet = Fleet(runtime.pool, provisioner.wake, service=settings.service_name)
        heartbeats = await runtime.nc.subscribe(
            f"{Subject.HOST_HEARTBEAT.value}.*", cb=fleet.on_message
        )
        waker = Waker(provisioner, container_state=fleet.container)
        await waker.serve(runtime.nc)
        pool = runtime.pool
        log.info(
            "provisioner.started",
            replica=provisioner.replica,
            llm_proxy_url=settings.llm_proxy_url,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(
                    run_consumers(
                        runtime,
                        [
                            (
                                CONSUMERS.PROVISIONER_PROVISION_REQUESTED,
                                on_provision_requested(pool, provisioner),
                            ),
                            (
                                CONSUMERS.PROVISIONER_DEPROVISION_REQUESTED,
                                on_deprovision_requested(pool, provisioner),
                            ),
                            (
                                CONSUMERS.PROVISIONER_SUBSCRIPTION_ACTIVATED,
                                on_subscription_activated(pool, provisioner),
                            ),
                            (
                                CONSUMERS.PROVISIONER_SUBSCRIPTION_CANCELED,
                                on_subscription_canceled(pool, provisioner),
                            ),
                        ],
                        concurrency=settings.provision_concurrency,
                    )
                )
                tg.create_task(JobRunner(pool, provisioner, settings).run(stop))
                tg.create_task(Reconciler(pool, fleet, provisioner, settings).run(stop))
        finally:
            await waker.close()
            await heartbeats.unsubscribe()


async def set_host_status(
    settings: ProvisionerSettings, host_id: str, status: str
) -> bool:
    """An operator's decision: DRAINING takes nothing new, ACTIVE takes again."""
    pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await repository.set_host_status(conn, host_id, status)
    finally:
        await pool.close()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="yourclaw-provisioner",
        description="Serve the provisioner; or drain / activate a host.",
    )
    commands = parser.add_subparsers(dest="command")
    for name, help_text in (
        ("drain", "the host takes no new assistants (its own stay)"),
        ("activate", "the host takes new assistants again"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("host_id")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    settings = ProvisionerSettings()
    configure_logging(settings.service_name, settings.log_level)
    if args.command in ("drain", "activate"):
        status = "DRAINING" if args.command == "drain" else "ACTIVE"
        if not await set_host_status(settings, args.host_id, status):
            raise SystemExit(
                f"no host {args.host_id!r} (hosts appear by heart-beating)"
            )
        log.info("provisioner.host.status_set", host_id=args.host_id, status=status)
        return
    stop = asyncio.Event()
    install_signal_handlers(stop)
    await run(settings, stop)
