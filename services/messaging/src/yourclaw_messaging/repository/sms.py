"""SMS opt-outs (`sms_opt_outs`): numbers that sent STOP to our SMS number."""

from __future__ import annotations

from uuid import UUID

from yourclaw_common.db import Connection


async def opt_out(conn: Connection, phone: str) -> None:
    await conn.execute(
        "INSERT INTO sms_opt_outs (phone_e164) VALUES ($1) ON CONFLICT DO NOTHING",
        phone,
    )


async def opt_in(conn: Connection, phone: str) -> None:
    await conn.execute("DELETE FROM sms_opt_outs WHERE phone_e164 = $1", phone)


async def opted_out(conn: Connection, phone: str) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM sms_opt_outs WHERE phone_e164 = $1", phone
    )
    return found is not None


async def user_opted_out(conn: Connection, user_id: UUID) -> bool:
    """Whether the user's SMS address (their proven number) opted out."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM channel_recipients r
        JOIN sms_opt_outs o ON o.phone_e164 = r.address
        WHERE r.user_id = $1 AND r.channel = 'sms'
        LIMIT 1
        """,
        user_id,
    )
    return found is not None
