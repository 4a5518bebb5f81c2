"""Each service's database login: a member of its role (migration 0010).

`python -m yourclaw_common.db_roles` (docker compose's `migrate` service) runs
the migrations as the schema's owner (DATABASE_URL), then makes or updates one
login per service, `yourclaw_<service>_login`, with the password in
`DB_PASSWORD_<SERVICE>`, a member of `yourclaw_<service>` and nothing more. In
Kubernetes the logins are made once by hand or by the database's operator
(docs/security.md, "Database roles"); the migrate Job only migrates.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping

import asyncpg

from yourclaw_common.db import migrate
from yourclaw_common.logging import configure_logging, get_logger
from yourclaw_common.settings import CommonSettings

__all__ = ["SERVICE_ROLES", "ensure_logins", "login_name", "password_env"]

# The roles migration 0010 creates, by service.
SERVICE_ROLES: Mapping[str, str] = {
    "gateway-api": "yourclaw_gateway_api",
    "messaging": "yourclaw_messaging",
    "billing": "yourclaw_billing",
    "provisioner": "yourclaw_provisioner",
    "llm-proxy": "yourclaw_llm_proxy",
}

log = get_logger(__name__)


def login_name(service: str) -> str:
    """The login role `service` connects as."""
    return f"{SERVICE_ROLES[service]}_login"


def password_env(service: str) -> str:
    """The environment variable that holds `service`'s database password."""
    return "DB_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", service.upper())


async def ensure_logins(conn: asyncpg.Connection, passwords: Mapping[str, str]) -> None:
    """Create each service's login (or set its password), a member of its role."""
    for service, password in passwords.items():
        if not password:
            raise ValueError(f"{password_env(service)} is empty")
        login = login_name(service)
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", login)
        # Role statements take no bind parameters: quote with format(), whose
        # %I and %L are PostgreSQL's own identifier and literal quoting.
        statement = await conn.fetchval(
            "SELECT format('%s ROLE %I LOGIN PASSWORD %L', $1::text, $2::text, "
            "$3::text)",
            "ALTER" if exists else "CREATE",
            login,
            password,
        )
        await conn.execute(statement)
        grant = await conn.fetchval(
            "SELECT format('GRANT %I TO %I', $1::text, $2::text)",
            SERVICE_ROLES[service],
            login,
        )
        await conn.execute(grant)
        log.info("db.login.ready", login=login, created=not exists)


async def _run(dsn: str, passwords: Mapping[str, str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await ensure_logins(conn, passwords)
    finally:
        await conn.close()


def cli() -> None:
    """Migrate, then a login per service from `DB_PASSWORD_<SERVICE>`."""
    settings = CommonSettings(service_name="migrate")
    configure_logging("migrate", settings.log_level)
    passwords = {s: os.environ.get(password_env(s), "") for s in SERVICE_ROLES}
    asyncio.run(_run(settings.database_url, passwords))


if __name__ == "__main__":
    cli()
