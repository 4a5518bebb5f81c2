"""Settings of the LLM proxy."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from yourclaw_common.settings import CommonSettings

__all__ = ["LlmProxySettings"]


class LlmProxySettings(CommonSettings):
    service_name: str = "llm-proxy"

    # The tenant-facing API (model calls, automation webhooks). Only the API
    # routes are served here; /metrics /healthz /readyz are on METRICS_PORT.
    llm_proxy_host: str = "127.0.0.1"
    llm_proxy_port: int = Field(default=8790, ge=0, le=65535)

    # The platform's provider keys: in this process and nowhere else.
    anthropic_api_key: SecretStr = SecretStr("")
    openai_api_key: SecretStr = SecretStr("")
    google_api_key: SecretStr = SecretStr("")
    # Each provider's API base, version included (the endpoint path follows).
    anthropic_api_base: str = "https://api.anthropic.com/v1"
    openai_api_base: str = "https://api.openai.com/v1"
    google_api_base: str = "https://generativelanguage.googleapis.com/v1beta/openai"
    # The OpenAI- and Anthropic-compatible stand-in (devsim): when set, it is
    # every provider's upstream, so the whole flow runs offline.
    dev_llm_base_url: str | None = None

    # A platform service's credential (messaging transcribes voice notes with it),
    # shared with that service. It may call only SERVICE_ENDPOINTS, and only on
    # behalf of the user named in `X-YourClaw-User`, metered to that user.
    # Empty: no service may call the proxy.
    llm_proxy_service_token: SecretStr = SecretStr("")

    # gateway-api, where automation webhooks (`POST /notify/<assistant>`) go on.
    gateway_api_url: str = "http://127.0.0.1:8000"

    # What a user may spend on platform keys per UTC calendar month, in USD.
    # $8 of a $20 plan leaves the margin for hosting, WhatsApp and payments.
    llm_monthly_allowance_usd: float = Field(default=8.0, ge=0)
    # Per assistant and replica: calls a minute, and calls in flight at once.
    llm_proxy_rate_limit_per_min: int = Field(default=60, ge=1)
    llm_proxy_max_concurrent: int = Field(default=4, ge=1)
    # Largest request body (audio uploads included).
    llm_proxy_max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # How long a checked credential (and the user's BYOK keys) is trusted
    # before it is read again; a revoked credential works at most this long.
    # A user's monthly spend is reused as long (re-read after each call this
    # replica meters), so another replica's calls count late by at most that.
    llm_proxy_credential_cache_seconds: float = Field(default=5.0, ge=0)
    llm_proxy_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    # A streamed answer may take minutes between its first and last token.
    llm_proxy_read_timeout_seconds: float = Field(default=600.0, gt=0)

    @field_validator("llm_proxy_service_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < 32:
            raise ValueError("LLM_PROXY_SERVICE_TOKEN must be 32+ characters or empty")
        return value

    @field_validator(
        "anthropic_api_base", "openai_api_base", "google_api_base", "gateway_api_url"
    )
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")
