from __future__ import annotations

from prometheus_client import Counter, Histogram

TURNS = Counter(
    "yourclaw_messaging_turns_total",
    "Inbound messages handled, by outcome (replied, signup, not_ready, "
    "inactive, apology, duplicate).",
    ["outcome"],
)
ASSISTANT_SECONDS = Histogram(
    "yourclaw_messaging_assistant_turn_seconds",
    "Time the user's assistant took to answer.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
TWILIO_SENDS = Counter(
    "yourclaw_messaging_twilio_sends_total",
    "Messages handed to Twilio, by outcome (sent, rejected, failed, reconciled) "
    "and Twilio error code.",
    ["outcome", "error_code"],
)
