"""The markup assistants write, for channels that show it otherwise.

Assistants are asked for WhatsApp's markup (*bold*, _italic_, ~strikethrough~,
`code`) and slip into Markdown now and then (**bold**, headings, bullets,
[links](url), ``` fences). WhatsApp shows the first as it is meant; an SMS
shows every symbol (`plain_text` in the SMS channel drops them), and Telegram
shows them too unless the text is sent as its HTML (`telegram_html`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

__all__ = [
    "BULLET",
    "CODE",
    "EMPHASIS",
    "FENCE",
    "HEADING",
    "LINK",
    "outside_urls",
    "telegram_html",
]

FENCE = re.compile(r"^[ \t]*```[^\n]*\n?", re.M)
HEADING = re.compile(r"^#{1,6}[ \t]+", re.M)
BULLET = re.compile(r"^([ \t]*)[*+][ \t]+", re.M)
LINK = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)")


def _around(mark: str) -> str:
    """`mark`text`mark`: the text starts and ends with a non-space."""
    m = re.escape(mark)
    return rf"{m}(\S(?:[^{re.escape(mark[0])}\n]*?\S)?){m}"


# Each with the Telegram HTML tag it means; the doubled marks first.
EMPHASIS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(_around("**")), "b"),
    (re.compile(_around("__")), "b"),
    (re.compile(_around("~~")), "s"),
    # WhatsApp's single marks, not inside a word (2*3*4, snake_case).
    (re.compile(rf"(?<![\w*]){_around('*')}(?![\w*])"), "b"),
    (re.compile(rf"(?<![\w_]){_around('_')}(?![\w_])"), "i"),
    (re.compile(rf"(?<![\w~]){_around('~')}(?![\w~])"), "s"),
)
_CODE_BLOCK = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
CODE = re.compile(r"`([^`\n]+)`")
_HEADING_LINE = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*$", re.M)
_HEADING_MARK = re.compile(r"^\x01(.*)$", re.M)
_URL = re.compile(r"\bhttps?://[^\s<>()\[\]\x00]+")
# Stands for a piece already in HTML while the rest is converted.
_HELD = re.compile(r"\x00(\d+)\x00")


def outside_urls(text: str, convert: Callable[[str], str]) -> str:
    """`convert` applied to `text` but its bare URLs (an underscore or a star
    in a URL is not markup)."""
    parts, last = [], 0
    for url in _URL.finditer(text):
        parts += [convert(text[last : url.start()]), url.group()]
        last = url.end()
    return "".join([*parts, convert(text[last:])])


def telegram_html(text: str) -> str:
    """`text` as Telegram's HTML (parse_mode HTML): its markup as formatting,
    everything else escaped. Code and links are kept whole, so marks inside
    them stay as written."""
    held: list[str] = []

    def hold(piece: str) -> str:
        held.append(piece)
        return f"\x00{len(held) - 1}\x00"

    text = text.replace("\x00", "").replace("\x01", "")
    text = _CODE_BLOCK.sub(
        lambda m: hold(f"<pre>{html.escape(m.group(1).rstrip(chr(10)))}</pre>"),
        text,
    )
    text = CODE.sub(lambda m: hold(f"<code>{html.escape(m.group(1))}</code>"), text)
    text = LINK.sub(
        lambda m: hold(
            f'<a href="{html.escape(m.group(2))}">{html.escape(m.group(1))}</a>'
        ),
        text,
    )
    text = _HEADING_LINE.sub("\x01\\1", text)  # bold, once converted
    text = BULLET.sub(r"\1• ", text)

    def formatted(piece: str) -> str:
        piece = html.escape(piece, quote=False)
        for pattern, tag in EMPHASIS:
            piece = pattern.sub(rf"<{tag}>\1</{tag}>", piece)
        return piece

    text = _HEADING_MARK.sub(r"<b>\1</b>", outside_urls(text, formatted))
    return _HELD.sub(lambda m: held[int(m.group(1))], text)
