"""What we say ourselves, and how long replies are cut for WhatsApp."""

from __future__ import annotations

import re

# Twilio's limit for one WhatsApp message body.
MAX_BODY_CHARS = 1600

SIGNUP = (
    "Hi! This is YourClaw, your always-on AI assistant on WhatsApp. "
    "This number isn't linked to an account yet. Sign up at {app_url} "
    "and add this WhatsApp number to get your own assistant."
)
NOT_READY = (
    "Your assistant is still being set up. We'll message you here as soon "
    "as it's ready."
)
NO_ASSISTANT = (
    "You don't have an assistant running right now. Open {app_url}/dashboard "
    "to create one."
)
INACTIVE = (
    "Your YourClaw subscription isn't active, so your assistant is paused. "
    "Open {app_url}/dashboard to renew."
)
APOLOGY = (
    "Sorry, your assistant couldn't answer that just now. Please try again in a minute."
)

_BREAKS = (
    re.compile(r"\n\s*\n"),  # paragraphs
    re.compile(r"\n"),  # lines
    re.compile(r"(?<=[.!?…])\s+"),  # sentences
    re.compile(r"\s+"),  # words
)


def split_reply(text: str, limit: int = MAX_BODY_CHARS) -> list[str]:
    """Cut `text` into parts of at most `limit` characters, in order, at the
    largest natural boundary (paragraph, line, sentence, word) that fits."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        cut = 0
        for pattern in _BREAKS:
            ends = [m for m in pattern.finditer(window) if 0 < m.start() <= limit]
            if ends:
                last = ends[-1]
                # Only accept a boundary that keeps parts reasonably full.
                if last.start() >= limit // 3:
                    cut = last.start()
                    rest_at = last.end()
                    break
        if not cut:
            cut = rest_at = limit
        parts.append(text[:cut].rstrip())
        text = text[rest_at:].lstrip()
    if text:
        parts.append(text)
    return parts
