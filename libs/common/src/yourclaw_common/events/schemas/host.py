"""Host-agent commands: core NATS request/reply on `host.<host_id>.<verb>`.

The provisioner sends a request model as JSON; the host-agent answers a
`HostReply`. Every command is idempotent by container name
(`yourclaw-<user_id>`): a second create of the same spec is a no-op, a remove of
a missing container succeeds. A spec's `files` and `env` hold the assistant's
secrets (its gateway token and LLM proxy credential inside `files`): the
provisioner sends them sealed to the host's key (`sealed`, see
`yourclaw_common.sealing`), never in clear, and neither side logs them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "GATEWAY_CONFIG_PORT",
    "ContainerInfo",
    "ContainerSpec",
    "CreateContainer",
    "HostReply",
    "ListContainers",
    "NamedContainer",
    "SealedSecrets",
    "TailLogs",
    "container_name",
]


def container_name(user_id: UUID | str) -> str:
    """The one name a user's container has on any host."""
    return f"yourclaw-{user_id}"


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    # Fencing. The placement generation the command is for: a create records it,
    # and a host refuses any command for a container whose recorded generation
    # is newer (remove: "remove copies up to this generation"). None: unfenced.
    generation: int | None = Field(default=None, ge=0)
    # A command delivered after this (UTC; buffered during an outage, its sender
    # long gone) is refused unexecuted. None: no expiry.
    expires_at: datetime | None = None


# The port OpenClaw's config names (`gateway.port`): inside a container it is
# the one the runtime publishes; the process runtime passes `--port` instead.
# Every gateway's config carries this same value, so swapping configs never
# changes it (a `gateway.port` change makes OpenClaw restart).
GATEWAY_CONFIG_PORT = 18789


class SealedSecrets(BaseModel):
    """A spec's `files` and `env`, sealed to one host's public key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Which host key it is sealed to (`sealing.key_id`): a host whose key
    # changed says so instead of failing to decrypt.
    key_id: str = Field(min_length=1, max_length=64)
    # base64url of the HPKE encapsulated key and ciphertext.
    box: str


class ContainerSpec(BaseModel):
    """Everything a host needs to run one user's OpenClaw gateway."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: UUID
    name: str
    # The host port the gateway listens on (the runtime maps it to 18789 inside).
    port: int = Field(ge=1, le=65535)
    image: str = "yourclaw-openclaw:latest"
    # Relative path under the user's data dir → content, e.g.
    # "config/openclaw.json", "workspace/CLAUDE.md". Written before start.
    files: dict[str, str] = Field(default_factory=dict)
    # Relative paths (same rules) deleted before start where they exist: what
    # an older config made the gateway create and this one no longer wants.
    remove_files: tuple[str, ...] = ()
    # Environment of the gateway process (LLM keys: BYOK over shared).
    env: dict[str, str] = Field(default_factory=dict)
    memory_mb: int = 2048
    cpus: float = 1.0
    pids_limit: int = 512
    # Hash of everything above, computed by the provisioner over the clear
    # content: same hash = same spec, however often it is sealed.
    spec_hash: str
    # On the bus, `files` and `env` are empty and travel here, sealed to the
    # host's key; the host-agent opens them before anything reads the spec.
    # Needs host-agents that know the field (deploy them before provisioners
    # that seal: they refuse unknown fields).
    sealed: SealedSecrets | None = None


class CreateContainer(_Command):
    """Write the files and env, then start; a no-op when the same spec runs."""

    spec: ContainerSpec


class NamedContainer(_Command):
    """start / stop / restart / remove / inspect / health of one container."""

    name: str
    # remove only: also delete the user's workspace (account deleted).
    purge_workspace: bool = False
    # health and wake: keep probing on the host (no extra round trips) until /healthz
    # answers or this many seconds pass; 0 = probe once.
    wait_seconds: float = Field(default=0, ge=0, le=300)


class TailLogs(_Command):
    name: str
    tail: int = Field(default=200, ge=1, le=10_000)


class ListContainers(_Command):
    pass


class ContainerInfo(BaseModel):
    """What a host knows about one container right now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    # "paused": frozen while idle (docker pause); see `wake`.
    state: Literal["running", "starting", "paused", "stopped", "exited", "missing"]
    port: int | None = None
    spec_hash: str | None = None
    # /healthz answered (health verb only; None when not probed).
    healthy: bool | None = None


class HostReply(BaseModel):
    """The answer to every host command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    code: str | None = None  # machine code when not ok, e.g. "NO_CAPACITY"
    error: str | None = None
    container: ContainerInfo | None = None
    containers: list[ContainerInfo] = Field(default_factory=list)
    logs: str | None = None
