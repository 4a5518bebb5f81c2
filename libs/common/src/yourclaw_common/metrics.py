"""Metrics shared by every service's runner, named `yourclaw_<svc>_<what>_<unit>`."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["RunnerMetrics", "metric_prefix", "runner_metrics"]


def metric_prefix(service: str) -> str:
    """`gateway-api` → `yourclaw_gateway_api`."""
    return "yourclaw_" + service.replace("-", "_")


class RunnerMetrics:
    """What the consume runner counts for one service."""

    def __init__(self, service: str):
        p = metric_prefix(service)
        self.consumed = Counter(
            f"{p}_events_consumed_total",
            "Events handled, by consumer, subject and outcome (acked, retried, terminated).",
            ["consumer", "subject", "outcome"],
        )
        self.redeliveries = Counter(
            f"{p}_event_redeliveries_total",
            "Messages received again after a failure or timeout.",
            ["consumer"],
        )
        self.dead_lettered = Counter(
            f"{p}_events_dead_lettered_total",
            "Messages this service terminated into the dead-letter stream, by "
            "consumer and reason (invalid, permanent, exhausted).",
            ["consumer", "reason"],
        )
        self.consumer_pending = Gauge(
            f"{p}_consumer_pending_messages",
            "Consumer lag: messages in the stream not yet delivered to the durable.",
            ["consumer"],
        )
        self.consumer_ack_pending = Gauge(
            f"{p}_consumer_ack_pending_messages",
            "Messages delivered to the durable and not yet acked.",
            ["consumer"],
        )
        self.dead_letters = Gauge(
            f"{p}_dead_letter_messages",
            "Dead letters of the durable waiting in the DEAD_LETTER stream "
            "(until replayed or deleted with yourclaw-dlq).",
            ["consumer"],
        )
        self.handler_seconds = Histogram(
            f"{p}_event_handler_seconds",
            "Time from receipt to ack/nak/term.",
            ["consumer"],
            buckets=(
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
                300,
            ),
        )


@cache
def runner_metrics(service: str) -> RunnerMetrics:
    """One `RunnerMetrics` per service per process (the registry is global)."""
    return RunnerMetrics(service)
