"""Settings of the billing service."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from yourclaw_common.settings import CommonSettings

__all__ = ["BillingSettings"]


class BillingSettings(CommonSettings):
    service_name: str = "billing"

    # Stripe keys live only here (docs/security.md). Required: billing refuses to start
    # without them.
    stripe_secret_key: SecretStr = SecretStr("")
    # stripe-python's `api_base`: the local stand-in (devsim) or localstripe in dev
    # and tests, Stripe itself in production.
    stripe_api_base: str = "https://api.stripe.com"
    # The $20/month recurring Price.
    stripe_price_id: str = ""
    stripe_timeout_seconds: float = Field(default=20.0, gt=0)
    # Checkout success/cancel and portal return URLs: <APP_URL>/dashboard.
    app_url: str = "http://127.0.0.1:3000"
    # A PAST_DUE user keeps the assistant this long after we first see the
    # subscription past_due; then billing emits subscription.canceled.
    billing_grace_period_days: float = Field(default=7.0, ge=0)
    billing_grace_check_interval_seconds: float = Field(default=300.0, gt=0)

    @field_validator("stripe_api_base", "app_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")
