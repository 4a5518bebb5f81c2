from __future__ import annotations

import uuid

from yourclaw_provisioner.render import (
    DevProvider,
    GatewaySecrets,
    build_spec,
    notify_url,
)

USER = uuid.UUID("6f1c2c3e-8d8c-4b0e-9a57-0d7c1b9b5a01")
ASSISTANT = uuid.UUID("0b5b3a4e-1f65-4d0c-8c1e-3f3c9f4a2b10")
SECRETS = GatewaySecrets(gateway_token="tok-1", notify_secret="notify-1")


def spec(**overrides):
    args = {
        "user_id": USER,
        "assistant_id": ASSISTANT,
        "port": 19100,
        "model": "anthropic/claude-sonnet-4-5-20250929",
        "secrets": SECRETS,
        "llm_env": {"ANTHROPIC_API_KEY": "k"},
        "public_base_url": "https://api.yourclaw.test/",
        "image": "yourclaw-openclaw:latest",
        **overrides,
    }
    return build_spec(**args)


class TestBuildSpec:
    def test_same_inputs_give_the_same_hash(self):
        assert spec().spec_hash == spec().spec_hash

    def test_every_input_changes_the_hash(self):
        base = spec().spec_hash
        changed = [
            spec(model="openai/gpt-4o"),
            spec(port=19101),
            spec(llm_env={"ANTHROPIC_API_KEY": "other"}),
            spec(secrets=GatewaySecrets("tok-2", "notify-1")),
            spec(dev=DevProvider("http://127.0.0.1:8900/v1")),
        ]
        hashes = {s.spec_hash for s in changed}
        assert base not in hashes
        assert len(hashes) == len(changed)

    def test_notify_url_has_no_double_slash(self):
        assert notify_url("https://api.yourclaw.test/", ASSISTANT) == (
            f"https://api.yourclaw.test/api/v1/internal/assistants/{ASSISTANT}/notify"
        )

    def test_dev_base_url_gets_its_v1_once(self):
        assert DevProvider("http://h:1").openai_base_url == "http://h:1/v1"
        assert DevProvider("http://h:1/v1/").openai_base_url == "http://h:1/v1"
