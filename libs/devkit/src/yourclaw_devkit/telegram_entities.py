"""Telegram's HTML parse mode, as the Bot API applies it to a message's text:
the tags it knows become entities (offsets and lengths in UTF-16 code units),
the text keeps what they enclose, and anything else is refused with the
Bot API's "can't parse entities" error."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

__all__ = ["Unparsable", "parse_html"]

# Tag → entity type (Bot API, "HTML style").
_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}


class Unparsable(ValueError):
    """The Bot API's 400 for markup it cannot parse (the description's tail)."""


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.open: list[tuple[str, dict[str, Any]]] = []
        self.entities: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TAGS:
            raise Unparsable(f'Unsupported start tag "{tag}"')
        entity: dict[str, Any] = {"offset": _utf16(self.text), "type": _TAGS[tag]}
        if tag == "a":
            href = dict(attrs).get("href")
            if not href:
                raise Unparsable('Can\'t find "href" attribute of the "a" tag')
            entity["url"] = href
        self.open.append((tag, entity))

    def handle_endtag(self, tag: str) -> None:
        if not self.open:
            raise Unparsable(f'Unexpected end tag "{tag}"')
        opened, entity = self.open.pop()
        if opened != tag:
            raise Unparsable(
                f'Can\'t find end tag corresponding to start tag "{opened}"'
            )
        entity["length"] = _utf16(self.text) - entity["offset"]
        if entity["length"]:
            self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.text += data


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """The text a chat shows for `source`, and its entities by offset."""
    parser = _Parser()
    parser.feed(source)
    parser.close()
    if parser.open:
        opened = parser.open[-1][0]
        raise Unparsable(f'Can\'t find end tag corresponding to start tag "{opened}"')
    return parser.text, sorted(parser.entities, key=lambda e: e["offset"])
