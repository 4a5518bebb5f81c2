from __future__ import annotations

from pydantic import Field, model_validator
from yourclaw_common.settings import CommonSettings

from yourclaw_provisioner.render import MCP_IDLE_TTL_SECONDS


class ProvisionerSettings(CommonSettings):
    service_name: str = "provisioner"

    # The LLM proxy as the assistants reach it: every provider in their config,
    # and their automation webhooks (<url>/notify/<assistant>), point here.
    # Under `make up` with assistants in Docker: http://host.docker.internal:8790.
    llm_proxy_url: str = "http://127.0.0.1:8790"

    openclaw_image: str = "yourclaw-openclaw:latest"
    # An assistant's browser (Playwright MCP and Chromium) stops after this
    # long without use and starts again at the next turn that needs it; 0
    # keeps it until the session resets (OpenClaw's default).
    mcp_idle_ttl_seconds: int = Field(default=MCP_IDLE_TTL_SECONDS, ge=0)

    # A host whose last heartbeat is older than this is suspect: it takes no new
    # assistants and is marked OFFLINE; its assistants stay where they are.
    host_heartbeat_timeout_seconds: float = Field(default=15.0, gt=0)
    # How much longer a suspect host keeps its assistants before it is declared
    # lost and they are re-placed (a fresh workspace elsewhere): minutes, so a
    # control-plane blip costs nobody theirs. Never while no host at all is
    # heard from or this provisioner's NATS link is down.
    host_evacuate_after_seconds: float = Field(default=600.0, ge=0)
    host_port_range_start: int = Field(default=19100, ge=1024, le=65535)
    host_port_range_end: int = Field(default=29999, ge=1024, le=65535)
    # Distance between two gateways' ports on one host. An OpenClaw gateway also
    # listens a little above its own port (port+2, port+11 … port+110), so with
    # the process runtime neighbours must be this far apart; with docker only
    # the published port counts and 1 packs them densely.
    host_port_stride: int = Field(default=120, ge=1)
    # A create may pull an image or install files: generous.
    host_create_timeout_seconds: float = Field(default=120.0, gt=0)
    host_command_timeout_seconds: float = Field(default=10.0, gt=0)
    # From create's answer to /healthz answering; OpenClaw boots in about 5 s.
    gateway_health_timeout_seconds: float = Field(default=90.0, gt=0)

    provision_max_attempts: int = Field(default=3, ge=1)
    # Delay before attempt n+1: base * 2**(n-1).
    provision_retry_base_seconds: float = Field(default=5.0, ge=0)
    provision_concurrency: int = Field(default=32, ge=1)
    # A replica renews its lease on a running job; a job whose lease ran out
    # (the replica died) is taken over by another.
    provision_job_lease_seconds: float = Field(default=30.0, gt=0)
    # Fallback poll for jobs due later or enqueued by another replica.
    provision_poll_interval_seconds: float = Field(default=1.0, gt=0)
    reconcile_interval_seconds: float = Field(default=10.0, gt=0)
    # An assistant in ERROR because its host or the host's container engine
    # did not answer is provisioned again, without a person, once a host
    # heart-beats: first this long after the failure, doubling after each
    # failed heal up to 64 times this.
    assistant_heal_base_seconds: float = Field(default=30.0, gt=0)
    # Placement weighs a sleeping (SUSPENDED) assistant as 1/this of an awake
    # one against a host's capacity: with 3, three sleepers take the room of
    # one. 1 counts sleepers in full (no overcommit).
    assistant_sleep_overcommit: float = Field(default=3.0, ge=1)
    # How long a host may take to wake a sleeping assistant (unpause, or start
    # a stopped one) until its /healthz answers, when messaging asks.
    assistant_wake_wait_seconds: float = Field(default=30.0, gt=0, le=300)

    @model_validator(mode="after")
    def _check_port_range(self) -> ProvisionerSettings:
        if self.host_port_range_end < self.host_port_range_start:
            raise ValueError("HOST_PORT_RANGE_END is below HOST_PORT_RANGE_START")
        return self
