from __future__ import annotations

from prometheus_client import Counter, Histogram

TURNS = Counter(
    "yourclaw_messaging_turns_total",
    "Inbound messages handled, by outcome (replied, command, rate_limited, media, "
    "signup, not_ready, inactive, no_assistant, apology, signup_suppressed, "
    "wake_failed; waiting: a delivery that waits for a starting or waking "
    "assistant; asked_again: a turn the gateway failed on its own state "
    "locks before calling a model, asked once more).",
    ["outcome"],
)
ASSISTANT_SECONDS = Histogram(
    "yourclaw_messaging_assistant_turn_seconds",
    "Time the user's assistant took to answer, by model and outcome (ok, failed).",
    ["model", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
TOKENS = Counter(
    "yourclaw_messaging_tokens_total",
    "Tokens the assistants spent on WhatsApp turns, by model and kind "
    "(prompt, completion).",
    ["model", "kind"],
)
TWILIO_SENDS = Counter(
    "yourclaw_messaging_twilio_sends_total",
    "Messages handed to Twilio, by outcome (sent, rejected, failed, retried, "
    "reconciled) and Twilio error code.",
    ["outcome", "error_code"],
)
RATE_LIMITED = Counter(
    "yourclaw_messaging_rate_limited_total",
    "Messages refused by a per-user limit (minute, day, tokens).",
    ["limit"],
)
STATUS_CALLBACKS = Counter(
    "yourclaw_messaging_status_callbacks_total",
    "Twilio status callbacks handled, by the status reported.",
    ["status"],
)
OUTBOUND = Counter(
    "yourclaw_messaging_outbound_total",
    "Outbound WhatsApp messages stored for sending, by kind "
    "(reply, template, proactive, notice).",
    ["kind"],
)
TEMPLATE_FALLBACKS = Counter(
    "yourclaw_messaging_template_fallbacks_total",
    "Free-form messages replaced by an approved template, by reason "
    "(outside_window, twilio_63016, no_template).",
    ["reason"],
)
SMS_KEYWORDS = Counter(
    "yourclaw_messaging_sms_keywords_total",
    "SMS keywords handled (stop, start, help), messages from opted-out numbers "
    "(opted_out), and opt-outs learnt from Twilio's error 21610 (twilio_21610).",
    ["keyword"],
)
TELEGRAM_SENDS = Counter(
    "yourclaw_messaging_telegram_sends_total",
    "Messages handed to Telegram's sendMessage, by outcome (sent, rejected, "
    "failed, retried).",
    ["outcome"],
)
VOICE_NOTES = Counter(
    "yourclaw_messaging_voice_notes_total",
    "Inbound voice notes, by outcome (transcribed; not: unsupported, rejected, "
    "failed, empty, over_allowance, unavailable).",
    ["outcome"],
)
VOICE_REPLIES = Counter(
    "yourclaw_messaging_voice_replies_total",
    "Answers to voice notes of users with voice replies on, by outcome (spoken, "
    "sent; text only: too_long, failed, over_allowance, not_sent).",
    ["channel", "outcome"],
)
WAKES = Counter(
    "yourclaw_messaging_wakes_total",
    "Sleeping assistants woken before a turn, by outcome (woken, or the "
    "failure's code).",
    ["outcome"],
)
WAKE_SECONDS = Histogram(
    "yourclaw_messaging_wake_seconds",
    "A wake request's round trip, by outcome (ok, failed).",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 10, 15, 30, 60),
)
