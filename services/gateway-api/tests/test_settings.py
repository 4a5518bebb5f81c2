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
    "YOURCLAW_ENV",
    "DEV_LOGIN_ENABLED",
    "DEV_LOGIN_SECRET",
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


DEV_SECRET = "d" * 40


class TestDevLoginNeedsDevEnvironment:
    def test_unset_environment_is_production(self, clean_env):
        assert GatewaySettings().yourclaw_env == "production"

    @pytest.mark.parametrize("environment", [None, "production"])
    def test_dev_login_is_refused_outside_dev(self, clean_env, environment):
        if environment is not None:
            clean_env.setenv("YOURCLAW_ENV", environment)
        clean_env.setenv("DEV_LOGIN_ENABLED", "true")
        clean_env.setenv("DEV_LOGIN_SECRET", DEV_SECRET)

        with pytest.raises(ValidationError, match="unless YOURCLAW_ENV=dev"):
            GatewaySettings()

    def test_an_unknown_environment_is_refused(self, clean_env):
        clean_env.setenv("YOURCLAW_ENV", "develop")

        with pytest.raises(ValidationError, match="yourclaw_env"):
            GatewaySettings()

    def test_dev_login_starts_in_dev(self, clean_env):
        clean_env.setenv("YOURCLAW_ENV", "dev")
        clean_env.setenv("DEV_LOGIN_ENABLED", "true")
        clean_env.setenv("DEV_LOGIN_SECRET", DEV_SECRET)

        settings = GatewaySettings()

        assert (settings.yourclaw_env, settings.dev_login_enabled) == ("dev", True)

    def test_dev_environment_alone_does_not_turn_dev_login_on(self, clean_env):
        clean_env.setenv("YOURCLAW_ENV", "dev")

        assert GatewaySettings().dev_login_enabled is False
