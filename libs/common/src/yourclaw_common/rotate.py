"""`yourclaw-rotate-secrets`: re-encrypt every stored secret under the newest key.

Key rotation (docs/operations.md): put the new Fernet key first in
ENCRYPTION_KEY (`new,old`) on every service, deploy, run this once, then drop
the old key. Each row is re-encrypted in its own short transaction (row lock,
so a concurrent write is not lost); running it twice is harmless.
"""

from __future__ import annotations

import asyncio

import asyncpg

from yourclaw_common.crypto import SecretBox, SecretBoxError
from yourclaw_common.db import Connection
from yourclaw_common.logging import configure_logging, get_logger
from yourclaw_common.settings import CommonSettings

__all__ = ["ENCRYPTED_COLUMNS", "cli", "rotate_secrets"]

log = get_logger(__name__)

# (table, column): every Fernet ciphertext the services store.
ENCRYPTED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("api_keys", "encrypted_key"),
    ("assistants", "gateway_token_encrypted"),
    ("assistants", "notify_secret_encrypted"),
    ("assistants", "proxy_token_encrypted"),
)


async def rotate_secrets(conn: Connection, box: SecretBox) -> dict[str, int]:
    """Re-encrypt every stored ciphertext; returns rows rotated per column, and
    `<table>.<column>.unreadable` for rows no configured key opens (logged and
    left as they are: restore the missing key, then run it again)."""
    rotated: dict[str, int] = {}
    for table, column in ENCRYPTED_COLUMNS:
        ids = await conn.fetch(
            f"SELECT id FROM {table} WHERE {column} IS NOT NULL ORDER BY id"  # noqa: S608 - constant names
        )
        count = unreadable = 0
        for row in ids:
            async with conn.transaction():
                current = await conn.fetchval(
                    f"SELECT {column} FROM {table} WHERE id = $1 FOR UPDATE",  # noqa: S608
                    row["id"],
                )
                if current is None:
                    continue
                try:
                    fresh = box.rotate(current)
                except SecretBoxError:
                    unreadable += 1
                    log.error(
                        "secrets.unreadable",
                        table=table,
                        column=column,
                        id=str(row["id"]),
                    )
                    continue
                await conn.execute(
                    f"UPDATE {table} SET {column} = $2 WHERE id = $1",  # noqa: S608
                    row["id"],
                    fresh,
                )
                count += 1
        rotated[f"{table}.{column}"] = count
        if unreadable:
            rotated[f"{table}.{column}.unreadable"] = unreadable
    return rotated


async def _run(settings: CommonSettings) -> dict[str, int]:
    box = SecretBox(settings.encryption_key.get_secret_value())
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await rotate_secrets(conn, box)
    finally:
        await conn.close()


def cli() -> None:
    """Entry point of `yourclaw-rotate-secrets` (DATABASE_URL, ENCRYPTION_KEY)."""
    settings = CommonSettings(service_name="rotate-secrets")
    configure_logging("rotate-secrets", settings.log_level)
    rotated = asyncio.run(_run(settings))
    log.info("secrets.rotated", **rotated)
    if any(name.endswith(".unreadable") for name in rotated):
        raise SystemExit("some secrets open with none of the keys in ENCRYPTION_KEY")
