import pytest
from pydantic import ValidationError
from yourclaw_gateway_api.settings import GatewaySettings

ENV_NAMES = [
    "API_HOST",
    "API_PORT",
    "API_WORKERS",
    "PUBLIC_BASE_URL",
    "TWILIO_AUTH_TOKEN",
    "WEBHOOK_MAX_BODY_BYTES",
    "SERVICE_NAME",
]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class TestGatewaySettings:
    def test_defaults(self, clean_env):
        settings = GatewaySettings()

        assert settings.service_name == "gateway-api"
        assert (settings.api_host, settings.api_port, settings.api_workers) == (
            "127.0.0.1",
            8000,
            1,
        )
        assert settings.public_base_url == "http://127.0.0.1:8000"
        assert settings.twilio_auth_token.get_secret_value() == ""
        assert settings.webhook_max_body_bytes == 64 * 1024

    def test_plain_upper_case_env_names(self, clean_env):
        clean_env.setenv("API_PORT", "9001")
        clean_env.setenv("API_WORKERS", "3")
        clean_env.setenv("PUBLIC_BASE_URL", "https://api.example.com/")
        clean_env.setenv("TWILIO_AUTH_TOKEN", "s3cr3t-value")
        clean_env.setenv("WEBHOOK_MAX_BODY_BYTES", "1000")

        settings = GatewaySettings()

        assert settings.api_port == 9001
        assert settings.api_workers == 3
        assert settings.public_base_url == "https://api.example.com"
        assert settings.twilio_auth_token.get_secret_value() == "s3cr3t-value"
        assert "s3cr3t-value" not in repr(settings)
        assert settings.webhook_max_body_bytes == 1000

    @pytest.mark.parametrize(
        "url",
        [
            "api.example.com",
            "ftp://api.example.com",
            "https://",
            "https://a.example?x=1",
            "https://a.example:99999",
        ],
    )
    def test_public_base_url_must_be_an_http_base(self, clean_env, url):
        with pytest.raises(ValidationError, match="public_base_url"):
            GatewaySettings(public_base_url=url)
