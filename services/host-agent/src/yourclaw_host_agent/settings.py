from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from yourclaw_common.settings import CommonSettings

from yourclaw_host_agent.install_openclaw import DEFAULT_OPENCLAW_HOME

# One NATS subject token: `host.<host_id>.<verb>`.
_HOST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class HostAgentSettings(CommonSettings):
    service_name: str = "host-agent"

    host_id: str = "local"
    # What other machines use to reach the ports published on this host.
    host_address: str = "127.0.0.1"
    host_runtime: Literal["process", "docker"] = "process"
    # How many gateways this host takes (~1.3 GB RSS each when warm).
    host_capacity: int = Field(default=4, ge=0)
    host_heartbeat_seconds: float = Field(default=5.0, gt=0)
    # Per-user data: <dir>/<user_id>/{config,workspace}. Default .data/host/<host_id>.
    host_data_dir: Path | None = None

    # process runtime: where install_openclaw put the pinned openclaw package.
    openclaw_install_dir: Path = DEFAULT_OPENCLAW_HOME
    # Seconds a gateway gets to exit on SIGTERM before it is killed.
    gateway_stop_timeout_seconds: float = Field(default=20.0, gt=0)
    # process runtime: spare gateways kept booted for new users (each ~1.3 GB
    # RSS). They sit on the next free ports of the provisioner's grid (same
    # HOST_PORT_RANGE_* / HOST_PORT_STRIDE settings), where it places users.
    warm_pool_size: int = Field(default=0, ge=0, le=16)
    host_port_range_start: int = Field(default=19100, ge=1024, le=65535)
    host_port_range_end: int = Field(default=29999, ge=1024, le=65535)
    host_port_stride: int = Field(default=120, ge=1)

    # docker runtime: Engine API over its unix socket; ports publish on this IP only.
    docker_host: str = "unix:///var/run/docker.sock"
    docker_publish_ip: str = "127.0.0.1"

    @field_validator("host_id")
    @classmethod
    def _one_token(cls, value: str) -> str:
        if not _HOST_ID.match(value):
            raise ValueError(
                "HOST_ID must be letters, digits, '-' or '_' (a NATS token)"
            )
        return value

    @field_validator("host_data_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        # `HOST_DATA_DIR=` in a .env means "the default", not the current folder.
        return None if value == "" else value

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
