from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode
from yourclaw_common.settings import CommonSettings

from yourclaw_host_agent.firewall import EgressAllow
from yourclaw_host_agent.install_openclaw import DEFAULT_OPENCLAW_HOME

# One NATS subject token: `host.<host_id>.<verb>`.
_HOST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class HostAgentSettings(CommonSettings):
    service_name: str = "host-agent"

    host_id: str = "local"
    # What other machines use to reach the ports published on this host.
    host_address: str = "127.0.0.1"
    # docker: hardened containers (tenancy). process: bare `openclaw` processes
    # that isolate nothing, for fast tests and machines without an engine only.
    host_runtime: Literal["process", "docker"] = "docker"
    # How many gateways this host takes (~1.3 GB RSS each when warm).
    host_capacity: int = Field(default=4, ge=0)
    host_heartbeat_seconds: float = Field(default=5.0, gt=0)
    # Per-user data: <dir>/<user_id>/{config,workspace}. Default .data/host/<host_id>.
    host_data_dir: Path | None = None

    # process runtime: where install_openclaw put the pinned openclaw package.
    openclaw_install_dir: Path = DEFAULT_OPENCLAW_HOME
    # Seconds a gateway gets to exit on SIGTERM before it is killed.
    gateway_stop_timeout_seconds: float = Field(default=20.0, gt=0)
    # Spare gateways (docker: spare hardened containers) kept booted for new
    # users, each ~0.8-1.3 GB RSS. They sit on the next free ports of the
    # provisioner's grid (same HOST_PORT_RANGE_* / HOST_PORT_STRIDE settings),
    # where it places users.
    warm_pool_size: int = Field(default=0, ge=0, le=16)
    # docker runtime: the image spares boot (the provisioner's OPENCLAW_IMAGE;
    # a user whose spec names another image gets a cold container).
    openclaw_image: str = "yourclaw-openclaw:latest"
    host_port_range_start: int = Field(default=19100, ge=1024, le=65535)
    host_port_range_end: int = Field(default=29999, ge=1024, le=65535)
    host_port_stride: int = Field(default=120, ge=1)

    # docker runtime: Engine API over its unix socket; ports publish on this IP only.
    docker_host: str = "unix:///var/run/docker.sock"
    docker_publish_ip: str = "127.0.0.1"
    # The one bridge every tenant container joins (inter-container traffic off)
    # and its Linux interface, which the firewall rules name (≤ 15 characters).
    tenant_network: str = "yourclaw-tenants"
    tenant_bridge: str = Field(default="yc-tenants", max_length=15)
    # Its subnet; empty lets Docker pick one from its address pools.
    tenant_subnet: str = ""
    # The host firewall around tenants (iptables, needs root). Off only where
    # the operator filters tenant traffic some other way.
    tenant_firewall: bool = True
    # Host ports tenants may reach on this host: the LLM proxy's tenant port.
    tenant_host_ports: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [8790]
    )
    # Private addresses tenants may reach (`ip[:port]` or a CIDR), e.g. an LLM
    # proxy on another machine; every other private range is dropped.
    tenant_egress_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Pull a missing image from a registry (none is reachable in dev).
    docker_pull_missing: bool = False
    # docker runtime: a gateway whose resident memory passes this share of its
    # container's limit is restarted gracefully (OpenClaw finishes running
    # turns first), before the kernel OOM-kills it mid-turn. 0 = off.
    gateway_rss_ceiling_percent: int = Field(default=85, ge=0, le=100)
    gateway_rss_check_seconds: float = Field(default=60.0, gt=0)
    # How long such a restart waits for running turns before it kills.
    gateway_restart_grace_seconds: float = Field(default=300.0, gt=0)

    # Sleeping assistants (docs/sleep.md). An assistant with no activity (no
    # turn, no automation run: its OpenClaw databases unchanged) this long is
    # frozen (paused: no CPU, instant wake); 0 = never, nothing sleeps.
    idle_suspend_after_seconds: float = Field(default=900.0, ge=0)
    # Idle this long (counted from the same last activity), a frozen one is
    # stopped: its memory is freed, workspace and state stay. 0 = only under
    # memory pressure.
    idle_stop_after_seconds: float = Field(default=3600.0, ge=0)
    # A sleeper is woken this long before its next scheduled automation.
    wake_lead_seconds: float = Field(default=60.0, ge=0)
    # When the host's available memory falls below this, the longest-idle
    # gateways give up their memory (swapped or stopped, see below), frozen
    # ones before awake ones. 0 = off.
    host_memory_reserve_mb: int = Field(default=1024, ge=0)
    # Deep sleep (docker runtime, a host with swap): where a gateway would be
    # stopped (IDLE_STOP_AFTER_SECONDS, memory pressure, room for a wake) it
    # stays frozen and its memory is moved to the host's swap, so a wake is a
    # thaw that faults pages back in, not a boot. Stopped instead when the
    # host's free swap would fall below HOST_SWAP_RESERVE_MB.
    swap_sleepers: bool = True
    host_swap_reserve_mb: int = Field(default=1024, ge=0)

    @field_validator("host_id")
    @classmethod
    def _one_token(cls, value: str) -> str:
        if not _HOST_ID.match(value):
            raise ValueError(
                "HOST_ID must be letters, digits, '-' or '_' (a NATS token)"
            )
        return value

    @field_validator("tenant_host_ports", "tenant_egress_allow", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # `TENANT_HOST_PORTS=8790,8791`, or a JSON list.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [v.strip() for v in text.split(",") if v.strip()]
        return value

    @field_validator("tenant_egress_allow")
    @classmethod
    def _egress_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                EgressAllow.parse(entry)
            except ValueError:
                raise ValueError(
                    f"TENANT_EGRESS_ALLOW entry {entry!r} is not an IPv4 "
                    "address, address:port or network"
                ) from None
        return value

    @field_validator("host_data_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        # `HOST_DATA_DIR=` in a .env means "the default", not the current folder.
        return None if value == "" else value

    @model_validator(mode="after")
    def _process_runtime_only_in_dev(self) -> HostAgentSettings:
        if self.host_runtime == "process" and self.yourclaw_env != "dev":
            raise ValueError(
                "HOST_RUNTIME=process runs assistants as bare processes that can "
                "read each other's files: it is for YOURCLAW_ENV=dev only; "
                "production runs HOST_RUNTIME=docker"
            )
        return self

    @model_validator(mode="after")
    def _stop_after_suspend(self) -> HostAgentSettings:
        if (
            self.idle_suspend_after_seconds
            and self.idle_stop_after_seconds
            and self.idle_stop_after_seconds < self.idle_suspend_after_seconds
        ):
            raise ValueError(
                "IDLE_STOP_AFTER_SECONDS counts from the same last activity as "
                "IDLE_SUSPEND_AFTER_SECONDS: it must not be shorter"
            )
        return self

    @property
    def port_grid(self) -> range:
        return range(
            self.host_port_range_start,
            self.host_port_range_end + 1,
            self.host_port_stride,
        )

    @property
    def data_dir(self) -> Path:
        return self.host_data_dir or Path(".data") / "host" / self.host_id

    @property
    def docker_socket(self) -> str:
        if not self.docker_host.startswith("unix://"):
            raise ValueError("DOCKER_HOST must be unix:///path/to/docker.sock")
        return self.docker_host.removeprefix("unix://")
