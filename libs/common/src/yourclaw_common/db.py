"""asyncpg pool and the plain-SQL migration runner."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from yourclaw_common.logging import get_logger

__all__ = [
    "Connection",
    "Migration",
    "close_pool",
    "create_pool",
    "load_migrations",
    "migrate",
]

# What repositories take: a plain connection or one acquired from a pool.
Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
)

log = get_logger(__name__)

# Any constant works; every service takes the same one, so concurrent starts
# apply the migrations one runner at a time.
_MIGRATION_LOCK_ID = 0x59C1A3_0001


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _release_reset(conn: asyncpg.Connection) -> None:
    """Reset a connection on its way back to the pool only when it needs it.

    asyncpg's default reset runs `RESET ALL; UNLISTEN *; CLOSE ALL; SELECT
    pg_advisory_unlock_all()` on every release: one more round trip, several
    times per message. Our code leaves no session state behind (the migration
    lock is released where it is taken), so only a connection left inside a
    transaction (a cancelled handler) gets asyncpg's full reset, which rolls it
    back and clears asyncpg's own record of it."""
    if conn.is_in_transaction():
        await conn.reset()


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections encode and decode json/jsonb with orjson."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_release_reset,
    )
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool, *, seconds: float = 10.0) -> None:
    """Close a pool at shutdown: wait `seconds` for the connections in use to
    come back, then cut them (PostgreSQL rolls back what they had open). A
    connection that is never given back (say, one whose release raised)
    would otherwise hold a stopping service forever."""
    in_use = pool.get_size() - pool.get_idle_size()
    try:
        await asyncio.wait_for(pool.close(), timeout=seconds)
    except TimeoutError:
        # wait_for's cancel has made asyncpg terminate the pool already.
        pool.terminate()
        log.warning(
            "postgres.pool.close_timeout",
            seconds=seconds,
            in_use=in_use,
            message="connections not given back at shutdown were cut",
        )


# A migration's earlier checksums from before an edit of its comments alone:
# a database that applied that text is up to date, and its record moves to
# the new text. Any other change to an applied migration is refused.
RECOMMENTED: dict[str, tuple[str, ...]] = {
    # Its header and one comment named documents outside the repository.
    "0001_initial": (
        "d1b0aeceee640c878d16629786ea4f0ca4aba6ec0780fd0ee29df490bc153293",
    ),
}


@dataclass(frozen=True)
class Migration:
    """One SQL file: `NNNN_name.sql`, applied once, in order."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """Every migration shipped in `yourclaw_common/migrations`, in order."""
    folder = resources.files("yourclaw_common") / "migrations"
    found = [
        Migration(version=entry.name.removesuffix(".sql"), sql=entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.version)


async def migrate(
    conn: Connection, migrations: list[Migration] | None = None
) -> list[str]:
    """Apply pending migrations, each in its own transaction, under an advisory lock.

    Returns the versions applied by this call. Safe to run from many processes at
    once: the others wait for the lock, then find nothing left to do.
    """
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version text PRIMARY KEY,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done: dict[str, Any] = {r["version"]: r["checksum"] for r in rows}
        for migration in migrations:
            if migration.version in done:
                recorded = done[migration.version]
                if recorded != migration.checksum:
                    if recorded not in RECOMMENTED.get(migration.version, ()):
                        raise RuntimeError(
                            f"migration {migration.version} was changed after it "
                            "was applied"
                        )
                    await conn.execute(
                        "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
                        migration.version,
                        migration.checksum,
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
            applied_now.append(migration.version)
            log.info("db.migration.applied", version=migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now
