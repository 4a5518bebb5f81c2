"""Rows other services would have written, for tests that start mid-journey."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import asyncpg

__all__ = ["assistant_with_proxy_credential", "subscribed_user"]


async def subscribed_user(
    pool: asyncpg.Pool, *, phone: str, status: str = "ACTIVE"
) -> uuid.UUID:
    """A user with a WhatsApp number and a subscription in `status`."""
    user_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO users (id) VALUES ($1)", user_id)
        await conn.execute(
            "INSERT INTO user_phones (user_id, phone_e164) VALUES ($1, $2)",
            user_id,
            phone,
        )
        await conn.execute(
            "INSERT INTO subscriptions (user_id, stripe_customer_id, status) "
            "VALUES ($1, $2, $3)",
            user_id,
            f"cus_test_{user_id.hex[:12]}",
            status,
        )
    return user_id


async def assistant_with_proxy_credential(
    pool: asyncpg.Pool,
) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A user with a READY assistant and its LLM proxy credential, as the
    provisioner stores it (sha256 only): (user id, assistant id, the token)."""
    user_id, assistant_id = uuid.uuid4(), uuid.uuid4()
    token = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO users (id) VALUES ($1)", user_id)
        await conn.execute(
            "INSERT INTO assistants (id, user_id, status) VALUES ($1, $2, 'READY')",
            assistant_id,
            user_id,
        )
        await conn.execute(
            "INSERT INTO proxy_credentials (assistant_id, user_id, token_sha256) "
            "VALUES ($1, $2, $3)",
            assistant_id,
            user_id,
            hashlib.sha256(token.encode()).hexdigest(),
        )
    return user_id, assistant_id, token
