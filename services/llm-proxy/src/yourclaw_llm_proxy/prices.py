"""List prices per model, versioned: every metered call records the version.

Figures are USD per million tokens (audio in: per minute; speech out of tts-1:
per million input characters), from the providers'
public price lists — anthropic.com/pricing (prompt caching: 5-minute cache
write 1.25x input, cache read 0.1x input), openai.com/api/pricing (cached input
as listed), ai.google.dev/gemini-api/docs/pricing — as recorded on
2026-11-27. A price change is a new `PRICE_VERSION` and new figures, never an
edit of old rows: calls already metered keep the version that priced them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "PRICES",
    "PRICE_SOURCE",
    "PRICE_VERSION",
    "Price",
    "Provider",
    "Usage",
    "price_of",
]

PRICE_VERSION = "2026-11-27"
PRICE_SOURCE = (
    "anthropic.com/pricing, openai.com/api/pricing, "
    "ai.google.dev/gemini-api/docs/pricing (list prices recorded 2026-11-27)"
)


class Provider(StrEnum):
    """An upstream the proxy forwards to (the path prefix tenants use)."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GOOGLE = "google"


@dataclass(frozen=True)
class Usage:
    """Tokens of one call, as the provider reported them. `input` excludes the
    cached parts (OpenAI counts them inside prompt_tokens; we subtract)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    audio_seconds: float = 0.0
    # Characters of text turned into speech (tts-1 bills those, not tokens).
    characters: int = 0

    @property
    def kinds(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_read": self.cache_read,
            "cache_write": self.cache_write,
        }


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind; `per_minute` for audio input,
    `per_million_characters` for text spoken (tts-1)."""

    provider: Provider
    input: float
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0
    per_minute: float = 0.0
    per_million_characters: float = 0.0

    def cost_microusd(self, usage: Usage) -> int:
        """What `usage` costs, in micro-dollars ($/Mtok x tokens = micro-$)."""
        return round(
            usage.input * self.input
            + usage.output * self.output
            + usage.cache_read * self.cache_read
            + usage.cache_write * self.cache_write
            + usage.audio_seconds / 60 * self.per_minute * 1_000_000
            + usage.characters * self.per_million_characters
        )


_A = Provider.ANTHROPIC
_O = Provider.OPENAI
_G = Provider.GOOGLE

# The model id as the provider's API names it (what a request's `model` holds).
PRICES: dict[str, Price] = {
    "claude-sonnet-4-5-20250929": Price(_A, 3.00, 15.00, 0.30, 3.75),
    "claude-opus-4-5-20251101": Price(_A, 5.00, 25.00, 0.50, 6.25),
    "claude-haiku-4-5-20251001": Price(_A, 1.00, 5.00, 0.10, 1.25),
    "gpt-4o": Price(_O, 2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(_O, 0.15, 0.60, 0.075),
    "text-embedding-3-small": Price(_O, 0.02),
    "text-embedding-3-large": Price(_O, 0.13),
    "whisper-1": Price(_O, 0.0, per_minute=0.006),
    "gpt-4o-mini-transcribe": Price(_O, 1.25, 5.00, per_minute=0.003),
    "gpt-4o-transcribe": Price(_O, 2.50, 10.00, per_minute=0.006),
    # Speech: $15 (tts-1) and $30 (tts-1-hd) per million input characters.
    "tts-1": Price(_O, 0.0, per_million_characters=15.00),
    "tts-1-hd": Price(_O, 0.0, per_million_characters=30.00),
    "gemini-2.5-flash": Price(_G, 0.30, 2.50, 0.03),
    "gemini-2.5-flash-lite": Price(_G, 0.10, 0.40, 0.01),
}


def price_of(model: str) -> Price | None:
    """The price of a model the proxy serves; None for any other model."""
    return PRICES.get(model)
