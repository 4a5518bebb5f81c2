"""What a user's gateway runs: `openclaw.json`, the workspace `CLAUDE.md`, the env.

Pure functions of their inputs, so the same inputs give the same `spec_hash` and
a second create of an unchanged assistant is a no-op on the host.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from yourclaw_common.events import GATEWAY_CONFIG_PORT, ContainerSpec, container_name
from yourclaw_common.models import AVAILABLE_MODELS, LlmProvider

__all__ = [
    "CONFIG_FILE",
    "GATEWAY_PORT",
    "INJECTED_INSTRUCTIONS",
    "INSTRUCTIONS_FILE",
    "MODEL_CATALOG",
    "PROVIDER_ENV",
    "DevProvider",
    "GatewaySecrets",
    "build_spec",
    "notify_url",
    "render_instructions",
    "render_openclaw_config",
    "spec_hash",
]

# Paths relative to the user's data dir on the host (ContainerSpec.files).
CONFIG_FILE = "config/openclaw.json"
INSTRUCTIONS_FILE = "workspace/CLAUDE.md"
# The same instructions where OpenClaw's bootstrap-extra-files hook loads them
# (relative to the workspace; only AGENTS.md-style basenames are injected). A
# folder of its own leaves the workspace's AGENTS.md to OpenClaw and the user.
INJECTED_INSTRUCTIONS = "yourclaw/AGENTS.md"
# Inside the container; the runtime maps the host port onto it (the process
# runtime passes --port instead).
GATEWAY_PORT = GATEWAY_CONFIG_PORT

# The models the dashboard offers (served by the stand-in in dev mode).
MODEL_CATALOG: tuple[str, ...] = tuple(m.id for m in AVAILABLE_MODELS)

# api_keys.provider → the variable OpenClaw reads it from.
PROVIDER_ENV: dict[str, str] = {
    LlmProvider.ANTHROPIC: "ANTHROPIC_API_KEY",
    LlmProvider.OPENAI: "OPENAI_API_KEY",
    LlmProvider.GOOGLE: "GOOGLE_API_KEY",
}

# The browser tools: Playwright's MCP server over stdio, as OpenClaw's own
# `mcp.servers` entry (the seed's `openclaw-mcp-adapter` plugin is not a package
# OpenClaw 2026.9 can load: it only logs "plugin package is missing"). The
# tenant image (deploy/openclaw/Dockerfile) installs `@playwright/mcp` and puts
# `mcp-server-playwright` on PATH with Debian's Chromium. Where it is missing
# (the process runtime of local runs), OpenClaw logs it and runs without them.
PLAYWRIGHT_MCP_COMMAND = "mcp-server-playwright"
_PLAYWRIGHT_MCP = {
    "command": PLAYWRIGHT_MCP_COMMAND,
    "args": [
        "--browser",
        "chromium",
        "--headless",
        "--executable-path",
        "/usr/bin/chromium",
    ],
}


@dataclass(frozen=True)
class GatewaySecrets:
    """Per-assistant secrets, in clear only while a spec is built."""

    gateway_token: str
    notify_secret: str


@dataclass(frozen=True)
class DevProvider:
    """An OpenAI-compatible provider that stands in for the real ones (offline)."""

    base_url: str

    @property
    def openai_base_url(self) -> str:
        """The base URL with its `/v1`, as OpenAI-compatible clients expect it."""
        base = self.base_url.rstrip("/")
        return base if base.endswith("/v1") else base + "/v1"


def notify_url(public_base_url: str, assistant_id: UUID) -> str:
    """gateway-api's route that turns a finished automation into a WhatsApp message."""
    return f"{public_base_url.rstrip('/')}/api/v1/internal/assistants/{assistant_id}/notify"


def render_openclaw_config(
    *,
    model: str,
    secrets: GatewaySecrets,
    public_base_url: str,
    dev: DevProvider | None = None,
) -> dict[str, Any]:
    """The seed's production config, plus automation webhooks and the dev provider."""
    notify_host = urlsplit(public_base_url).hostname or "127.0.0.1"
    config: dict[str, Any] = {
        "agents": {
            "defaults": {
                # agents.defaults.contextTokens is gone in OpenClaw 2026.9 (a
                # per-model cap now); the models' native windows apply.
                "model": {"primary": model},
                "thinkingDefault": "low",
                "blockStreamingDefault": "on",
                "compaction": {"memoryFlush": {"enabled": True}},
            }
        },
        "gateway": {
            "mode": "local",
            "port": GATEWAY_PORT,
            "auth": {"mode": "token", "token": secrets.gateway_token},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "tools": {
            "profile": "full",
            "deny": ["browser", "playwright_browser_install"],
            "web": {"search": {"enabled": True}, "fetch": {"enabled": True}},
            "media": {"image": {"enabled": True}},
        },
        "mcp": {"servers": {"playwright": _PLAYWRIGHT_MCP}},
        "browser": {"enabled": False},
        "commands": {"restart": True},
        # OpenClaw injects AGENTS.md-like files only, not CLAUDE.md: this hook
        # adds our instructions to every session's context.
        "hooks": {
            "internal": {
                "enabled": True,
                "entries": {
                    "bootstrap-extra-files": {
                        "enabled": True,
                        "paths": [INJECTED_INSTRUCTIONS],
                    }
                },
            }
        },
        # Automations deliver finished runs to gateway-api, which sends them on
        # WhatsApp. The bearer token proves which assistant is calling, and the
        # SSRF guard (strict by default) lets exactly that host through.
        "cron": {
            "webhookToken": secrets.notify_secret,
            "webhookSsrfPolicy": {"allowedHostnames": [notify_host]},
        },
    }
    if dev is not None:
        config["models"] = {"mode": "merge", "providers": _dev_providers(dev, model)}
    return config


def _dev_model(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "name": f"Dev stand-in ({model_id})",
        "reasoning": False,
        "input": ["text", "image"],
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
        "contextWindow": 200_000,
        "contextTokens": 200_000,
        "maxTokens": 8192,
    }


def _dev_providers(dev: DevProvider, model: str) -> dict[str, Any]:
    """The stand-in under the real providers' names, with every model offered.

    The config stays the production one (the primary is the user's model, so a
    model change re-creates the gateway as it does in production) and so does
    messaging's per-request `x-openclaw-model`; only the endpoint differs.
    """
    by_provider: dict[str, list[str]] = {}
    for model_ref in (*MODEL_CATALOG, model):
        provider, _, model_id = model_ref.partition("/")
        ids = by_provider.setdefault(provider, [])
        if model_id and model_id not in ids:
            ids.append(model_id)
    return {
        provider: {
            "baseUrl": dev.openai_base_url,
            "apiKey": "dev",
            "api": "openai-completions",
            "models": [_dev_model(i) for i in ids],
        }
        for provider, ids in by_provider.items()
    }


def render_instructions(*, notify: str) -> str:
    """The workspace `CLAUDE.md`: WhatsApp, no CLI talk, concise for mobile."""
    return f"""# How you work

You are the user's personal assistant. They talk to you on WhatsApp, from their phone.

- You are already on WhatsApp. Never suggest connecting a messaging app, channel or
  bot: the conversation you are in is the one they use.
- The user has no terminal, command line, config files or dashboard for you. Never
  mention CLI commands, `openclaw ...`, shell steps or settings files, and never ask
  them to run anything. Do the work yourself with your tools and tell them the result.
- Keep replies short and easy to read on a phone: a few sentences or a short list.
  No tables, no headings, no long code blocks. Offer more detail if they want it.
- WhatsApp formatting only: *bold*, _italic_, ~strikethrough~, `code`. Paste links as
  plain URLs.

## Reminders, schedules, watching things

When the user asks for something later or on a schedule (a reminder, a daily
summary, watching a page for a change), create an automation for it with webhook
delivery to this address:

    mode: webhook
    to: {notify}

Whatever the run answers is sent to the user on WhatsApp as it is, so write that
final answer as the message itself, short, and in the user's language.
"""


def _hash_input(spec: dict[str, Any]) -> bytes:
    return json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()


def spec_hash(spec_fields: dict[str, Any]) -> str:
    """sha256 over every spec field but the hash itself."""
    fields = {k: v for k, v in spec_fields.items() if k != "spec_hash"}
    return hashlib.sha256(_hash_input(fields)).hexdigest()


def build_spec(
    *,
    user_id: UUID,
    assistant_id: UUID,
    port: int,
    model: str,
    secrets: GatewaySecrets,
    llm_env: dict[str, str],
    public_base_url: str,
    image: str,
    dev: DevProvider | None = None,
) -> ContainerSpec:
    """The ContainerSpec a host needs to run this user's gateway."""
    notify = notify_url(public_base_url, assistant_id)
    config = render_openclaw_config(
        model=model, secrets=secrets, public_base_url=public_base_url, dev=dev
    )
    instructions = render_instructions(notify=notify)
    fields: dict[str, Any] = {
        "user_id": str(user_id),
        "name": container_name(user_id),
        "port": port,
        "image": image,
        "files": {
            CONFIG_FILE: json.dumps(config, indent=2, sort_keys=True) + "\n",
            INSTRUCTIONS_FILE: instructions,
            f"workspace/{INJECTED_INSTRUCTIONS}": instructions,
        },
        "env": dict(sorted(llm_env.items())),
    }
    defaults = ContainerSpec.model_fields
    for name in ("memory_mb", "cpus", "pids_limit"):
        fields[name] = defaults[name].default
    return ContainerSpec(**fields, spec_hash=spec_hash(fields))
