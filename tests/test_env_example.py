"""`.env.example` documents every setting the code reads, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from yourclaw_billing.settings import BillingSettings
from yourclaw_common.db_roles import SERVICE_ROLES
from yourclaw_common.db_roles import password_env as db_password_env
from yourclaw_common.nats_auth import password_env, users_for
from yourclaw_common.settings import CommonSettings
from yourclaw_devkit.cli import DevCliSettings
from yourclaw_devkit.devsim import DevsimSettings
from yourclaw_devkit.telegram_sim import TelegramSimSettings
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_host_agent.settings import HostAgentSettings
from yourclaw_llm_proxy.settings import LlmProxySettings
from yourclaw_messaging.settings import MessagingSettings
from yourclaw_provisioner.settings import ProvisionerSettings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [
    CommonSettings,
    GatewaySettings,
    MessagingSettings,
    BillingSettings,
    HostAgentSettings,
    ProvisionerSettings,
    LlmProxySettings,
    DevsimSettings,
    TelegramSimSettings,
    DevCliSettings,
]
# Read straight from the environment, not through a settings class.
EXTRA = {
    "MESSAGING_METRICS_PORT",
    "BILLING_METRICS_PORT",
    "PROVISIONER_METRICS_PORT",
    "HOST_AGENT_METRICS_PORT",
    "LLM_PROXY_METRICS_PORT",
    "YOURCLAW_DATA_DIR",
    # The web app's own (web/src/lib/server-config.ts), and where `make up` serves it.
    "SUPABASE_ANON_KEY",
    "WEB_PORT",
    # docker-compose.yml's NATS users' passwords (deploy/nats/auth.conf).
    *(password_env(user) for user in users_for(["compose"])),
    # docker-compose.yml's database logins (yourclaw_common.db_roles).
    *(db_password_env(service) for service in SERVICE_ROLES),
}


def documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))


def read_by_code() -> set[str]:
    names = {name.upper() for cls in SETTINGS for name in cls.model_fields}
    return names | EXTRA


class TestEnvExample:
    def test_every_setting_is_documented(self):
        assert read_by_code() - documented() == set()

    def test_nothing_documented_is_unknown_to_the_code(self):
        assert documented() - read_by_code() == set()

    def test_example_values_load_into_every_settings_class(self, monkeypatch):
        for line in (ROOT / ".env.example").read_text().splitlines():
            if m := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line):
                if m.group(2):
                    monkeypatch.setenv(m.group(1), m.group(2))
        for cls in SETTINGS:
            cls(_env_file=None)
