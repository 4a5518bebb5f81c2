"""One database role per service (migration 0010): each may run the SQL its
service runs, and is refused outside it (a real PostgreSQL)."""

from __future__ import annotations

import ast
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from yourclaw_common.db_roles import SERVICE_ROLES, ensure_logins, login_name
from yourclaw_common.testing import rolled_back

ROOT = Path(__file__).resolve().parents[3]
ROLES = SERVICE_ROLES


def _sql_strings(src: Path) -> list[str]:
    """Every string literal of a service's code that looks like SQL."""
    found = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr):
                text = "".join(
                    v.value if isinstance(v, ast.Constant) else "x" for v in node.values
                )
            else:
                continue
            if re.search(r"\b(SELECT|INSERT|UPDATE|DELETE)\b", text):
                found.append(" ".join(text.split()))
    return found


def _privileges_used(service: str, relations: list[str]) -> dict[str, set[str]]:
    """(relation → privileges) that the service's SQL needs, read from its code."""
    used: dict[str, set[str]] = defaultdict(set)
    for sql in _sql_strings(ROOT / "services" / service / "src"):
        for rel in relations:
            r = re.escape(rel)
            if re.search(rf"\bINSERT INTO {r}\b", sql, re.I):
                used[rel].add("INSERT")
                if re.search(r"\bDO UPDATE\b", sql, re.I):
                    used[rel].add("UPDATE")
            if re.search(rf"\bUPDATE {r}\b", sql, re.I):
                used[rel] |= {"UPDATE", "SELECT"}
            if re.search(rf"\bDELETE FROM {r}\b", sql, re.I):
                used[rel] |= {"DELETE", "SELECT"}
            elif re.search(rf"\b(FROM|JOIN) {r}\b", sql, re.I):
                used[rel].add("SELECT")
                if re.search(r"\bFOR (NO KEY )?UPDATE\b", sql, re.I):
                    used[rel].add("UPDATE")
    return used


def _dsn_as(database_url: str, login: str) -> str:
    """The test database's URL, as `login` (the test server trusts loopback)."""
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{login}@{host}", parts.path, "", ""))


@pytest.fixture
async def relations(db_pool) -> list[str]:
    rows = await db_pool.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_name <> 'schema_migrations'"
    )
    return sorted(r["table_name"] for r in rows)


@pytest.fixture
def connect_as(
    database_url: str, db_pool
) -> Callable[[str], AsyncIterator[asyncpg.Connection]]:
    """`async with connect_as("billing") as conn`: a login of that service's
    role, as an operator makes one, for this test only."""

    @asynccontextmanager
    async def connect(service: str) -> AsyncIterator[asyncpg.Connection]:
        login = f"test_{service.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        await db_pool.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE {ROLES[service]}')
        conn = await asyncpg.connect(_dsn_as(database_url, login))
        try:
            async with rolled_back(conn):
                yield conn
        finally:
            await conn.close()
            await db_pool.execute(f'DROP ROLE "{login}"')

    return connect


async def _refused(conn: asyncpg.Connection, sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        # A savepoint, rolled back by the refusal: the test's transaction goes on.
        async with conn.transaction():
            await conn.execute(sql)


class TestGrants:
    async def test_the_roles_cannot_log_in_themselves(self, db_pool):
        rows = await db_pool.fetch(
            "SELECT rolname, rolcanlogin, rolsuper FROM pg_roles "
            "WHERE rolname = ANY($1::text[])",
            list(ROLES.values()),
        )
        assert sorted(r["rolname"] for r in rows) == sorted(ROLES.values())
        assert not any(r["rolcanlogin"] or r["rolsuper"] for r in rows)

    async def test_every_table_is_granted_to_some_service(self, db_pool, relations):
        """A migration that adds a table grants it to the services using it."""
        for rel in relations:
            granted = [
                role
                for role in ROLES.values()
                if await db_pool.fetchval(
                    "SELECT has_any_column_privilege($1, $2, 'SELECT') "
                    "OR has_table_privilege($1, $2, 'INSERT')",
                    role,
                    rel,
                )
            ]
            assert granted, f"no service role may use {rel}"

    @pytest.mark.parametrize("service", ROLES)
    async def test_each_role_may_run_its_services_sql(
        self, db_pool, relations, service
    ):
        used = _privileges_used(service, relations)
        assert used, service
        role = ROLES[service]
        for rel, privileges in used.items():
            for privilege in privileges:
                # SELECT and UPDATE may be granted column by column.
                check = (
                    "has_any_column_privilege"
                    if privilege in ("SELECT", "UPDATE")
                    else "has_table_privilege"
                )
                assert await db_pool.fetchval(
                    f"SELECT {check}($1, $2, $3)", role, rel, privilege
                ), f"{service} runs {privilege} on {rel} but its role may not"


# What each role may do (beside its services' own SQL), then what it may not:
# billing reads no secret and no key; gateway-api reads the notify secret but
# no token; messaging reaches tokens only through `channel_recipients`; the LLM proxy
# only meters.
BOUNDS: dict[str, tuple[list[str], list[str]]] = {
    "billing": (
        [
            "SELECT status FROM subscriptions",
            "INSERT INTO stripe_events (id, type) VALUES ('evt_roles', 'x')",
        ],
        [
            "SELECT gateway_token_encrypted FROM assistants",
            "SELECT id FROM assistants",
            "SELECT encrypted_key FROM api_keys",
            "SELECT gateway_token_encrypted FROM channel_recipients",
            "SELECT body FROM messages",
            "SELECT token_sha256 FROM proxy_credentials",
        ],
    ),
    "gateway-api": (
        ["SELECT user_id, notify_secret_encrypted FROM assistants LIMIT 1"],
        [
            "SELECT gateway_token_encrypted FROM assistants",
            "SELECT proxy_token_encrypted FROM assistants",
            "SELECT * FROM assistants",
            "UPDATE assistants SET status = 'READY'",
            "UPDATE subscriptions SET status = 'ACTIVE'",
        ],
    ),
    "messaging": (
        [
            "SELECT gateway_token_encrypted FROM channel_recipients LIMIT 1",
            "UPDATE users SET preferred_channel = 'sms' WHERE false",
        ],
        [
            "SELECT gateway_token_encrypted FROM assistants",
            "UPDATE subscriptions SET status = 'ACTIVE'",
            "UPDATE users SET email = 'x' WHERE false",
            "SELECT code_sha256 FROM telegram_link_codes",
        ],
    ),
    "llm-proxy": (
        ["SELECT token_sha256 FROM proxy_credentials LIMIT 1"],
        [
            "UPDATE subscriptions SET status = 'ACTIVE'",
            "SELECT body FROM messages",
            "SELECT notify_secret_encrypted FROM assistants",
            "UPDATE proxy_credentials SET revoked_at = now()",
        ],
    ),
}


class TestRefusals:
    @pytest.mark.parametrize("service", BOUNDS)
    async def test_a_role_reaches_what_it_needs_and_no_secret_beyond(
        self, connect_as, service
    ):
        allowed, refused = BOUNDS[service]
        async with connect_as(service) as conn:
            for sql in allowed:
                await conn.execute(sql)
            for sql in refused:
                await _refused(conn, sql)

    @pytest.mark.parametrize("service", ROLES)
    async def test_no_service_may_drop_truncate_or_create(self, connect_as, service):
        async with connect_as(service) as conn:
            for sql in (
                "DROP TABLE messages",
                "TRUNCATE outbox",
                "DELETE FROM outbox",
                "CREATE TABLE spy (x int)",
                "SELECT version FROM schema_migrations",
            ):
                await _refused(conn, sql)


class TestLogins:
    async def test_a_service_login_is_made_then_its_password_changed(
        self, db_pool, database_url
    ):
        """What compose's migrate service does at every start."""
        async with db_pool.acquire() as admin:
            await ensure_logins(admin, {"billing": "first-password"})
            await ensure_logins(admin, {"billing": "second-password"})
        login = login_name("billing")
        try:
            row = await db_pool.fetchrow(
                "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, "
                "pg_has_role($1, 'yourclaw_billing', 'MEMBER') AS member "
                "FROM pg_roles WHERE rolname = $1",
                login,
            )
            assert dict(row) == {
                "rolcanlogin": True,
                "rolsuper": False,
                "rolcreaterole": False,
                "rolcreatedb": False,
                "member": True,
            }
            conn = await asyncpg.connect(_dsn_as(database_url, login))
            try:
                await conn.fetch("SELECT status FROM subscriptions LIMIT 1")
                await _refused(conn, "SELECT encrypted_key FROM api_keys")
            finally:
                await conn.close()
        finally:
            await db_pool.execute(f'DROP ROLE "{login}"')

    async def test_an_empty_password_is_refused(self, db_pool):
        async with db_pool.acquire() as admin:
            with pytest.raises(ValueError, match="DB_PASSWORD_LLM_PROXY is empty"):
                await ensure_logins(admin, {"llm-proxy": ""})
