"""`yourclaw-migrate`: apply pending migrations to DATABASE_URL."""

from __future__ import annotations

import asyncio

import asyncpg

from yourclaw_common.db import migrate
from yourclaw_common.logging import configure_logging, get_logger
from yourclaw_common.settings import CommonSettings

__all__ = ["cli", "run"]


async def run(dsn: str) -> list[str]:
    """Connect, migrate, disconnect; returns the versions applied."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def cli() -> None:
    """Entry point of `yourclaw-migrate`."""
    settings = CommonSettings(service_name="migrate")
    configure_logging("migrate", settings.log_level)
    applied = asyncio.run(run(settings.database_url))
    get_logger(__name__).info("db.migrate.done", applied=applied)
