"""Values the local stack agrees on when nothing else is configured."""

from __future__ import annotations

__all__ = [
    "DEVSIM_URL",
    "DEV_API_URL",
    "DEV_GATEWAY_TOKEN",
    "DEV_SMS_NUMBER",
    "DEV_STRIPE_PRICE_ID",
    "DEV_STRIPE_SECRET_KEY",
    "DEV_STRIPE_WEBHOOK_SECRET",
    "DEV_TWILIO_ACCOUNT_SID",
    "DEV_TWILIO_AUTH_TOKEN",
    "DEV_WHATSAPP_NUMBER",
    "dev_stripe_env",
    "dev_twilio_env",
]

# Shaped like a real sid ("AC" + 32 characters) so length checks pass.
DEV_TWILIO_ACCOUNT_SID = "ACdev" + "0" * 29
DEV_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"  # noqa: S105 - a public dev default
# Twilio's WhatsApp sandbox number.
DEV_WHATSAPP_NUMBER = "whatsapp:+14155238886"
# Twilio's test-credentials "from" number that passes every check (never dialled).
DEV_SMS_NUMBER = "+15005550006"
DEV_GATEWAY_TOKEN = "dev-gateway-token"  # noqa: S105 - a public dev default
DEVSIM_URL = "http://127.0.0.1:8900"
DEV_API_URL = "http://127.0.0.1:8000"
# What billing and the Stripe stand-in agree on locally (never real credentials).
DEV_STRIPE_SECRET_KEY = "sk_test_yourclaw_dev"  # noqa: S105 - a public dev default
DEV_STRIPE_WEBHOOK_SECRET = "whsec_yourclaw_dev"  # noqa: S105 - a public dev default
DEV_STRIPE_PRICE_ID = "price_yourclaw_pro_monthly"


def dev_twilio_env(api_base: str) -> dict[str, str]:
    """The dev Twilio account's settings, sending through the stand-in at `api_base`."""
    return {
        "TWILIO_ACCOUNT_SID": DEV_TWILIO_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEV_TWILIO_AUTH_TOKEN,
        "TWILIO_WHATSAPP_NUMBER": DEV_WHATSAPP_NUMBER,
        "TWILIO_API_BASE": api_base,
    }


def dev_stripe_env(api_base: str) -> dict[str, str]:
    """The dev Stripe account's settings (billing's key and price, gateway-api's
    webhook secret), calling the stand-in at `api_base`."""
    return {
        "STRIPE_SECRET_KEY": DEV_STRIPE_SECRET_KEY,
        "STRIPE_PRICE_ID": DEV_STRIPE_PRICE_ID,
        "STRIPE_WEBHOOK_SECRET": DEV_STRIPE_WEBHOOK_SECRET,
        "STRIPE_API_BASE": api_base,
    }
