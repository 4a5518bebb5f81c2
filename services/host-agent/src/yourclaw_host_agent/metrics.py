from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter(
    "yourclaw_host_agent_commands_total",
    "Host commands answered, by verb and outcome code (ok, or the error code).",
    ["verb", "code"],
)
COMMAND_SECONDS = Histogram(
    "yourclaw_host_agent_command_seconds",
    "Time to answer a host command.",
    ["verb"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
CONTAINERS = Gauge(
    "yourclaw_host_agent_containers",
    "Containers on this host by state, as of the last heartbeat.",
    ["state"],
)
HEARTBEATS = Counter(
    "yourclaw_host_agent_heartbeats_total",
    "Heartbeats published on heartbeat.<host id>, by outcome (sent, failed).",
    ["outcome"],
)
GATEWAY_RESTARTS = Counter(
    "yourclaw_host_agent_gateway_restarts_total",
    "Gateways the process runtime restarted after they died on their own.",
)
GATEWAY_OOM_KILLS = Counter(
    "yourclaw_host_agent_gateway_oom_kills_total",
    "Tenant containers the kernel killed at their memory limit (the Engine "
    "restarts them).",
)
GATEWAY_RSS_RESTARTS = Counter(
    "yourclaw_host_agent_gateway_rss_restarts_total",
    "Tenant containers restarted gracefully because their resident memory "
    "passed the ceiling (GATEWAY_RSS_CEILING_PERCENT of their limit).",
)
ADOPTED = Counter(
    "yourclaw_host_agent_gateways_adopted_total",
    "Running gateways found and adopted at start (agent restarts).",
)
WARM_GATEWAYS = Gauge(
    "yourclaw_host_agent_warm_gateways",
    "Spare gateways booted and waiting to be handed to a new user (process runtime).",
)
WARM_CLAIMS = Counter(
    "yourclaw_host_agent_warm_claims_total",
    "Spares handed to a new user (taken) or stopped because a create needed their port (retired).",
    ["outcome"],
)
GATEWAYS_AWAKE = Gauge(
    "yourclaw_host_agent_gateways_awake",
    "Users' gateways awake on this host, as of the last heartbeat.",
)
GATEWAYS_SUSPENDED = Gauge(
    "yourclaw_host_agent_gateways_suspended",
    "Users' gateways asleep on this host by depth (frozen: paused, memory "
    "held; swapped: paused, memory moved to the host's swap; stopped: memory "
    "freed, a wake boots), as of the last heartbeat.",
    ["depth"],
)
SUSPENSIONS = Counter(
    "yourclaw_host_agent_suspensions_total",
    "Gateways put to sleep, by depth (frozen, swapped, stopped) and reason "
    "(idle, memory: the host's available memory fell below "
    "HOST_MEMORY_RESERVE_MB, command: the suspend verb, room: memory freed so "
    "a sleeper could boot on a full host).",
    ["depth", "reason"],
)
WAKES = Counter(
    "yourclaw_host_agent_wakes_total",
    "Sleeping gateways woken, by the depth they slept at and reason (command: "
    "the wake verb; schedule: an automation is due; request: a request reached "
    "a frozen gateway).",
    ["from_state", "reason"],
)
WAKE_SECONDS = Histogram(
    "yourclaw_host_agent_wake_seconds",
    "From the wake to the gateway answering /readyz (a boot) or running again "
    "(a thaw), by the depth it slept at (the wake verb with wait_seconds only).",
    ["from_state"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 10, 15, 20, 30, 60),
)
