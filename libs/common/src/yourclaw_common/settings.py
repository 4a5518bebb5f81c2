"""Settings shared by every service; each service subclasses `CommonSettings`."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CommonSettings", "Environment", "PhoneNumberSetting"]

# Where a process runs. Only "dev" allows what must never reach production
# (email-only sign-in, the stand-ins); anything else is refused, so a typo is not
# a way in.
Environment = Literal["dev", "production"]

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _e164_or_empty(value: str) -> str:
    value = value.strip()
    if value and not _E164.fullmatch(value):
        raise ValueError("must be empty or an E.164 number like +14155550100")
    return value


# A phone number of ours in E.164 (`TWILIO_SMS_NUMBER`), or empty for none.
PhoneNumberSetting = Annotated[str, AfterValidator(_e164_or_empty)]

# Plain NATS is fine where nothing crosses a network: `make up`, the tests.
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class CommonSettings(BaseSettings):
    """Variables every service reads. Unknown variables are ignored: one `.env`
    serves all services."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A refused setting must not print the others: they hold secrets.
        hide_input_in_errors=True,
    )

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/yourclaw",
        description="PostgreSQL DSN.",
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS URL.")
    # This process's NATS identity (yourclaw_common.nats_auth): the service's
    # name, or `host-agent-<host id>`. Empty: connect as the URL says.
    nats_user: str = ""
    nats_password: SecretStr = SecretStr("")
    # PEM file of the CA that signs the NATS server's certificate: the client
    # verifies the server against it (and only it). Empty with a tls:// URL:
    # the system's CAs.
    nats_tls_ca_file: str = ""
    service_name: str = "yourclaw"
    # Unset means production: dev-only paths need YOURCLAW_ENV=dev said outright.
    yourclaw_env: Environment = "production"
    log_level: str = "INFO"
    db_pool_min_size: int = Field(default=1, ge=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    # Fernet keys, comma-separated, newest first (MultiFernet rotation).
    encryption_key: SecretStr = SecretStr("")
    # Replicas of every JetStream stream: 1 on a single server, 3 on a cluster.
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    # Seconds a consumer may hold a message without acking or heartbeating.
    consumer_ack_wait_seconds: float = Field(default=30.0, gt=0)
    # Port of the /metrics /healthz /readyz server of worker services (0 = off).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    run_migrations: bool = Field(
        default=True, description="Apply pending migrations at service start."
    )

    @model_validator(mode="after")
    def _nats_tls_in_production(self) -> Self:
        # In clear text, the bus carries every service's password and every
        # tenant's messages past whoever shares the network.
        url = urlsplit(self.nats_url)
        if (
            self.yourclaw_env == "production"
            and url.scheme != "tls"
            and url.hostname not in _LOOPBACK
        ):
            raise ValueError(
                f"NATS_URL must be tls://… in production (YOURCLAW_ENV=production), "
                f"got {url.scheme}://{url.hostname}: plain NATS is allowed on "
                "loopback or with YOURCLAW_ENV=dev only (docs/security.md)"
            )
        return self
