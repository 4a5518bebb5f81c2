"""Settings of the public HTTP edge."""

from __future__ import annotations

import re
from ipaddress import ip_network
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from yourclaw_common.channels_policy import EVERYWHERE, AllowedCountriesSetting
from yourclaw_common.settings import CommonSettings, PhoneNumberSetting

__all__ = ["GatewaySettings"]


class GatewaySettings(CommonSettings):
    service_name: str = "gateway-api"
    # The plan's monthly model allowance llm-proxy enforces; shown in /usage.
    llm_monthly_allowance_usd: float = Field(default=8.0, ge=0)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_workers: int = Field(default=1, ge=1)
    # The base URL Twilio calls (e.g. https://api.example.com behind a TLS proxy);
    # webhook signatures cover it, so it must be what Twilio sees, not what we see.
    public_base_url: str = "http://127.0.0.1:8000"
    twilio_auth_token: SecretStr = SecretStr("")
    # The shared WhatsApp sender users prove their number to (the wa.me link).
    twilio_whatsapp_number: str = "whatsapp:+14155238886"
    # Our SMS number (E.164, "+14155550100"); empty: SMS is off and its webhook
    # answers 404 SMS_NOT_CONFIGURED.
    twilio_sms_number: PhoneNumberSetting = ""
    # Where WhatsApp may carry the assistant (docs/channels.md): ISO 3166 codes
    # or calling codes, `*` everywhere. Elsewhere the dashboard offers Telegram
    # or SMS instead of the wa.me link.
    whatsapp_allowed_countries: AllowedCountriesSetting = EVERYWHERE
    # The Telegram bot's token from @BotFather; empty: Telegram is off (the
    # webhook and the link endpoint say it is not configured).
    telegram_bot_token: SecretStr = SecretStr("")
    # The `secret_token` setWebhook was given, which Telegram sends back in
    # X-Telegram-Bot-Api-Secret-Token; empty refuses every update.
    telegram_webhook_secret: SecretStr = SecretStr("")
    # The Bot API (getMe, setWebhook); a stand-in in dev and tests.
    telegram_api_base: str = "https://api.telegram.org"
    # The endpoint's signing secret (whsec_…); empty refuses every Stripe webhook.
    stripe_webhook_secret: SecretStr = SecretStr("")
    webhook_max_body_bytes: int = Field(default=64 * 1024, ge=1)
    # Seconds to wait for JetStream's PubAck before answering 503.
    webhook_publish_timeout_seconds: float = Field(default=2.0, gt=0)

    # Signs the links to spoken replies messaging gives Twilio (GET
    # /api/v1/media/…); the same value in messaging. Empty: every link is refused.
    media_url_signing_key: SecretStr = SecretStr("")

    # --- /api/v1: auth, edge hygiene, the other services it asks ---
    # Supabase project URL (https://<ref>.supabase.co): tokens must be issued by
    # <url>/auth/v1 and asymmetric keys come from <url>/auth/v1/.well-known/jwks.json.
    supabase_url: str = ""
    # The legacy HS256 project secret; empty means HS256 tokens are refused.
    supabase_jwt_secret: SecretStr = SecretStr("")
    # Local runs only (YOURCLAW_ENV=dev, else the settings are refused): POST
    # /api/v1/dev/login mints tokens from a separate issuer signed with
    # DEV_LOGIN_SECRET. Off: the route is 404 and such tokens are refused.
    dev_login_enabled: bool = False
    dev_login_secret: SecretStr = SecretStr("")
    # The dashboard's origin, the only one CORS lets call the API.
    app_url: str = "http://127.0.0.1:3000"
    # Largest request body /api/v1 accepts (webhooks: WEBHOOK_MAX_BODY_BYTES).
    api_max_body_bytes: int = Field(default=16 * 1024, ge=1)
    # Per client IP and process, on every webhook route and the assistants' notify
    # route: a token bucket refilled at this rate (0 = off) holding up to BURST
    # requests. Only refused requests (bad signature or secret, bad body: 4xx)
    # spend from it, so a caller that signs correctly is never limited however
    # many users' messages it fans in; an IP whose bucket is empty gets 429 until
    # it refills.
    webhook_rate_limit_per_second: float = Field(default=100.0, ge=0)
    webhook_rate_limit_burst: int = Field(default=500, ge=1)
    # /api/v1 (webhooks aside), per process, as requests a minute (0 = off) and
    # the burst a bucket holds: every request by client IP and by signed-in user;
    # the sensitive routes (phone, API keys, checkout, portal, dev sign-in) by
    # user and by IP on top. Over budget: 429 RATE_LIMITED with Retry-After.
    api_rate_limit_ip_per_minute: float = Field(default=600.0, ge=0)
    api_rate_limit_ip_burst: int = Field(default=120, ge=1)
    api_rate_limit_user_per_minute: float = Field(default=300.0, ge=0)
    api_rate_limit_user_burst: int = Field(default=60, ge=1)
    api_sensitive_rate_limit_user_per_minute: float = Field(default=6.0, ge=0)
    api_sensitive_rate_limit_user_burst: int = Field(default=10, ge=1)
    api_sensitive_rate_limit_ip_per_minute: float = Field(default=30.0, ge=0)
    api_sensitive_rate_limit_ip_burst: int = Field(default=30, ge=1)
    # Peers (IPs or CIDRs, comma-separated) whose X-Forwarded-For names the client,
    # e.g. the TLS proxy in front of us. Empty: the socket peer is the client.
    trusted_proxy_ips: str = ""
    # Seconds to wait for billing's reply to a checkout or portal request.
    billing_request_timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _check_telegram_webhook_secret(cls, value: SecretStr) -> SecretStr:
        # What setWebhook accepts as secret_token.
        secret = value.get_secret_value()
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("supabase_url", "app_url", "telegram_api_base")
    @classmethod
    def _check_optional_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        return value.rstrip("/")

    @field_validator("trusted_proxy_ips")
    @classmethod
    def _check_trusted_proxy_ips(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                ip_network(item.strip(), strict=False)  # raises ValueError
        return value

    @field_validator("supabase_jwt_secret")
    @classmethod
    def _check_supabase_jwt_secret(cls, value: SecretStr) -> SecretStr:
        # HS256 with a short key is guessable; Supabase's secrets are longer.
        if value and len(value) < 32:
            raise ValueError("must be empty or at least 32 characters")
        return value

    @model_validator(mode="after")
    def _check_dev_login(self) -> GatewaySettings:
        # Dev sign-in gives a token for any email: a production server that had it
        # on would let anyone be anyone, so it refuses to start instead.
        if self.dev_login_enabled and self.yourclaw_env != "dev":
            raise ValueError(
                "DEV_LOGIN_ENABLED is refused unless YOURCLAW_ENV=dev "
                f"(YOURCLAW_ENV={self.yourclaw_env})"
            )
        if self.dev_login_enabled and len(self.dev_login_secret) < 32:
            raise ValueError(
                "DEV_LOGIN_ENABLED needs DEV_LOGIN_SECRET of at least 32 characters"
            )
        return self

    @field_validator("public_base_url")
    @classmethod
    def _check_public_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise ValueError(f"invalid port: {exc}") from None
        return value.rstrip("/")
