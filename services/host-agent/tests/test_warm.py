"""What a docker warm spare boots with: the last create's config, none of its
credentials."""

from __future__ import annotations

import json

from yourclaw_host_agent.runtimes.warm import spare_config, spare_template

CREDENTIALS = (
    "gw-token",
    "proxy-key",
    "notify-secret",
    "client-secret",
    "pw-4711",
    "at-4712",
)
RENDERED = {
    "gateway": {"mode": "local", "auth": {"mode": "token", "token": "gw-token"}},
    "agents": {"defaults": {"model": {"primary": "openai/gpt-4o"}}},
    "models": {
        "providers": {
            "openai": {
                "baseUrl": "http://proxy/openai/v1",
                "apiKey": "proxy-key",
                "models": [{"id": "gpt-4o", "maxTokens": 8192}],
            }
        }
    },
    "cron": {"webhookToken": "notify-secret"},
    # Secrets a later render might add: caught by their names.
    "later": {"clientSecret": "client-secret", "password": "pw-4711"},
    "servers": [{"accessToken": "at-4712", "cacheKey": True}],
}


class TestSpareConfig:
    def test_no_credential_of_the_last_create_reaches_a_spare(self):
        template = spare_template(json.dumps(RENDERED))

        assert template is not None
        spare = json.dumps(spare_config(template))
        for secret in CREDENTIALS:
            assert secret not in template
            assert secret not in spare

    def test_a_spare_has_everything_else_and_credentials_nobody_knows(self):
        template = spare_template(json.dumps(RENDERED))

        one, two = spare_config(template), spare_config(template)

        for key in ("agents", "gateway", "models"):
            assert one[key].keys() == RENDERED[key].keys()
        assert one["agents"] == RENDERED["agents"]
        provider = one["models"]["providers"]["openai"]
        assert provider["baseUrl"] == "http://proxy/openai/v1"
        assert provider["models"] == [{"id": "gpt-4o", "maxTokens": 8192}]
        assert one["servers"][0]["cacheKey"] is True
        token = one["gateway"]["auth"]["token"]
        assert len(token) >= 32
        assert token != two["gateway"]["auth"]["token"]
        assert provider["apiKey"] != two["models"]["providers"]["openai"]["apiKey"]

    def test_without_a_template_a_spare_has_the_gateway_block_alone(self):
        assert spare_template("not json") is None
        assert spare_template(json.dumps({"no": "gateway"})) is None
        assert set(spare_config(None)) == {"gateway"}
