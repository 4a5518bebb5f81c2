"""The LLM models a user may pick for their assistant, and the providers behind them.

gateway-api validates choices against this list, the provisioner renders the chosen
one into the assistant's config, messaging names it per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, get_args

__all__ = [
    "AVAILABLE_MODELS",
    "DEFAULT_MODEL",
    "MODEL_IDS",
    "LlmProvider",
    "ModelId",
    "ModelInfo",
    "is_available_model",
    "model_info",
]


class LlmProvider(StrEnum):
    """An LLM provider a user may bring their own key for (BYOK)."""

    ANTHROPIC = "ANTHROPIC"
    OPENAI = "OPENAI"
    GOOGLE = "GOOGLE"


# Spelled out so type checkers and OpenAPI see the exact ids.
ModelId = Literal[
    "anthropic/claude-sonnet-4-5-20250929",
    "anthropic/claude-opus-4-5-20251101",
    "anthropic/claude-haiku-4-5-20251001",
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "google/gemini-2.5-flash",
    "google/gemini-2.5-flash-lite",
]


@dataclass(frozen=True)
class ModelInfo:
    """One selectable model: its `provider/model` id and what the dashboard shows."""

    id: ModelId
    display_name: str
    description: str
    provider: LlmProvider


AVAILABLE_MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(
        "anthropic/claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "Fast and capable (default)",
        LlmProvider.ANTHROPIC,
    ),
    ModelInfo(
        "anthropic/claude-opus-4-5-20251101",
        "Claude Opus 4.5",
        "Most powerful",
        LlmProvider.ANTHROPIC,
    ),
    ModelInfo(
        "anthropic/claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "Fastest responses",
        LlmProvider.ANTHROPIC,
    ),
    ModelInfo("openai/gpt-4o", "GPT-4o", "OpenAI's flagship model", LlmProvider.OPENAI),
    ModelInfo(
        "openai/gpt-4o-mini", "GPT-4o Mini", "Fast and affordable", LlmProvider.OPENAI
    ),
    ModelInfo(
        "google/gemini-2.5-flash",
        "Gemini 2.5 Flash",
        "Google's fast model",
        LlmProvider.GOOGLE,
    ),
    ModelInfo(
        "google/gemini-2.5-flash-lite",
        "Gemini 2.5 Flash Lite",
        "Lightweight and fast",
        LlmProvider.GOOGLE,
    ),
)

DEFAULT_MODEL: ModelId = "anthropic/claude-sonnet-4-5-20250929"

MODEL_IDS: frozenset[str] = frozenset(get_args(ModelId))

_BY_ID: dict[str, ModelInfo] = {m.id: m for m in AVAILABLE_MODELS}
if set(_BY_ID) != MODEL_IDS:  # pragma: no cover - caught at import by every test
    raise RuntimeError("AVAILABLE_MODELS and ModelId list different models")


def is_available_model(model_id: str) -> bool:
    """Whether `model_id` is one a user may pick."""
    return model_id in MODEL_IDS


def model_info(model_id: str) -> ModelInfo:
    """The entry of `model_id`; KeyError when it is not available."""
    return _BY_ID[model_id]
