"""Settings of the public HTTP edge."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from yourclaw_common.settings import CommonSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(CommonSettings):
    service_name: str = "gateway-api"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_workers: int = Field(default=1, ge=1)
    # The base URL Twilio calls (e.g. https://api.example.com behind a TLS proxy);
    # webhook signatures cover it, so it must be what Twilio sees, not what we see.
    public_base_url: str = "http://127.0.0.1:8000"
    twilio_auth_token: SecretStr = SecretStr("")
    webhook_max_body_bytes: int = Field(default=64 * 1024, ge=1)
    # Seconds to wait for JetStream's PubAck before answering 503.
    webhook_publish_timeout_seconds: float = Field(default=2.0, gt=0)

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
