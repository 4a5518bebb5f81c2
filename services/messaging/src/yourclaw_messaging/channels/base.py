"""What turns and proactive messages need from a channel.

A channel turns stored `messages` rows into sends through its provider's API
and knows that provider's rules: how long one message may be, when free-form
text is allowed and what replaces it otherwise, how to fetch an attachment. A
new channel (Telegram, SMS) is one module that implements this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection

from yourclaw_messaging.outgoing import Planned


class Channel(Protocol):
    async def deliver(
        self, stored: Sequence[asyncpg.Record], address: str, *, fresh: bool
    ) -> None:
        """Send every stored part not yet sent, in order. `fresh`: this attempt
        just stored them, so none can have reached the provider yet."""
        ...

    def split(self, text: str) -> list[str]:
        """`text` cut into the parts one message of this channel can hold."""
        ...

    async def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        """An inbound attachment and its content type; MediaRejected when too big."""
        ...

    async def plan_notice(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        """A message we send first (an automation's result, a usage notice)."""
        ...

    async def plan_ready(self, conn: Connection, user_id: UUID, text: str) -> Planned:
        """The "your assistant is ready" message."""
        ...

    def in_flight(self, stored: Sequence[asyncpg.Record]) -> bool:
        """Whether another attempt may be sending one of these parts right now."""
        ...
