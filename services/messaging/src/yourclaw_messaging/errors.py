"""Errors of the messaging service."""

from __future__ import annotations

from yourclaw_common.errors import PermanentError, TransientError


class TwilioSendError(TransientError):
    """Twilio did not take the message; retry later (5xx, 429, auth, network)."""

    code = "TWILIO_UNAVAILABLE"


class TwilioRejected(PermanentError):
    """Twilio refused this message for good (bad number, outside window, …)."""

    code = "TWILIO_REJECTED"


class AssistantUnavailable(TransientError):
    """The user's assistant did not answer usably."""

    code = "ASSISTANT_UNAVAILABLE"


class MediaRejected(PermanentError):
    """An inbound attachment we will not hand to the assistant (too large)."""

    code = "MEDIA_REJECTED"
