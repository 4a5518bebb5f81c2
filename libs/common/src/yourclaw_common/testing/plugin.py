"""pytest plugin: real NATS JetStream and PostgreSQL for every test session.

Without `NATS_URL` / `DATABASE_URL` it starts its own servers (embedded wheels)
on free ports in a temp dir, one set per xdist worker, and stops them at the
end. With them set, it uses those servers: a fresh database per worker is
created on the given PostgreSQL, and the streams of the given NATS are reset
before each test (so point it at a NATS of your own, and run without -n).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from yourclaw_common.crypto import generate_key
from yourclaw_common.db import Connection, create_pool, migrate
from yourclaw_common.embedded import EmbeddedNats, local_infra
from yourclaw_common.logging import FieldsFormatter
from yourclaw_common.nats_auth import new_passwords
from yourclaw_common.testing.helpers import reset_streams, rolled_back

# Short, so tests of crashes and redelivery do not wait 30 s.
TEST_ACK_WAIT_SECONDS = 3.0


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """A failed test's captured log shows each event's fields (the error a
    turn failed with, the ids), not only its name."""
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    if logging_plugin is None:
        return
    handler = logging_plugin.report_handler
    if not isinstance(handler.formatter, FieldsFormatter):
        handler.setFormatter(FieldsFormatter(handler.formatter))


@dataclass(frozen=True)
class Infra:
    """Where the session's NATS and PostgreSQL are."""

    nats_url: str
    database_url: str
    tmp_dir: Path
    # The NATS started for this session (None for a given NATS_URL): it takes
    # only its users; `nats_url` carries the operator's credentials.
    nats: EmbeddedNats | None = None


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(
        (parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment)
    )


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """NATS + PostgreSQL for this worker: given by env, or embedded."""
    tmp = Path(tempfile.mkdtemp(prefix=f"yourclaw-test-{_worker_id()}-"))
    # Readable by the PostgreSQL system user when tests run as root.
    os.chmod(tmp, 0o755)  # noqa: S103
    try:
        with local_infra(
            tmp,
            nats_url=os.environ.get("NATS_URL"),
            database_url=os.environ.get("DATABASE_URL"),
            fast=True,
        ) as local:
            yield Infra(
                nats_url=local.operator_url,
                database_url=local.database_url,
                tmp_dir=tmp,
                nats=local.nats,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(infra: Infra) -> str:
    """A fresh, migrated database for this worker."""
    name = f"yourclaw_test_{_worker_id()}_{os.getpid()}"
    admin = await asyncpg.connect(infra.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = _with_database(infra.database_url, name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return dsn


@pytest.fixture(scope="session")
def nats_url(infra: Infra) -> str:
    return infra.nats_url


@pytest.fixture(scope="session")
def nats_identity(infra: Infra) -> Callable[[str], dict[str, str]]:
    """`nats_identity(user)`: the settings (`nats_user`, `nats_password`) that
    connect as that NATS user: a service's name or `host_user(host_id)`, added
    to the server when new. `{}` on a given NATS_URL (no users to have)."""

    def identity(user: str) -> dict[str, str]:
        if infra.nats is None or infra.nats.passwords is None:
            return {}
        if user not in infra.nats.passwords:
            infra.nats.add_users(new_passwords([user]))
        return {"nats_user": user, "nats_password": infra.nats.passwords[user]}

    return identity


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return generate_key()


@pytest.fixture(scope="session")
def service_env(
    database_url: str, nats_url: str, encryption_key: str
) -> dict[str, str]:
    """Environment every service under test gets (as a subprocess or settings)."""
    return {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "ENCRYPTION_KEY": encryption_key,
        "CONSUMER_ACK_WAIT_SECONDS": str(TEST_ACK_WAIT_SECONDS),
        "LOG_LEVEL": "INFO",
    }


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def clean_db(db_pool: asyncpg.Pool) -> asyncpg.Pool:
    """The pool, with every table emptied first (for tests where services commit)."""
    async with db_pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    return db_pool


@pytest_asyncio.fixture(loop_scope="session")
async def db_conn(db_pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    async with db_pool.acquire() as conn, rolled_back(conn):
        yield conn


@pytest_asyncio.fixture(loop_scope="session")
async def nats_client(nats_url: str) -> AsyncIterator[NATS]:
    """A client on a JetStream whose streams were just reset."""
    import nats

    nc = await nats.connect(nats_url, name="pytest")
    await reset_streams(nc.jetstream(), default_ack_wait=TEST_ACK_WAIT_SECONDS)
    yield nc
    await nc.drain()


@pytest.fixture
def js(nats_client: NATS) -> JetStreamContext:
    return nats_client.jetstream()
