"""Webhook signing, exactly as Twilio and Stripe sign the webhooks they send."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from twilio.request_validator import RequestValidator

__all__ = ["stripe_signature", "twilio_signature"]


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """The `X-Twilio-Signature` Twilio would send for a form POST to `url`."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def stripe_signature(
    payload: bytes, secret: str, *, timestamp: int | None = None
) -> str:
    """The `Stripe-Signature` header Stripe would send with `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), b"%d.%s" % (t, payload), hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"
