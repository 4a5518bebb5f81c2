"""One handler per host verb: parse the request, call the service, answer a HostReply.

A request never crashes the agent: bad JSON or fields → `INVALID_REQUEST`, our
own errors → their code, anything else → `INTERNAL_ERROR` (logged). A command
past its `expires_at` is refused before anything runs (`COMMAND_EXPIRED`), and
one for an older placement generation than the container's is refused by the
service (`STALE_GENERATION`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import ValidationError
from yourclaw_common.errors import YourClawError
from yourclaw_common.events import (
    CreateContainer,
    HostReply,
    HostVerb,
    ListContainers,
    NamedContainer,
    TailLogs,
)
from yourclaw_common.logging import get_logger

from yourclaw_host_agent.metrics import COMMAND_SECONDS, COMMANDS
from yourclaw_host_agent.service import HostService, check_expiry

__all__ = ["handle_command"]

log = get_logger(__name__)

_Handler = Callable[[HostService, bytes], Awaitable[HostReply]]


async def on_create(service: HostService, data: bytes) -> HostReply:
    command = CreateContainer.model_validate_json(data)
    check_expiry(command.expires_at, "create")
    info = await service.create(command.spec, generation=command.generation)
    return HostReply(ok=True, container=info)


def on_transition(verb: Literal["start", "stop", "restart"]) -> _Handler:
    """The handler of `start`, `stop` or `restart`."""

    async def handle(service: HostService, data: bytes) -> HostReply:
        command = NamedContainer.model_validate_json(data)
        check_expiry(command.expires_at, verb)
        info = await service.transition(
            verb, command.name, generation=command.generation
        )
        return HostReply(ok=True, container=info)

    return handle


async def on_remove(service: HostService, data: bytes) -> HostReply:
    command = NamedContainer.model_validate_json(data)
    check_expiry(command.expires_at, "remove")
    info = await service.remove(
        command.name,
        purge_workspace=command.purge_workspace,
        generation=command.generation,
    )
    return HostReply(ok=True, container=info)


async def on_inspect(service: HostService, data: bytes) -> HostReply:
    command = NamedContainer.model_validate_json(data)
    check_expiry(command.expires_at, "inspect")
    return HostReply(ok=True, container=await service.inspect(command.name))


async def on_list(service: HostService, data: bytes) -> HostReply:
    command = ListContainers.model_validate_json(data or b"{}")
    check_expiry(command.expires_at, "list")
    return HostReply(ok=True, containers=await service.list())


async def on_logs(service: HostService, data: bytes) -> HostReply:
    command = TailLogs.model_validate_json(data)
    check_expiry(command.expires_at, "logs")
    text = await service.logs(command.name, command.tail)
    return HostReply(ok=True, container=await service.inspect(command.name), logs=text)


async def on_health(service: HostService, data: bytes) -> HostReply:
    command = NamedContainer.model_validate_json(data)
    check_expiry(command.expires_at, "health")
    info = await service.health(command.name, wait_seconds=command.wait_seconds)
    return HostReply(ok=True, container=info)


async def on_wake(service: HostService, data: bytes) -> HostReply:
    command = NamedContainer.model_validate_json(data)
    check_expiry(command.expires_at, "wake")
    info = await service.wake(
        command.name, wait_seconds=command.wait_seconds, generation=command.generation
    )
    return HostReply(ok=True, container=info)


async def on_suspend(service: HostService, data: bytes) -> HostReply:
    command = NamedContainer.model_validate_json(data)
    check_expiry(command.expires_at, "suspend")
    info = await service.suspend(command.name, generation=command.generation)
    return HostReply(ok=True, container=info)


HANDLERS: dict[HostVerb, _Handler] = {
    HostVerb.CREATE: on_create,
    HostVerb.START: on_transition("start"),
    HostVerb.STOP: on_transition("stop"),
    HostVerb.RESTART: on_transition("restart"),
    HostVerb.REMOVE: on_remove,
    HostVerb.INSPECT: on_inspect,
    HostVerb.LIST: on_list,
    HostVerb.LOGS: on_logs,
    HostVerb.HEALTH: on_health,
    HostVerb.WAKE: on_wake,
    HostVerb.SUSPEND: on_suspend,
}


async def handle_command(service: HostService, verb: str, data: bytes) -> HostReply:
    """Answer one request; never raises."""
    started = time.perf_counter()
    try:
        handler = HANDLERS[HostVerb(verb)]
    except ValueError:
        COMMANDS.labels("unknown", "UNKNOWN_VERB").inc()
        return HostReply(
            ok=False, code="UNKNOWN_VERB", error=f"unknown verb {verb[:40]!r}"
        )
    try:
        reply = await handler(service, data)
    except ValidationError as exc:
        # The message names fields and their problems, never a spec's secrets.
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        reply = HostReply(ok=False, code="INVALID_REQUEST", error=detail[:1000])
    except YourClawError as exc:
        reply = HostReply(ok=False, code=exc.code, error=exc.detail)
    except Exception as exc:
        log.exception("host_agent.command.failed", verb=verb, error=str(exc)[:300])
        reply = HostReply(
            ok=False, code="INTERNAL_ERROR", error="the host-agent failed; see its logs"
        )
    COMMANDS.labels(verb, "ok" if reply.ok else reply.code or "ERROR").inc()
    COMMAND_SECONDS.labels(verb).observe(time.perf_counter() - started)
    if not reply.ok:
        log.warning(
            "host_agent.command.refused", verb=verb, code=reply.code, error=reply.error
        )
    return reply
