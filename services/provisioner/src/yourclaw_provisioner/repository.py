"""Every SQL statement of the provisioner (tables: assistants, provisioning_jobs, hosts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection
from yourclaw_common.events import HostHeartbeat

# Jobs
# ----


@dataclass(frozen=True)
class Job:
    """A job this replica holds the lease of."""

    id: UUID
    user_id: UUID
    kind: str
    reason: str | None
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class FinishedJob:
    user_id: UUID
    kind: str
    reason: str | None
    # A request arrived while the job ran: a new job was queued for it.
    requeued: bool
    created_at: datetime


async def enqueue_job(
    conn: Connection, user_id: UUID, *, kind: str, reason: str
) -> None:
    """Queue work for a user, folding it into the user's waiting or running job.

    A waiting job takes the new kind and starts over; a running one finishes its
    attempt and is then queued again (`requeue`), so the newest request wins.
    """
    await conn.execute(
        """
        INSERT INTO provisioning_jobs (user_id, kind, reason) VALUES ($1, $2, $3)
        ON CONFLICT (user_id) WHERE status IN ('PENDING', 'RUNNING') DO UPDATE SET
            kind = EXCLUDED.kind,
            reason = EXCLUDED.reason,
            requeue = provisioning_jobs.status = 'RUNNING',
            attempts = CASE WHEN provisioning_jobs.status = 'PENDING' THEN 0
                            ELSE provisioning_jobs.attempts END,
            next_attempt_at = CASE WHEN provisioning_jobs.status = 'PENDING' THEN now()
                                   ELSE provisioning_jobs.next_attempt_at END,
            last_error = NULL,
            updated_at = now()
        """,
        user_id,
        kind,
        reason,
    )
    await conn.execute("SELECT pg_notify('provisioning_jobs', '')")


async def claim_jobs(
    conn: Connection, *, replica: str, limit: int, lease_seconds: float
) -> list[Job]:
    """Take due jobs, and running ones whose replica stopped renewing its lease.

    SKIP LOCKED lets replicas claim side by side without waiting on each other or
    taking the same row.
    """
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT id FROM provisioning_jobs
            WHERE (status = 'PENDING' AND next_attempt_at <= now())
               OR (status = 'RUNNING' AND locked_until < now())
            ORDER BY next_attempt_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        UPDATE provisioning_jobs j SET
            status = 'RUNNING',
            attempts = j.attempts + 1,
            locked_by = $1,
            locked_until = now() + make_interval(secs => $3),
            requeue = false,
            updated_at = now()
        FROM due WHERE j.id = due.id
        RETURNING j.id, j.user_id, j.kind, j.reason, j.attempts, j.created_at
        """,
        replica,
        limit,
        lease_seconds,
    )
    return [Job(**dict(r)) for r in rows]


async def renew_lease(
    conn: Connection, job_id: UUID, *, replica: str, lease_seconds: float
) -> bool:
    """Extend the lease; False when another replica has taken the job over."""
    row = await conn.fetchval(
        """
        UPDATE provisioning_jobs SET locked_until = now() + make_interval(secs => $3)
        WHERE id = $1 AND locked_by = $2 AND status = 'RUNNING'
        RETURNING 1
        """,
        job_id,
        replica,
        lease_seconds,
    )
    return row is not None


async def _finish(
    conn: Connection,
    job_id: UUID,
    *,
    replica: str,
    status: str,
    error: str | None,
) -> FinishedJob | None:
    row = await conn.fetchrow(
        """
        UPDATE provisioning_jobs SET
            status = $3, last_error = $4, finished_at = now(),
            locked_by = NULL, locked_until = NULL, updated_at = now()
        WHERE id = $1 AND locked_by = $2 AND status = 'RUNNING'
        RETURNING user_id, kind, reason, requeue, created_at
        """,
        job_id,
        replica,
        status,
        error,
    )
    if row is None:
        return None
    if row["requeue"]:
        await enqueue_job(conn, row["user_id"], kind=row["kind"], reason=row["reason"])
    return FinishedJob(
        user_id=row["user_id"],
        kind=row["kind"],
        reason=row["reason"],
        requeued=row["requeue"],
        created_at=row["created_at"],
    )


async def complete_job(
    conn: Connection, job_id: UUID, *, replica: str
) -> FinishedJob | None:
    """COMPLETED, if this replica still holds the job (None otherwise)."""
    return await _finish(conn, job_id, replica=replica, status="COMPLETED", error=None)


async def fail_job(
    conn: Connection, job_id: UUID, *, replica: str, error: str
) -> FinishedJob | None:
    """FAILED for good, if this replica still holds the job (None otherwise)."""
    return await _finish(conn, job_id, replica=replica, status="FAILED", error=error)


async def retry_job(
    conn: Connection, job_id: UUID, *, replica: str, error: str, delay_seconds: float
) -> bool:
    """Back to PENDING after `delay_seconds`; False if the job was taken over."""
    row = await conn.fetchval(
        """
        UPDATE provisioning_jobs SET
            status = 'PENDING', last_error = $3,
            next_attempt_at = now() + make_interval(secs => $4),
            locked_by = NULL, locked_until = NULL, updated_at = now()
        WHERE id = $1 AND locked_by = $2 AND status = 'RUNNING'
        RETURNING 1
        """,
        job_id,
        replica,
        error,
        delay_seconds,
    )
    return row is not None


async def hurry_jobs_waiting_for_a_host(conn: Connection) -> int:
    """Jobs backing off because no host had room, or none answered, are due now
    (a host came up)."""
    result = await conn.execute(
        """
        UPDATE provisioning_jobs SET next_attempt_at = now(), updated_at = now()
        WHERE status = 'PENDING' AND next_attempt_at > now()
          AND (last_error LIKE 'NO_HOST_AVAILABLE%' OR last_error LIKE 'NO_LIVE_HOST%')
        """
    )
    return int(result.split()[-1])


async def seconds_until_next_job(conn: Connection) -> float | None:
    """How long until the earliest waiting job is due (None: nothing waits)."""
    value = await conn.fetchval(
        """
        SELECT EXTRACT(EPOCH FROM min(
            CASE WHEN status = 'PENDING' THEN next_attempt_at ELSE locked_until END
        ) - now())
        FROM provisioning_jobs WHERE status IN ('PENDING', 'RUNNING')
        """
    )
    return None if value is None else max(0.0, float(value))


# Assistants
# ----------


@dataclass(frozen=True)
class Assistant:
    id: UUID
    user_id: UUID
    status: str
    model: str
    host_id: str | None
    port: int | None
    gateway_token_encrypted: str | None
    notify_secret_encrypted: str | None
    spec_hash: str | None
    proxy_token_encrypted: str | None = None
    generation: int = 0


_ASSISTANT_COLUMNS = (
    "id, user_id, status, model, host_id, port, gateway_token_encrypted, "
    "notify_secret_encrypted, spec_hash, proxy_token_encrypted, generation"
)


async def get_assistant(
    conn: Connection, user_id: UUID, *, for_update: bool = False
) -> Assistant | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_ASSISTANT_COLUMNS} FROM assistants WHERE user_id = $1{lock}",  # noqa: S608 - constant columns
        user_id,
    )
    return Assistant(**dict(row)) if row else None


async def set_provisioning(
    conn: Connection, user_id: UUID, *, model: str | None
) -> Assistant:
    """Create or update the assistant as PROVISIONING (the API has answered 202)."""
    if model is None:
        row = await conn.fetchrow(
            f"""
            INSERT INTO assistants (user_id, status) VALUES ($1, 'PROVISIONING')
            ON CONFLICT (user_id) DO UPDATE SET
                status = 'PROVISIONING', last_error = NULL, updated_at = now()
            RETURNING {_ASSISTANT_COLUMNS}
            """,  # noqa: S608 - constant columns
            user_id,
        )
    else:
        row = await conn.fetchrow(
            f"""
            INSERT INTO assistants (user_id, status, model) VALUES ($1, 'PROVISIONING', $2)
            ON CONFLICT (user_id) DO UPDATE SET
                status = 'PROVISIONING', model = EXCLUDED.model, last_error = NULL,
                updated_at = now()
            RETURNING {_ASSISTANT_COLUMNS}
            """,  # noqa: S608 - constant columns
            user_id,
            model,
        )
    assert row is not None
    return Assistant(**dict(row))


async def mark_none_until_removed(conn: Connection, user_id: UUID) -> None:
    """NONE, so that messaging stops using the assistant at once; its placement
    and credential stay for the job that removes the container (`mark_none`)."""
    await conn.execute(
        "UPDATE assistants SET status = 'NONE', updated_at = now() WHERE user_id = $1",
        user_id,
    )


async def store_secrets(
    conn: Connection,
    user_id: UUID,
    *,
    gateway_token_encrypted: str,
    notify_secret_encrypted: str,
) -> None:
    await conn.execute(
        """
        UPDATE assistants SET gateway_token_encrypted = $2, notify_secret_encrypted = $3,
            updated_at = now()
        WHERE user_id = $1
        """,
        user_id,
        gateway_token_encrypted,
        notify_secret_encrypted,
    )


async def store_proxy_token(
    conn: Connection, user_id: UUID, *, proxy_token_encrypted: str
) -> None:
    await conn.execute(
        "UPDATE assistants SET proxy_token_encrypted = $2, updated_at = now() "
        "WHERE user_id = $1",
        user_id,
        proxy_token_encrypted,
    )


async def put_proxy_credential(
    conn: Connection, assistant_id: UUID, user_id: UUID, *, token_sha256: str
) -> None:
    """Make `token_sha256` the assistant's live proxy credential. A different
    live one it replaces stays valid (as the previous one) until the new
    container is READY, so the old container keeps working while it is swapped."""
    await conn.execute(
        """
        INSERT INTO proxy_credentials AS c (assistant_id, user_id, token_sha256)
        VALUES ($1, $2, $3)
        ON CONFLICT (assistant_id) DO UPDATE SET
            previous_token_sha256 = CASE
                WHEN c.token_sha256 = EXCLUDED.token_sha256 THEN c.previous_token_sha256
                WHEN c.revoked_at IS NULL THEN c.token_sha256
            END,
            token_sha256 = EXCLUDED.token_sha256,
            rotated_at = CASE
                WHEN c.token_sha256 = EXCLUDED.token_sha256 THEN c.rotated_at
                ELSE now()
            END,
            revoked_at = NULL
        """,
        assistant_id,
        user_id,
        token_sha256,
    )


async def mark_ready(
    conn: Connection,
    user_id: UUID,
    *,
    base_url: str,
    container_id: str,
    spec_hash: str,
) -> UUID | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        UPDATE assistants SET status = 'READY', base_url = $2, container_id = $3,
            spec_hash = $4, last_error = NULL, updated_at = now()
        WHERE user_id = $1
        RETURNING id
        """,
        user_id,
        base_url,
        container_id,
        spec_hash,
    )
    # The container with the current credential runs: the replaced one ends.
    await conn.execute(
        "UPDATE proxy_credentials SET previous_token_sha256 = NULL "
        "WHERE user_id = $1 AND previous_token_sha256 IS NOT NULL",
        user_id,
    )


async def mark_error(conn: Connection, user_id: UUID, *, reason: str) -> UUID | None:
    """ERROR with the reason the dashboard shows; the host and port are freed."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        UPDATE assistants SET status = 'ERROR', last_error = $2, host_id = NULL,
            port = NULL, base_url = NULL, container_id = NULL, spec_hash = NULL,
            updated_at = now()
        WHERE user_id = $1
        RETURNING id
        """,
        user_id,
        reason,
    )


async def keep_placement_on_silent_host(
    conn: Connection, user_id: UUID, *, flag: str, timeout_seconds: float
) -> bool:
    """READY again where it was, flagged, if it is placed on a host that is
    still silent (a move off it found nowhere to go); False otherwise."""
    row = await conn.fetchval(
        """
        UPDATE assistants a SET status = 'READY', last_error = $2, updated_at = now()
        FROM hosts h
        WHERE a.user_id = $1 AND h.id = a.host_id
          AND (h.last_heartbeat_at IS NULL
               OR h.last_heartbeat_at < now() - make_interval(secs => $3))
        RETURNING 1
        """,
        user_id,
        flag,
        timeout_seconds,
    )
    return row is not None


async def mark_none(conn: Connection, user_id: UUID) -> None:
    """No container any more (the workspace stays on the host's disk), and its
    proxy credential revoked: a provision after this one mints a new one."""
    await conn.execute(
        """
        UPDATE assistants SET status = 'NONE', host_id = NULL, port = NULL,
            base_url = NULL, container_id = NULL, spec_hash = NULL, last_error = NULL,
            proxy_token_encrypted = NULL, updated_at = now()
        WHERE user_id = $1
        """,
        user_id,
    )
    await conn.execute(
        "UPDATE proxy_credentials SET revoked_at = now(), previous_token_sha256 = NULL "
        "WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )


# Hosts and placement
# -------------------


@dataclass(frozen=True)
class Placement:
    host_id: str
    address: str
    port: int
    # The placement's fencing generation (host commands carry it).
    generation: int = 0


async def host_if_usable(
    conn: Connection, host_id: str, *, timeout_seconds: float
) -> str | None:
    """The address of a host that is ACTIVE and heart-beating, else None."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        SELECT address FROM hosts
        WHERE id = $1 AND status = 'ACTIVE'
          AND last_heartbeat_at > now() - make_interval(secs => $2)
        """,
        host_id,
        timeout_seconds,
    )


async def host_address(conn: Connection, host_id: str) -> str | None:
    """The address a host last announced, whatever its status."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT address FROM hosts WHERE id = $1", host_id
    )


async def host_is_live(
    conn: Connection, host_id: str, *, timeout_seconds: float
) -> bool:
    """Heart-beating (whatever its status): commands to it can be answered."""
    row = await conn.fetchval(
        """
        SELECT 1 FROM hosts
        WHERE id = $1 AND last_heartbeat_at > now() - make_interval(secs => $2)
        """,
        host_id,
        timeout_seconds,
    )
    return row is not None


# The room a host's assistants take: an awake one counts 1, a sleeping one
# 1/overcommit ($overcommit names the statement's parameter).
_LOAD = """(SELECT count(*) FILTER (WHERE a.status <> 'SUSPENDED')
            + count(*) FILTER (WHERE a.status = 'SUSPENDED') / {overcommit}::float
           FROM assistants a WHERE a.host_id = h.id)"""


async def lock_candidate_host(
    conn: Connection,
    *,
    timeout_seconds: float,
    exclude: list[str],
    overcommit: float = 1.0,
) -> tuple[str, str] | None:
    """Lock the least-filled live ACTIVE host that seems to have room (and a
    public key to seal its specs to); sleepers weigh 1/`overcommit`.

    The row lock serialises placements on one host (capacity and ports); the
    caller re-checks room under it, since this count may predate the lock.
    """
    load = _LOAD.format(overcommit="$3")
    row = await conn.fetchrow(
        f"""
        SELECT h.id, h.address FROM hosts h
        WHERE h.status = 'ACTIVE'
          AND h.last_heartbeat_at > now() - make_interval(secs => $1)
          AND h.public_key IS NOT NULL
          AND NOT (h.id = ANY($2::text[]))
          AND h.capacity >= {load} + 1
        ORDER BY {load} / h.capacity, h.id
        LIMIT 1
        FOR UPDATE OF h
        """,  # noqa: S608 - constant fragments
        timeout_seconds,
        exclude,
        overcommit,
    )
    return (row["id"], row["address"]) if row else None


async def assistants_to_heal(
    conn: Connection, *, codes: list[str], base_seconds: float
) -> list[UUID]:
    """ERROR assistants whose last job failed with one of `codes` (the host or
    its engine did not answer), due for another try: `base_seconds` after the
    failure, doubled for each heal that failed since the last success (at
    most 64 times)."""
    rows = await conn.fetch(
        """
        SELECT a.user_id FROM assistants a
        JOIN LATERAL (
            SELECT j.kind, j.status, j.last_error, j.updated_at
            FROM provisioning_jobs j WHERE j.user_id = a.user_id
            ORDER BY j.created_at DESC LIMIT 1
        ) last ON true
        CROSS JOIN LATERAL (
            SELECT count(*) AS n FROM provisioning_jobs h
            WHERE h.user_id = a.user_id AND h.reason = 'heal'
              AND h.status = 'FAILED'
              AND h.created_at > COALESCE(
                  (SELECT max(c.created_at) FROM provisioning_jobs c
                   WHERE c.user_id = a.user_id AND c.status = 'COMPLETED'),
                  '-infinity')
        ) heals
        WHERE a.status = 'ERROR' AND last.kind = 'PROVISION'
          AND last.status = 'FAILED'
          AND split_part(last.last_error, ':', 1) = ANY($1::text[])
          AND last.updated_at < now() - make_interval(
              secs => $2 * power(2, LEAST(heals.n, 6)))
        """,
        codes,
        base_seconds,
    )
    return [row["user_id"] for row in rows]


async def any_live_host(conn: Connection, *, timeout_seconds: float) -> bool:
    """Whether any ACTIVE host is heart-beating (full or not)."""
    row = await conn.fetchval(
        """
        SELECT 1 FROM hosts WHERE status = 'ACTIVE'
          AND last_heartbeat_at > now() - make_interval(secs => $1)
        LIMIT 1
        """,
        timeout_seconds,
    )
    return row is not None


async def host_has_room(
    conn: Connection, host_id: str, *, overcommit: float = 1.0
) -> bool:
    """Room for one more awake assistant; sleepers weigh 1/`overcommit`."""
    row = await conn.fetchval(
        f"""
        SELECT 1 FROM hosts h WHERE h.id = $1
          AND h.capacity >= {_LOAD.format(overcommit="$2")} + 1
        """,  # noqa: S608 - constant fragments
        host_id,
        overcommit,
    )
    return row is not None


async def free_port(
    conn: Connection,
    host_id: str,
    *,
    start: int,
    end: int,
    stride: int = 1,
    avoid: list[int] | None = None,
) -> int | None:
    """The lowest port of the range (every `stride`-th) no assistant on the host
    holds, other than those to `avoid` (the host found them taken)."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        SELECT p FROM generate_series($2::int, $3::int, $4::int) AS p
        WHERE NOT EXISTS (SELECT 1 FROM assistants WHERE host_id = $1 AND port = p)
          AND p <> ALL($5::int[])
        ORDER BY p LIMIT 1
        """,
        host_id,
        start,
        end,
        stride,
        avoid or [],
    )


async def assign_placement(
    conn: Connection, user_id: UUID, *, host_id: str, port: int, base_url: str
) -> int:
    """Hold the host and port under the next generation, which it returns;
    assistants_host_port_key rejects a collision."""
    generation: int = await conn.fetchval(
        """
        UPDATE assistants SET host_id = $2, port = $3, base_url = $4,
            generation = generation + 1, updated_at = now()
        WHERE user_id = $1
        RETURNING generation
        """,
        user_id,
        host_id,
        port,
        base_url,
    )
    return generation


class HeartbeatRecorded(NamedTuple):
    """What recording a heartbeat changed."""

    # The host's status before (NEW for a host never seen).
    previous: str
    # The database time of receipt.
    received: datetime
    # The public key recorded before this heartbeat.
    previous_key: str | None


async def record_heartbeat(conn: Connection, hb: HostHeartbeat) -> HeartbeatRecorded:
    """Upsert the host from its heartbeat, its public key included.

    A host that was OFFLINE is ACTIVE again; DRAINING stays DRAINING (an
    operator's decision).
    """
    before = await conn.fetchrow(
        "SELECT status, public_key FROM hosts WHERE id = $1 FOR UPDATE", hb.host_id
    )
    received = await conn.fetchval(
        """
        INSERT INTO hosts (id, address, runtime, capacity, used, public_key,
                           last_heartbeat_at)
        VALUES ($1, $2, $3, $4, $5, $6, now())
        ON CONFLICT (id) DO UPDATE SET
            address = EXCLUDED.address, runtime = EXCLUDED.runtime,
            capacity = EXCLUDED.capacity, used = EXCLUDED.used,
            public_key = EXCLUDED.public_key,
            last_heartbeat_at = now(),
            status = CASE WHEN hosts.status = 'OFFLINE' THEN 'ACTIVE' ELSE hosts.status END,
            updated_at = now()
        RETURNING last_heartbeat_at
        """,
        hb.host_id,
        hb.address,
        hb.runtime,
        max(0, hb.capacity),
        max(0, hb.used),
        hb.public_key,
    )
    if before is None:
        return HeartbeatRecorded("NEW", received, None)
    return HeartbeatRecorded(before["status"], received, before["public_key"])


async def host_public_key(conn: Connection, host_id: str) -> str | None:
    """The public key of the host's latest heartbeat (None: it announced none)."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT public_key FROM hosts WHERE id = $1", host_id
    )


async def set_host_status(conn: Connection, host_id: str, status: str) -> bool:
    """The operator's DRAINING or ACTIVE for a host; False: no such host (a host
    appears with its first heartbeat)."""
    row = await conn.fetchval(
        "UPDATE hosts SET status = $2, updated_at = now() WHERE id = $1 RETURNING 1",
        host_id,
        status,
    )
    return row is not None


# Sleep
# -----


async def record_sleep(
    conn: Connection,
    host_id: str,
    *,
    sleeping: list[UUID],
    awake: list[UUID],
    grace_seconds: float,
    flags: list[str],
) -> tuple[int, int]:
    """What a heartbeat says of the host's assistants: READY ones it reports
    sleeping become SUSPENDED, SUSPENDED ones it reports running READY again
    (their `flags` cleared). Only assistants placed on that host; a READY one
    that changed within `grace_seconds` is left alone (the heartbeat may
    predate its wake). Returns (suspended, woken)."""
    suspended = await conn.execute(
        """
        UPDATE assistants SET status = 'SUSPENDED', updated_at = now()
        WHERE host_id = $1 AND status = 'READY' AND user_id = ANY($2::uuid[])
          AND updated_at < now() - make_interval(secs => $3)
        """,
        host_id,
        sleeping,
        grace_seconds,
    )
    woken = await conn.execute(
        """
        UPDATE assistants SET status = 'READY', updated_at = now(),
            last_error = CASE WHEN last_error = ANY($3::text[]) THEN NULL
                              ELSE last_error END
        WHERE host_id = $1 AND status = 'SUSPENDED' AND user_id = ANY($2::uuid[])
        """,
        host_id,
        awake,
        flags,
    )
    return int(suspended.split()[-1]), int(woken.split()[-1])


async def mark_awake(
    conn: Connection, user_id: UUID, *, host_id: str, flags: list[str]
) -> bool:
    """READY again after a wake on `host_id` (its `flags` cleared); False when
    the assistant is not placed there any more."""
    row = await conn.fetchval(
        """
        UPDATE assistants SET status = 'READY', updated_at = now(),
            last_error = CASE WHEN last_error = ANY($3::text[]) THEN NULL
                              ELSE last_error END
        WHERE user_id = $1 AND host_id = $2 AND status IN ('READY', 'SUSPENDED')
        RETURNING 1
        """,
        user_id,
        host_id,
        flags,
    )
    return row is not None


async def record_moved_container(
    conn: Connection,
    user_id: UUID,
    *,
    generation: int,
    base_url: str,
    container_id: str,
    spec_hash: str,
) -> bool:
    """The container a wake re-created elsewhere on its host; False when the
    placement is no longer that `generation` or a job took the assistant over
    (PROVISIONING, NONE)."""
    row = await conn.fetchval(
        """
        UPDATE assistants SET base_url = $3, container_id = $4, spec_hash = $5,
            updated_at = now()
        WHERE user_id = $1 AND generation = $2 AND status IN ('READY', 'SUSPENDED')
        RETURNING 1
        """,
        user_id,
        generation,
        base_url,
        container_id,
        spec_hash,
    )
    return row is not None


async def flag_wake_failed(conn: Connection, user_id: UUID, *, flag: str) -> None:
    """Tell the dashboard a wake failed; the assistant stays SUSPENDED, so the
    next message tries again."""
    await conn.execute(
        """
        UPDATE assistants SET last_error = $2, updated_at = now()
        WHERE user_id = $1 AND status = 'SUSPENDED'
          AND last_error IS DISTINCT FROM $2
        """,
        user_id,
        flag,
    )


# Reconcile
# ---------


async def mark_lost_hosts_offline(
    conn: Connection, *, timeout_seconds: float
) -> list[str]:
    """ACTIVE hosts that stopped heart-beating become OFFLINE; returns their ids."""
    rows = await conn.fetch(
        """
        UPDATE hosts SET status = 'OFFLINE', updated_at = now()
        WHERE status = 'ACTIVE'
          AND (last_heartbeat_at IS NULL
               OR last_heartbeat_at < now() - make_interval(secs => $1))
        RETURNING id
        """,
        timeout_seconds,
    )
    return [r["id"] for r in rows]


async def flag_assistants_on_lost_hosts(
    conn: Connection, *, timeout_seconds: float, flag: str
) -> int:
    """Tell the dashboard which placed (READY, SUSPENDED) assistants sit on a
    silent host."""
    result = await conn.execute(
        """
        UPDATE assistants a SET last_error = $2, updated_at = now()
        FROM hosts h
        WHERE a.host_id = h.id AND a.status IN ('READY', 'SUSPENDED')
          AND a.last_error IS DISTINCT FROM $2
          AND (h.last_heartbeat_at IS NULL
               OR h.last_heartbeat_at < now() - make_interval(secs => $1))
        """,
        timeout_seconds,
        flag,
    )
    return int(result.split()[-1])


async def clear_host_flags(conn: Connection, host_id: str, *, flag: str) -> None:
    await conn.execute(
        """
        UPDATE assistants SET last_error = NULL, updated_at = now()
        WHERE host_id = $1 AND status IN ('READY', 'SUSPENDED') AND last_error = $2
        """,
        host_id,
        flag,
    )


async def assistants_to_evacuate(
    conn: Connection, *, silent_for_seconds: float
) -> list[UUID]:
    """Placed (READY, SUSPENDED) assistants on hosts silent for longer than
    the evacuation delay, except those a move off it failed for within as long
    (nowhere to go)."""
    rows = await conn.fetch(
        """
        SELECT a.user_id FROM assistants a JOIN hosts h ON h.id = a.host_id
        WHERE a.status IN ('READY', 'SUSPENDED')
          AND (h.last_heartbeat_at IS NULL
               OR h.last_heartbeat_at < now() - make_interval(secs => $1))
          AND NOT EXISTS (
            SELECT 1 FROM provisioning_jobs j
            WHERE j.user_id = a.user_id AND j.reason = 'host_lost'
              AND j.status = 'FAILED'
              AND j.finished_at > now() - make_interval(secs => $1))
        """,
        silent_for_seconds,
    )
    return [r["user_id"] for r in rows]


async def hosts_heard_from(conn: Connection, *, within_seconds: float) -> int:
    """How many hosts heart-beat within the last `within_seconds`."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM hosts "
        "WHERE last_heartbeat_at > now() - make_interval(secs => $1)",
        within_seconds,
    )
    return count


async def placements(
    conn: Connection, user_ids: list[UUID]
) -> dict[UUID, tuple[str | None, int]]:
    """Where each user's assistant is placed now, and under which generation."""
    rows = await conn.fetch(
        "SELECT user_id, host_id, generation FROM assistants "
        "WHERE user_id = ANY($1::uuid[])",
        user_ids,
    )
    return {r["user_id"]: (r["host_id"], r["generation"]) for r in rows}


async def ready_on_host(conn: Connection, host_id: str) -> list[tuple[UUID, datetime]]:
    """Placed assistants (READY, or SUSPENDED: asleep, not gone) on a host,
    with when they last changed."""
    rows = await conn.fetch(
        "SELECT user_id, updated_at FROM assistants "
        "WHERE host_id = $1 AND status IN ('READY', 'SUSPENDED')",
        host_id,
    )
    return [(r["user_id"], r["updated_at"]) for r in rows]


async def owners_on_host(conn: Connection, host_id: str) -> set[UUID]:
    """Users whose assistant is (being) placed on a host, or whose job is at work
    there (a deprovision removes its container itself)."""
    rows = await conn.fetch(
        """
        SELECT a.user_id FROM assistants a
        WHERE a.host_id = $1
          AND (a.status IN ('READY', 'SUSPENDED', 'PROVISIONING')
               OR EXISTS (SELECT 1 FROM provisioning_jobs j
                          WHERE j.user_id = a.user_id
                            AND j.status IN ('PENDING', 'RUNNING')))
        """,
        host_id,
    )
    return {r["user_id"] for r in rows}


async def last_changes(conn: Connection, user_ids: list[UUID]) -> dict[UUID, datetime]:
    """When each user's assistant row last changed (users without one are absent)."""
    rows = await conn.fetch(
        "SELECT user_id, updated_at FROM assistants WHERE user_id = ANY($1::uuid[])",
        user_ids,
    )
    return {r["user_id"]: r["updated_at"] for r in rows}


async def assistant_counts(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM assistants GROUP BY status"
    )
    return {r["status"]: r["n"] for r in rows}


async def host_rows(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT h.id, h.status, h.capacity, h.used,
               (SELECT count(*) FROM assistants a WHERE a.host_id = h.id) AS assigned
        FROM hosts h
        """
    )


async def try_reconcile_lock(conn: Connection) -> bool:
    """One replica reconciles at a time (session lock, released by the caller)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RECONCILE_LOCK))


async def release_reconcile_lock(conn: Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", _RECONCILE_LOCK)


_RECONCILE_LOCK = 0x59C1A3_0003
