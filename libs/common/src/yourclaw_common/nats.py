"""The one publish path and the one consume runner.

The runner owns the transport: fetch → find the model by subject → validate →
call the handler (heartbeating `in_progress` while it runs) → ack / nak with
backoff / term → log and count.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import ConnectionReconnectingError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import FetchTimeoutError
from pydantic import SecretStr, ValidationError

from yourclaw_common.errors import PermanentError
from yourclaw_common.events import ConsumerSpec, Event, Stream, model_for
from yourclaw_common.logging import bind_correlation_id, get_correlation_id, get_logger
from yourclaw_common.metrics import RunnerMetrics
from yourclaw_common.nats_auth import inbox_prefix
from yourclaw_common.settings import CommonSettings

__all__ = [
    "CORRELATION_HEADER",
    "Handler",
    "HandlerContext",
    "backoff_seconds",
    "connect",
    "connect_as",
    "consume",
    "count_dead_letters",
    "publish",
    "watch_consumers",
]

log = get_logger(__name__)

CORRELATION_HEADER = "Yourclaw-Correlation-Id"
_MSG_ID_HEADER = "Nats-Msg-Id"
_MAX_REASON_CHARS = 400

E = TypeVar("E", bound=Event)


async def connect(
    url: str,
    *,
    name: str,
    user: str = "",
    password: SecretStr | str = "",
    **options: Any,
) -> NATS:
    """Connect to NATS, reconnecting forever (services outlive NATS restarts).

    A silent server is given up on within seconds (see the ping options). With
    `user`, as that NATS user, replies arriving on its own inbox prefix (the
    only one its permissions let it subscribe to).
    """

    async def _on_error(exc: Exception) -> None:
        log.warning("nats.client.error", error=str(exc))

    async def _on_disconnect() -> None:
        log.warning("nats.client.disconnected")

    async def _on_reconnect() -> None:
        log.info("nats.client.reconnected")

    defaults: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        # A frozen or cut-off server leaves the TCP connection open and silent:
        # with nats-py's defaults (a PING every 120 s, 2 unanswered) the client
        # writes into it for minutes, and the server, once back, works through
        # all of that before anything sent after. Unanswered for ~6 s, the
        # connection is dropped and the client redials until NATS answers.
        "ping_interval": 2,
        "max_outstanding_pings": 2,
        "error_cb": _on_error,
        "disconnected_cb": _on_disconnect,
        "reconnected_cb": _on_reconnect,
    }
    if user:
        secret = (
            password.get_secret_value() if isinstance(password, SecretStr) else password
        )
        defaults.update(user=user, password=secret, inbox_prefix=inbox_prefix(user))
    defaults.update(options)
    return await nats.connect(url, **defaults)


async def connect_as(settings: CommonSettings, *, name: str, **options: Any) -> NATS:
    """`connect` with a service's settings: its URL and NATS identity."""
    return await connect(
        settings.nats_url,
        name=name,
        user=settings.nats_user,
        password=settings.nats_password,
        **options,
    )


async def publish(
    js: JetStreamContext,
    event: Event,
    *,
    correlation_id: str | None = None,
    timeout: float = 5.0,
) -> PubAck:
    """Publish an event and wait for JetStream's ack.

    `Nats-Msg-Id` is the event's dedupe key, so a second publish of the same
    event (a provider retry, an outbox re-relay) is dropped by the server.

    While the client is reconnecting it fails at once: the caller retries (a
    webhook answers 503, the outbox relay backs off), where nats-py would hold
    the publish and replay it ahead of fresher ones once NATS is back.
    """
    if js._nc.is_reconnecting:
        raise ConnectionReconnectingError
    headers = {
        _MSG_ID_HEADER: event.dedupe_key(),
        CORRELATION_HEADER: correlation_id
        or get_correlation_id()
        or str(event.event_id),
    }
    return await js.publish(
        event.publish_subject(),
        event.model_dump_json().encode(),
        headers=headers,
        timeout=timeout,
    )


def backoff_seconds(num_delivered: int) -> float:
    """Delay before a failed message is redelivered: 1, 2, 4 … 60 s, ±20 %."""
    base: float = min(60.0, 2.0 ** max(0, num_delivered - 1))
    return float(base * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not crypto


@dataclass
class HandlerContext:
    """What a handler knows about the message it handles."""

    msg: Msg
    consumer: str
    num_delivered: int
    correlation_id: str

    async def heartbeat(self) -> None:
        """Tell JetStream the message is still being worked on."""
        await self.msg.in_progress()


Handler = Callable[[Any, HandlerContext], Awaitable[None]]


async def _heartbeat_loop(msg: Msg, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await msg.in_progress()
        except Exception as exc:  # the connection may be reconnecting
            log.warning("nats.consume.heartbeat_failed", error=str(exc))


def _reason(kind: str, detail: str) -> bytes:
    """One line, bounded: the reason JetStream puts in the terminated advisory."""
    text = " ".join(f"{kind}: {detail}".split())
    return text[:_MAX_REASON_CHARS].encode()


async def _term(msg: Msg, reason: bytes) -> None:
    """`+TERM <reason>`: JetStream copies the reason into its MSG_TERMINATED
    advisory, which the DEAD_LETTER stream stores. nats-py's `Msg.term()` takes
    no reason, so the ack is published the way `term()` does it."""
    if not msg.reply:
        raise ValueError("not a JetStream message: no reply subject")
    await msg._client.publish(msg.reply, Msg.Ack.Term + b" " + reason)
    msg._ackd = True


async def _handle_one(
    msg: Msg,
    spec: ConsumerSpec,
    handler: Handler,
    metrics: RunnerMetrics,
    heartbeat_interval: float,
) -> None:
    headers = msg.headers or {}
    cid = headers.get(CORRELATION_HEADER) or uuid.uuid4().hex
    num_delivered = msg.metadata.num_delivered
    started = time.perf_counter()
    outcome = "acked"
    dead_letter = ""  # why the message is terminated, when it is
    reason = b""
    delay = 0.0
    with bind_correlation_id(cid):
        if num_delivered > 1:
            metrics.redeliveries.labels(spec.durable).inc()
        try:
            event = model_for(msg.subject).model_validate_json(msg.data)
        except (ValidationError, KeyError, ValueError) as exc:
            outcome, dead_letter = "terminated", "invalid"
            reason = _reason("invalid_message", str(exc))
            log.error(
                "nats.consume.invalid_message",
                consumer=spec.durable,
                subject=msg.subject,
                error=str(exc)[:500],
            )
        else:
            ctx = HandlerContext(msg, spec.durable, num_delivered, cid)
            beat = asyncio.create_task(_heartbeat_loop(msg, heartbeat_interval))
            try:
                await handler(event, ctx)
            except PermanentError as exc:
                outcome, dead_letter = "terminated", "permanent"
                reason = _reason(f"permanent_error {exc.code}", exc.detail)
                log.error(
                    "nats.consume.permanent_error",
                    consumer=spec.durable,
                    subject=msg.subject,
                    code=exc.code,
                    error=exc.detail,
                )
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if num_delivered >= spec.max_deliver:
                    # The last delivery JetStream allows: terminate with the
                    # error rather than let MAX_DELIVERIES drop the reason.
                    outcome, dead_letter = "terminated", "exhausted"
                    reason = _reason(
                        f"retries_exhausted after {num_delivered} deliveries", error
                    )
                else:
                    outcome = "retried"
                    delay = backoff_seconds(num_delivered)
                log.exception(
                    "nats.consume.handler_failed",
                    consumer=spec.durable,
                    subject=msg.subject,
                    num_delivered=num_delivered,
                    dead_lettered=bool(dead_letter),
                    retry_in_s=round(delay, 2),
                    error=error[:500],
                )
            finally:
                beat.cancel()
        try:
            if outcome == "acked":
                await msg.ack()
            elif outcome == "terminated":
                await _term(msg, reason)
            else:
                await msg.nak(delay=delay)
        except Exception as exc:
            # The server will redeliver after ack_wait; handlers are idempotent.
            log.warning("nats.consume.ack_failed", outcome=outcome, error=str(exc))
        if dead_letter:
            metrics.dead_lettered.labels(spec.durable, dead_letter).inc()
        metrics.consumed.labels(spec.durable, msg.subject, outcome).inc()
        metrics.handler_seconds.labels(spec.durable).observe(
            time.perf_counter() - started
        )


async def watch_consumers(
    js: JetStreamContext,
    specs: list[ConsumerSpec],
    *,
    stop: asyncio.Event,
    metrics: RunnerMetrics,
    interval: float = 10.0,
) -> None:
    """Until `stop`: export each durable's lag (pending, ack pending) and the
    number of its dead letters waiting in the DEAD_LETTER stream."""
    while not stop.is_set():
        for spec in specs:
            try:
                info = await js.consumer_info(spec.stream, spec.durable)
                metrics.consumer_pending.labels(spec.durable).set(info.num_pending or 0)
                metrics.consumer_ack_pending.labels(spec.durable).set(
                    info.num_ack_pending or 0
                )
                metrics.dead_letters.labels(spec.durable).set(
                    await count_dead_letters(js, spec)
                )
            except Exception as exc:  # NATS may be restarting; try next round
                log.warning(
                    "nats.consumer_info_failed", consumer=spec.durable, error=str(exc)
                )
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def count_dead_letters(js: JetStreamContext, spec: ConsumerSpec) -> int:
    """Dead letters of one durable in the DEAD_LETTER stream (both advisory kinds)."""
    info = await js.stream_info(
        Stream.DEAD_LETTER,
        subjects_filter=f"$JS.EVENT.ADVISORY.CONSUMER.*.{spec.stream}.{spec.durable}",
    )
    return sum((info.state.subjects or {}).values())


async def consume(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handler: Handler,
    *,
    stop: asyncio.Event,
    metrics: RunnerMetrics,
    ack_wait: float,
    concurrency: int = 8,
    fetch_timeout: float = 1.0,
) -> None:
    """Run `handler` on every message of a durable pull consumer until `stop` is set.

    Replicas of a service run this on the same durable and share the work. On
    stop, no new messages are fetched and in-flight ones are finished.
    """
    psub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
    in_flight: set[asyncio.Task[None]] = set()
    heartbeat_interval = max(0.2, ack_wait / 3)
    # Fetch again once a quarter of the slots are free, not at every free slot:
    # under load a fetch (a round trip) brings several messages, not one.
    refill = max(1, concurrency // 4)
    log.info("nats.consume.started", consumer=spec.durable, stream=spec.stream)
    try:
        while not stop.is_set():
            if concurrency - len(in_flight) < refill:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                # Idle, wait for one message: a one-message request returns as
                # it arrives, where a batch request can hold it until the next.
                msgs = await psub.fetch(
                    concurrency - len(in_flight) if in_flight else 1,
                    timeout=fetch_timeout,
                )
            except (FetchTimeoutError, TimeoutError):
                continue
            except Exception as exc:
                log.warning(
                    "nats.consume.fetch_failed", consumer=spec.durable, error=str(exc)
                )
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                task = asyncio.create_task(
                    _handle_one(msg, spec, handler, metrics, heartbeat_interval)
                )
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
    finally:
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        try:
            await psub.unsubscribe()
        except Exception as exc:
            log.debug("nats.consume.unsubscribe_failed", error=str(exc))
        log.info("nats.consume.stopped", consumer=spec.durable)
