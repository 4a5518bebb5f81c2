"""Host-agent commands over core NATS request/reply (`host.<host_id>.<verb>`).

Every command expires when its sender stops waiting for the answer: a request
buffered while NATS was away and delivered late is refused by the host, not
executed. Commands about a placement carry its generation (see the host-agent).
A create's secrets are sealed to the host's public key here, the one place a
spec leaves the provisioner: no spec crosses the bus in clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, ValidationError
from yourclaw_common.events import (
    ContainerInfo,
    ContainerSpec,
    CreateContainer,
    HostReply,
    HostVerb,
    NamedContainer,
    host_command,
)
from yourclaw_common.logging import get_correlation_id
from yourclaw_common.nats import CORRELATION_HEADER
from yourclaw_common.sealing import seal_spec

from yourclaw_provisioner.errors import EngineUnavailable, HostCommandFailed


@dataclass
class HostClient:
    nc: NATS
    command_timeout: float
    create_timeout: float

    async def create(
        self,
        host_id: str,
        spec: ContainerSpec,
        *,
        host_key: str | None,
        generation: int | None = None,
    ) -> ContainerInfo | None:
        """Create on the host, the spec's secrets sealed to `host_key` (the
        public key of the host's latest heartbeat)."""
        if host_key is None:
            raise HostCommandFailed(
                f"host {host_id} announced no public key (an agent older than "
                "sealing): a spec is never sent in clear",
                code="HOST_KEY_UNKNOWN",
                host_id=host_id,
            )
        reply = await self._request(
            host_id,
            HostVerb.CREATE,
            CreateContainer(spec=seal_spec(spec, host_key), generation=generation),
            self.create_timeout,
        )
        return reply.container

    async def remove(
        self,
        host_id: str,
        name: str,
        *,
        purge_workspace: bool = False,
        generation: int | None = None,
    ) -> None:
        """Remove the container, if the copy there is of `generation` or older
        (None: whatever it is); a newer copy is kept (STALE_GENERATION)."""
        await self._request(
            host_id,
            HostVerb.REMOVE,
            NamedContainer(
                name=name, purge_workspace=purge_workspace, generation=generation
            ),
            self.command_timeout,
        )

    async def stop(
        self, host_id: str, name: str, *, generation: int | None = None
    ) -> ContainerInfo | None:
        """Stop the container (its workspace stays), if the copy there is of
        `generation` or older."""
        reply = await self._request(
            host_id,
            HostVerb.STOP,
            NamedContainer(name=name, generation=generation),
            self.command_timeout,
        )
        return reply.container

    async def health(
        self, host_id: str, name: str, *, wait_seconds: float = 0
    ) -> ContainerInfo | None:
        """Probe /healthz on the host; with `wait_seconds` the host keeps probing
        until it answers, so readiness arrives in one round trip."""
        reply = await self._request(
            host_id,
            HostVerb.HEALTH,
            NamedContainer(name=name, wait_seconds=wait_seconds),
            self.command_timeout + wait_seconds,
        )
        return reply.container

    async def wake(
        self,
        host_id: str,
        name: str,
        *,
        wait_seconds: float,
        generation: int | None = None,
    ) -> ContainerInfo | None:
        """Unpause or start a sleeping container; the host answers once its
        /readyz does (or `wait_seconds` pass), a thawed one that was ready
        when it froze as soon as it runs. Idempotent: an awake one only gets
        the health probe."""
        reply = await self._request(
            host_id,
            HostVerb.WAKE,
            NamedContainer(name=name, wait_seconds=wait_seconds, generation=generation),
            self.command_timeout + wait_seconds,
        )
        return reply.container

    async def _request(
        self, host_id: str, verb: HostVerb, command: BaseModel, timeout: float
    ) -> HostReply:
        subject = host_command(host_id, verb)
        headers = {CORRELATION_HEADER: get_correlation_id() or ""}
        command = command.model_copy(
            update={"expires_at": datetime.now(UTC) + timedelta(seconds=timeout)}
        )
        try:
            msg = await self.nc.request(
                subject,
                command.model_dump_json().encode(),
                timeout=timeout,
                headers=headers,
            )
        except NoRespondersError as exc:
            raise HostCommandFailed(
                f"host {host_id} has no agent listening ({verb})",
                code="HOST_UNREACHABLE",
                host_id=host_id,
            ) from exc
        except (NatsTimeoutError, TimeoutError) as exc:
            raise HostCommandFailed(
                f"host {host_id} did not answer {verb} within {timeout:g}s",
                code="HOST_TIMEOUT",
                host_id=host_id,
            ) from exc
        try:
            reply = HostReply.model_validate_json(msg.data)
        except ValidationError as exc:
            raise HostCommandFailed(
                f"host {host_id} answered {verb} with an invalid reply",
                code="HOST_BAD_REPLY",
                host_id=host_id,
            ) from exc
        if not reply.ok and reply.code == EngineUnavailable.code:
            raise EngineUnavailable(
                f"host {host_id} could not {verb}: {reply.error or 'no detail'}",
                host_id=host_id,
            )
        if not reply.ok:
            raise HostCommandFailed(
                f"host {host_id} refused {verb}: {reply.error or 'no detail'}",
                code=reply.code or "HOST_REFUSED",
                host_id=host_id,
            )
        return reply
