"""The streams (the contract every service shares), declared once; `ConsumerSpec`,
with which each service declares its own durable consumers in its package
(`yourclaw_<svc>.consumers`); `ensure_topology` creates both."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from yourclaw_common.events.subjects import Subject
from yourclaw_common.logging import get_logger

__all__ = [
    "STREAMS",
    "ConsumerSpec",
    "Stream",
    "ensure_topology",
    "stream_for",
]

log = get_logger(__name__)

_DAY = 24 * 3600.0


class Stream:
    """Stream names."""

    INBOUND = "INBOUND"
    BILLING = "BILLING"
    SUBSCRIPTIONS = "SUBSCRIPTIONS"
    ASSISTANTS = "ASSISTANTS"
    OUTBOUND = "OUTBOUND"
    USAGE = "USAGE"
    DEAD_LETTER = "DEAD_LETTER"


# Advisories JetStream emits when a message is terminated or exhausts its
# deliveries; the DEAD_LETTER stream stores them (with the stream sequence of
# the original, which stays in its stream).
_DEAD_LETTER_SUBJECTS = [
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
]


def _stream(name: str, subjects: list[str], *, max_age_days: float = 7) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=max_age_days * _DAY,
        # Twilio retries within minutes, Stripe within days; the inbox tables
        # catch what falls outside this window.
        duplicate_window=10 * 60.0,
        num_replicas=1,
    )


STREAMS: tuple[StreamConfig, ...] = (
    _stream(Stream.INBOUND, ["inbound.*"]),
    _stream(Stream.BILLING, ["billing.*"], max_age_days=30),
    _stream(Stream.SUBSCRIPTIONS, ["subscription.*"], max_age_days=30),
    _stream(Stream.ASSISTANTS, ["assistant.*"], max_age_days=30),
    _stream(Stream.OUTBOUND, ["outbound.*"]),
    _stream(Stream.USAGE, ["usage.*"], max_age_days=30),
    _stream(Stream.DEAD_LETTER, _DEAD_LETTER_SUBJECTS, max_age_days=30),
)


def stream_for(subject: str) -> str:
    """The stream that stores a subject."""
    domain = subject.split(".", 1)[0]
    for cfg in STREAMS:
        assert cfg.subjects is not None
        if any(s.split(".", 1)[0] == domain for s in cfg.subjects):
            assert cfg.name is not None
            return cfg.name
    raise KeyError(subject)


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer; replicas of a service share it."""

    durable: str
    subject: Subject
    max_deliver: int = 10
    # Seconds; None takes the service's CONSUMER_ACK_WAIT_SECONDS.
    ack_wait: float | None = None
    max_ack_pending: int = 1000
    extra_subjects: tuple[Subject, ...] = field(default=())

    @property
    def stream(self) -> str:
        return stream_for(self.subject.value)

    def config(self, default_ack_wait: float) -> ConsumerConfig:
        subjects = [self.subject.value, *(s.value for s in self.extra_subjects)]
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait or default_ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )


async def _wait_for_stream(js: JetStreamContext, name: str, interval: float) -> None:
    log.warning("nats.stream.waiting", stream=name, reason="created by its owners")
    while True:
        await asyncio.sleep(interval)
        try:
            await js.stream_info(name)
        except NotFoundError:
            continue
        log.info("nats.stream.found", stream=name)
        return


async def ensure_topology(
    js: JetStreamContext,
    *,
    consumers: Sequence[ConsumerSpec] = (),
    default_ack_wait: float = 30.0,
    replicas: int = 1,
    owned: Collection[str] | None = None,
    wait_interval: float = 1.0,
) -> None:
    """Create or update the streams, then the given consumers (a service's own).

    Idempotent; the only code that creates streams. Run at every service start.
    `replicas` is each stream's (and so its consumers') replication factor: 3 on
    a 3-node JetStream cluster (NATS_STREAM_REPLICAS); raising it on an existing
    stream makes the cluster copy it to more nodes.
    `owned`: the streams this caller creates and updates (its NATS user may
    touch no other, `nats_auth.owned_streams`); a missing stream it does not
    own but consumes is waited for. None: all streams (the operator).
    """
    consumed = {spec.stream for spec in consumers}
    for base in STREAMS:
        cfg = replace(base, num_replicas=replicas)
        assert cfg.name is not None
        mine = owned is None or cfg.name in owned
        try:
            await js.stream_info(cfg.name)
        except NotFoundError:
            if mine:
                await js.add_stream(cfg)
                log.info("nats.stream.created", stream=cfg.name)
            elif cfg.name in consumed:
                await _wait_for_stream(js, cfg.name, wait_interval)
        else:
            if mine:
                await js.update_stream(cfg)
    for spec in consumers:
        # add_consumer creates, or updates the editable fields of, a durable.
        await js.add_consumer(spec.stream, spec.config(default_ack_wait))
