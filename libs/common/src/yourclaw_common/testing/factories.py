"""Rows other services would have written, for tests that start mid-journey."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = ["subscribed_user"]


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
