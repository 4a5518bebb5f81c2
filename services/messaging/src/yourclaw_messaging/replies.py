"""What we say ourselves, and how a long reply is cut into parts."""

from __future__ import annotations

import re

SIGNUP = (
    "Hi! This is YourClaw, your always-on AI assistant on WhatsApp. "
    "This number isn't linked to an account yet. Sign up at {app_url} "
    "and add this WhatsApp number to get your own assistant."
)
# A number someone claimed on the dashboard but has not proven yet.
VERIFY_PENDING = (
    "This number is waiting to be linked to a YourClaw account. To link it, "
    "send the 6-digit code shown on your dashboard at {app_url} (it is valid "
    "for 15 minutes). Until then, messages from this number don't reach an "
    "assistant."
)
# Telegram: a chat that is not linked to an account, and what became of the
# `/start <code>` the dashboard's link sends.
TELEGRAM_STRANGER = (
    "Hi! This is YourClaw, your always-on AI assistant. This Telegram chat isn't "
    "linked to an account yet. Sign in at {app_url}/dashboard and press "
    '"Link Telegram" to connect it; until then, messages here don\'t reach an '
    "assistant."
)
TELEGRAM_LINKED = (
    "This chat is linked to your YourClaw account. Messages you send here now go "
    "to your assistant."
)
TELEGRAM_LINK_EXPIRED = (
    "That link has expired or was already used. Open {app_url}/dashboard and "
    'press "Link Telegram" for a new one (each link works once, for 15 minutes).'
)
TELEGRAM_LINK_INVALID = (
    "That link isn't valid for this chat. Open {app_url}/dashboard and press "
    '"Link Telegram" for a new one.'
)
PHONE_VERIFIED = (
    "Your number is linked to your YourClaw account. Messages you send here now "
    "go to your assistant."
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
# /status of a sleeping (SUSPENDED) assistant.
ASLEEP = "asleep, wakes when you write"
# A turn whose sleeping assistant could not be woken (after the retries).
WAKE_FAILED = (
    "Sorry, your assistant is asleep and didn't wake up just now. We keep "
    "trying; please send your message again in a minute."
)
APOLOGY = (
    "Sorry, your assistant couldn't answer that just now. Please try again in a minute."
)

# Counts go in through `counted`, so they read "1 reply", "2 replies".
RATE_LIMITED = (
    "You've reached your limit of {limit} per {period}. "
    "You can write again {when}. Messages sent before then won't reach your assistant."
)
TOKENS_EXHAUSTED = (
    "Your assistant has used today's allowance of {limit}. You can write again {when}."
)
MEDIA_UNSUPPORTED = (
    "Sorry, your assistant can read images and voice notes but not {kind} files "
    "yet. Please send a photo or a voice note, or describe it in text."
)
MEDIA_UNREADABLE = (
    "Sorry, that image couldn't be read (it may be too large: the limit is {mb} MB). "
    "Please try a smaller photo."
)
# Voice notes (voice.py): each case gets one of these, and nothing else.
VOICE_UNREADABLE = (
    "Sorry, that voice note couldn't be downloaded (it may be too long: the limit "
    "is {size}). Please send a shorter one, or type your message."
)
VOICE_UNSUPPORTED = (
    "Sorry, your assistant can't listen to {kind} audio. Please record a voice "
    "note in the app, or type your message."
)
VOICE_FAILED = (
    "Sorry, that voice note couldn't be transcribed just now. Please send it "
    "again in a minute, or type your message."
)
VOICE_EMPTY = (
    "Sorry, your assistant couldn't hear any words in that voice note. Please "
    "try again, or type your message."
)
VOICE_UNAVAILABLE = (
    "Sorry, your assistant can't listen to voice notes here yet. Please type "
    "your message."
)
NOTIFICATION_FALLBACK = "Your assistant has a message for you: {text}"

HELP = """*YourClaw commands*
/help: this list
/status: your assistant, its model and today's usage
/usage: this month's model spend against your allowance
/reset: start a fresh conversation (your assistant's memory files are kept)
/model: list the models; /model <name> switches to one
/channel: where reminders reach you; /channel <whatsapp|telegram|sms> moves them
/voice on|off: answer your voice notes with a voice message too
Anything else goes to your assistant."""
WHATSAPP_NOT_HERE = (
    "WhatsApp can't carry your assistant in your country, so it can't answer "
    "you here. Link Telegram or use SMS on your dashboard and talk to it there: "
    "{app_url}"
)
CHANNEL_CURRENT = (
    "Reminders and other messages from your assistant reach you on {current}. "
    "You can choose from: {names} (for example /channel {current})."
)
CHANNEL_SET = (
    "Done: reminders and other messages from your assistant now reach you on {name}."
)
VOICE_ON = (
    "Voice replies are on: your assistant answers your voice notes with a "
    "voice message as well as the text (on WhatsApp and Telegram; SMS stays "
    "text). /voice off turns them off."
)
VOICE_OFF = "Voice replies are off: your assistant answers in text only."
VOICE_IS_ON = "Voice replies are on. /voice off turns them off."
VOICE_IS_OFF = (
    "Voice replies are off. /voice on makes your assistant answer your voice "
    "notes with a voice message too."
)
VOICE_USAGE = "Use /voice on or /voice off."
CHANNEL_UNKNOWN = (
    '"{name}" isn\'t one of your channels. You can choose from: {names}. '
    "Link another one on your dashboard: {app_url}"
)
RESET = (
    "Started a fresh conversation. Your assistant's memory files are kept, "
    "so it still knows what you asked it to remember."
)
MODEL_SWITCHED = (
    "Switching to {name} ({model_id}). Your assistant restarts with it, which "
    "takes a few seconds; your dashboard shows the new model too."
)
RESTARTED = (
    "Your assistant ran out of memory and has restarted. If your last message "
    "got no answer, please send it again."
)
MODEL_ALREADY = "Your assistant already uses {name}."
MODEL_UNKNOWN = 'There\'s no model called "{name}". Choose one of:\n{choices}'
MODEL_LIST = "Your assistant uses {current}. Switch with /model <name>:\n{choices}"
STATUS = """*Your assistant*: {status}
*Model*: {model}
*Today*: {inbound} from you, {outbound}, {tokens}
*Limits*: {per_min}, {per_day}{token_limit}
*This month*: {month}"""

# One line: this month's model spend against the allowance, in dollars and tokens.
MONTH = "${spent:.2f} of ${limit:.2f} ({share:.0f}%), {tokens:,} tokens"
USAGE = """*Model use this month* (renews {renews})
*Spent*: ${spent:.2f} of your ${limit:.2f} {which} ({share:.0f}%)
*Tokens*: {tokens:,} in {calls:,} model calls, {cached:,} of them read from cache{own}
Set a lower cap at {app_url}/dashboard"""
CAP_REACHED = (
    "Your assistant has used this month's {which} of ${limit:.2f}, so it is "
    "paused until {renews} (00:00 UTC). Messages you send before then won't "
    "reach it; /usage shows your spend. {app_url}/dashboard"
)
ALLOWANCE_WARNING = (
    "Heads-up: your assistant has used {share:.0f}% of this month's {which} "
    "(${spent:.2f} of ${limit:.2f}). It renews on {renews}; /usage shows more."
)


def counted(n: int, singular: str, plural: str = "") -> str:
    """`n` and its noun as a person writes them: "1 reply", "2 replies", "0 tokens"."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def limit_per(n: int, period: str) -> str:
    """A per-period message limit for /status ("5 messages a minute"); 0 is off."""
    return f"{counted(n, 'message')} a {period}" if n else f"no limit per {period}"


_BREAKS = (
    re.compile(r"\n\s*\n"),  # paragraphs
    re.compile(r"\n"),  # lines
    re.compile(r"(?<=[.!?…])\s+"),  # sentences
    re.compile(r"\s+"),  # words
)


def split_reply(text: str, limit: int) -> list[str]:
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
