"""The commands a user types in WhatsApp: /help, /status, /usage, /reset, /model."""

from __future__ import annotations

from dataclasses import dataclass

from yourclaw_common.models import AVAILABLE_MODELS, ModelInfo

KNOWN = ("help", "status", "usage", "reset", "model")


@dataclass(frozen=True)
class Command:
    name: str
    arg: str


def parse(text: str) -> Command | None:
    """The command in `text`, or None: unknown `/x` goes to the assistant as text."""
    text = text.strip()
    if not text.startswith("/"):
        return None
    word, _, arg = text[1:].partition(" ")
    name = word.lower()
    return Command(name, arg.strip()) if name in KNOWN else None


def _norm(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum())


def find_model(name: str) -> ModelInfo | None:
    """A model by id, name or an unambiguous part of either ("opus", "gpt-4o")."""
    wanted = _norm(name)
    if not wanted:
        return None
    for model in AVAILABLE_MODELS:
        short = model.id.partition("/")[2]
        if wanted in (_norm(model.id), _norm(short), _norm(model.display_name)):
            return model
    matches = [
        m
        for m in AVAILABLE_MODELS
        if wanted in _norm(m.id) or wanted in _norm(m.display_name)
    ]
    return matches[0] if len(matches) == 1 else None


def model_choices() -> str:
    return "\n".join(
        f"• {m.display_name}: /model {m.id.partition('/')[2]}" for m in AVAILABLE_MODELS
    )


def model_name(model_id: str | None) -> str:
    for model in AVAILABLE_MODELS:
        if model.id == model_id:
            return f"{model.display_name} ({model.id})"
    return model_id or "the default model"
