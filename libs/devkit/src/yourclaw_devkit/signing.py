"""Twilio request signing, exactly as Twilio signs the webhooks it sends."""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

__all__ = ["twilio_signature"]


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """The `X-Twilio-Signature` Twilio would send for a form POST to `url`."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))
