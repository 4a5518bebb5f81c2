"""Wake a sleeping (SUSPENDED) assistant before its turn: a core NATS request
to the provisioner (`assistant.wake.request`), answered once the gateway is
healthy. A wake that fails makes the turn wait like one for a starting
assistant: redelivered with backoff, and after ASSISTANT_NOT_READY_DELIVERIES
the user gets one readable message. Nothing was asked, so nothing is lost or
answered twice; the per-address turn lock keeps a burst in order behind it."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from uuid import UUID

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from pydantic import ValidationError
from yourclaw_common.events import Subject, WakeAssistant, WakeReply
from yourclaw_common.logging import get_correlation_id, get_logger
from yourclaw_common.nats import CORRELATION_HEADER

from yourclaw_messaging import metrics
from yourclaw_messaging.errors import AssistantStarting

__all__ = ["Waker"]

log = get_logger(__name__)


@dataclass
class Waker:
    nc: NATS
    timeout: float

    async def wake(self, user_id: UUID) -> WakeReply:
        """Ask the provisioner to wake the assistant; a failure is a reply too."""
        headers = {CORRELATION_HEADER: get_correlation_id() or uuid.uuid4().hex}
        try:
            msg = await self.nc.request(
                Subject.ASSISTANT_WAKE.value,
                WakeAssistant(user_id=user_id).model_dump_json().encode(),
                timeout=self.timeout,
                headers=headers,
            )
        except (NatsError, TimeoutError) as exc:
            return WakeReply(
                ok=False,
                code="PROVISIONER_UNAVAILABLE",
                error=f"no answer within {self.timeout:g}s ({type(exc).__name__})",
            )
        try:
            return WakeReply.model_validate_json(msg.data)
        except ValidationError as exc:
            return WakeReply(ok=False, code="BAD_REPLY", error=str(exc)[:300])

    async def before_turn(
        self, user_id: UUID, *, message_sid: str, last_delivery: bool
    ) -> bool:
        """Wake the assistant for a turn: True once awake; False when it could
        not be woken on the turn's last delivery (time for the apology);
        otherwise AssistantStarting, so the turn is delivered again later."""
        started = time.perf_counter()
        reply = await self.wake(user_id)
        outcome = "woken" if reply.ok else (reply.code or "failed")
        metrics.WAKES.labels(outcome).inc()
        metrics.WAKE_SECONDS.labels("ok" if reply.ok else "failed").observe(
            time.perf_counter() - started
        )
        if reply.ok:
            log.info(
                "messaging.assistant.woken",
                message_sid=message_sid,
                user_id=str(user_id),
                seconds=reply.seconds,
            )
            return True
        log.warning(
            "messaging.assistant.wake_failed",
            message_sid=message_sid,
            user_id=str(user_id),
            code=reply.code,
            error=reply.error,
            last_delivery=last_delivery,
        )
        if last_delivery:
            return False
        metrics.TURNS.labels("waiting").inc()
        raise AssistantStarting(
            f"the assistant is waking ({reply.code}: {reply.error})",
            message_sid=message_sid,
        )
