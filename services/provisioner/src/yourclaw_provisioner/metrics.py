from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 10, 15, 30, 60, 120, 300)

JOBS = Counter(
    "yourclaw_provisioner_jobs_total",
    "Job attempts by kind (PROVISION, DEPROVISION) and outcome (completed, retried, "
    "failed, superseded, lost_lease).",
    ["kind", "outcome"],
)
JOB_SECONDS = Histogram(
    "yourclaw_provisioner_job_seconds",
    "Duration of one job attempt, by kind and outcome.",
    ["kind", "outcome"],
    buckets=_SLOW_BUCKETS,
)
READY_SECONDS = Histogram(
    "yourclaw_provisioner_request_to_ready_seconds",
    "From the request (job created) to the assistant marked READY.",
    buckets=_SLOW_BUCKETS,
)
ASSISTANTS = Gauge(
    "yourclaw_provisioner_assistants",
    "Assistants by status (NONE, PROVISIONING, READY, SUSPENDED, ERROR).",
    ["status"],
)
HOSTS = Gauge(
    "yourclaw_provisioner_hosts",
    "Container hosts by status (ACTIVE, DRAINING, OFFLINE).",
    ["status"],
)
HOST_UP = Gauge(
    "yourclaw_provisioner_host_up",
    "1 while a host heart-beats (ACTIVE or DRAINING), 0 once marked OFFLINE.",
    ["host"],
)
HOST_CAPACITY = Gauge(
    "yourclaw_provisioner_host_capacity",
    "Containers a host says it can run.",
    ["host"],
)
HOST_USED = Gauge(
    "yourclaw_provisioner_host_used",
    "Containers a host says it runs (heartbeat).",
    ["host"],
)
HOST_ASSIGNED = Gauge(
    "yourclaw_provisioner_host_assigned",
    "Assistants the database places on a host.",
    ["host"],
)
HEARTBEATS = Counter(
    "yourclaw_provisioner_heartbeats_total",
    "Host heartbeats received.",
)
HOST_KEY_CHANGES = Counter(
    "yourclaw_provisioner_host_key_changes_total",
    "Hosts that announced another public key than before (a rotation, a lost "
    "key, or someone else holding the host's NATS credentials).",
    ["host"],
)
HEARTBEATS_MISSED = Counter(
    "yourclaw_provisioner_heartbeats_missed_total",
    "Hosts that stopped heart-beating for longer than HOST_HEARTBEAT_TIMEOUT_SECONDS.",
    ["host"],
)
RECONCILE_ACTIONS = Counter(
    "yourclaw_provisioner_reconcile_actions_total",
    "Drift repaired: recreated (container vanished), orphan_removed, evacuated "
    "(host lost), flagged; fenced: a pass that did not judge silent hosts lost "
    "(no host heard from, or the provisioner's NATS link down).",
    ["action"],
)
WAKES = Counter(
    "yourclaw_provisioner_wakes_total",
    "Wake requests served (messaging asked for a sleeping assistant), by "
    "outcome (woken; moved: re-created on a free port of its host, its own "
    "taken; or the failure's code).",
    ["outcome"],
)
WAKE_SECONDS = Histogram(
    "yourclaw_provisioner_wake_seconds",
    "From a wake request to the assistant's gateway healthy (woken ones only), "
    "by the state it slept in (frozen, stopped, awake: it was not asleep).",
    ["from_state"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 10, 15, 30, 60),
)
