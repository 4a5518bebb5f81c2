from __future__ import annotations

import json
import uuid

from yourclaw_provisioner.render import (
    GatewaySecrets,
    build_spec,
    notify_url,
)

USER = uuid.UUID("6f1c2c3e-8d8c-4b0e-9a57-0d7c1b9b5a01")
ASSISTANT = uuid.UUID("0b5b3a4e-1f65-4d0c-8c1e-3f3c9f4a2b10")
SECRETS = GatewaySecrets("tok-1", "notify-1", proxy_token="ycp_1")


def spec(**overrides):
    args = {
        "user_id": USER,
        "assistant_id": ASSISTANT,
        "port": 19100,
        "model": "anthropic/claude-sonnet-4-5-20250929",
        "secrets": SECRETS,
        "llm_proxy_url": "http://127.0.0.1:8790/",
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
            spec(secrets=GatewaySecrets("tok-2", "notify-1", "ycp_1")),
            spec(secrets=GatewaySecrets("tok-1", "notify-1", "ycp_2")),
            spec(llm_proxy_url="http://host.docker.internal:8790"),
        ]
        hashes = {s.spec_hash for s in changed}
        assert base not in hashes
        assert len(hashes) == len(changed)

    def test_notify_url_is_the_proxys_notify_route(self):
        assert notify_url("http://127.0.0.1:8790/", ASSISTANT) == (
            f"http://127.0.0.1:8790/notify/{ASSISTANT}"
        )

    def test_no_provider_key_in_env_or_files(self):
        rendered = spec()
        assert rendered.env == {}
        config = json.loads(rendered.files["config/openclaw.json"])
        for provider in config["models"]["providers"].values():
            assert provider["apiKey"] == "ycp_1"
            assert provider["baseUrl"].startswith("http://127.0.0.1:8790/")
        # Memory search borrows the openai provider's credential: same base URL.
        remote = config["memory"]["search"]["remote"]
        assert remote == {"baseUrl": config["models"]["providers"]["openai"]["baseUrl"]}

    def test_openclaws_instruction_templates_are_removed_the_users_notes_kept(self):
        removed = spec().remove_files
        assert set(removed) == {
            "workspace/AGENTS.md",
            "workspace/SOUL.md",
            "workspace/BOOTSTRAP.md",
        }
        assert "workspace/USER.md" not in removed
        # Our instructions are not among them.
        assert not set(removed) & set(spec().files)
