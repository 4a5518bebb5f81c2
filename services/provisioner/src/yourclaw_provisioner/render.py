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
from yourclaw_common.models import AVAILABLE_MODELS

__all__ = [
    "BOOTSTRAP_TEMPLATES",
    "CONFIG_FILE",
    "GATEWAY_PORT",
    "INJECTED_INSTRUCTIONS",
    "INSTRUCTIONS_FILE",
    "MCP_IDLE_TTL_SECONDS",
    "MODEL_CATALOG",
    "PLAYWRIGHT_MCP_COMMAND",
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

# The models the dashboard offers; every one is in the rendered config.
MODEL_CATALOG: tuple[str, ...] = tuple(m.id for m in AVAILABLE_MODELS)

# How OpenClaw reaches each provider through the LLM proxy: the proxy's path
# prefix (the SDK's base URL) and the wire API. Google goes through its
# OpenAI-compatible API.
_PROVIDER_ROUTES: dict[str, tuple[str, str]] = {
    "anthropic": ("/anthropic", "anthropic-messages"),
    "openai": ("/openai/v1", "openai-completions"),
    "google": ("/google/v1", "openai-completions"),
}
_CONTEXT_WINDOWS = {"anthropic": 200_000, "openai": 128_000, "google": 1_000_000}
# Memory search embeds MEMORY.md through the proxy too (no key in the tenant).
_EMBEDDING_MODEL = "text-embedding-3-small"

# OpenClaw's bootstrap templates that gateways created before `skipBootstrap`
# and that hold only OpenClaw's own instructions (ours come through the hook
# below): most of the ~19 KB they add to every turn. USER.md and IDENTITY.md
# stay: the assistant writes what it learns about its user there.
BOOTSTRAP_TEMPLATES: tuple[str, ...] = (
    "workspace/AGENTS.md",
    "workspace/SOUL.md",
    "workspace/BOOTSTRAP.md",
)

# The browser tools: Playwright's MCP server over stdio, as OpenClaw's own
# `mcp.servers` entry (the seed's `openclaw-mcp-adapter` plugin is not a package
# OpenClaw 2026.9 can load: it only logs "plugin package is missing"). The
# tenant image installs `@playwright/mcp`, whose 0.0.83 names its command
# `playwright-mcp`, with Debian's Chromium. Where it is missing (the process
# runtime of local runs), OpenClaw logs it and runs without them.
PLAYWRIGHT_MCP_COMMAND = "playwright-mcp"
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
    # The assistant's credential for the LLM proxy (the only key it holds).
    proxy_token: str = ""


def notify_url(llm_proxy_url: str, assistant_id: UUID) -> str:
    """Where the assistant's automations deliver finished runs: the proxy, which
    passes them on to gateway-api (tenants reach no other platform service)."""
    return f"{llm_proxy_url.rstrip('/')}/notify/{assistant_id}"


# How long an idle browser (Playwright MCP server and its Chromium, about
# 400 MB) lives after the last turn that used it.
MCP_IDLE_TTL_SECONDS = 600


def render_openclaw_config(
    *,
    model: str,
    secrets: GatewaySecrets,
    llm_proxy_url: str,
    mcp_idle_ttl_seconds: int = MCP_IDLE_TTL_SECONDS,
) -> dict[str, Any]:
    """The seed's production config, every provider behind the LLM proxy, and
    the prompt diet (see the comments)."""
    proxy = llm_proxy_url.rstrip("/")
    notify_host = urlsplit(proxy).hostname or "127.0.0.1"
    config: dict[str, Any] = {
        "agents": {
            "defaults": {
                # agents.defaults.contextTokens is gone in OpenClaw 2026.9 (a
                # per-model cap now); the models' native windows apply.
                "model": {"primary": model},
                "thinkingDefault": "low",
                "blockStreamingDefault": "on",
                "compaction": {"memoryFlush": {"enabled": True}},
                # No AGENTS/SOUL/IDENTITY/USER/BOOTSTRAP.md templates: about
                # 19 KB of prompt on every turn. Our instructions come through
                # the hook below.
                "skipBootstrap": True,
                # No per-turn "activity recap" call to a small model.
                "utilityModel": "",
                # No heartbeat turns: an idle assistant makes no model call.
                "heartbeat": {"every": "0m"},
            }
        },
        "models": {
            "mode": "merge",
            "providers": _proxy_providers(proxy, secrets.proxy_token, model),
            # No remote model-catalog fetch.
            "catalogRefresh": {"enabled": False},
        },
        "gateway": {
            "mode": "local",
            "port": GATEWAY_PORT,
            "auth": {"mode": "token", "token": secrets.gateway_token},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            "controlUi": {"enabled": False},
        },
        # What the product promises (reminders, web search and fetch, images,
        # memory, the browser through Tool Search) and nothing more: no shell,
        # process or file-system tools. Tools not allowed are not sent to the
        # model, which keeps the prompt small.
        "tools": {
            "allow": [
                "automations",
                "web_search",
                "web_fetch",
                "view_image",
                "memory_search",
                "memory_get",
                "bundle-mcp",
            ],
            "deny": ["group:runtime", "group:fs", "browser"],
            "web": {"search": {"enabled": True}, "fetch": {"enabled": True}},
            "media": {"image": {"enabled": True}},
        },
        # The skills list needs `read`, which is denied.
        "skills": {
            "allowBundled": [],
            "workshop": {"autonomous": {"mode": "off"}},
        },
        # Memory from MEMORY.md only, not from every transcript: no embeddings
        # call per turn. Embeddings go through the proxy as well, with the
        # openai provider's credential: OpenClaw lends it to a remote at that
        # provider's base URL. A key of its own here would make every change
        # of it (a warm spare's claim) restart the gateway: OpenClaw hot-applies
        # `models` but not `memory.search`.
        "memory": {
            "search": {
                "sources": ["memory"],
                "rememberAcrossConversations": False,
                "provider": "openai",
                "model": _EMBEDDING_MODEL,
                "fallback": "none",
                "remote": {"baseUrl": proxy + _PROVIDER_ROUTES["openai"][0]},
            }
        },
        # Only the plugins used: memory (tools and embeddings through the
        # OpenAI-compatible provider); the other 11 OpenClaw loads by default
        # (canvas, device pairing, ...) serve nothing here and slow its start.
        "plugins": {
            "allow": ["memory-core", "openai"],
            "entries": {"memory-core": {"config": {"dreaming": {"enabled": False}}}},
        },
        "diagnostics": {"enabled": False},
        # OpenClaw starts the browser when a turn first needs its tools and, by
        # default, keeps it until the session resets, which a user's one
        # long-lived session never does: evicted after this much idle time
        # instead (a sweep runs once a minute). 0 keeps OpenClaw's default.
        "mcp": {
            "servers": {"playwright": _PLAYWRIGHT_MCP},
            **(
                {"sessionIdleTtlMs": mcp_idle_ttl_seconds * 1000}
                if mcp_idle_ttl_seconds > 0
                else {}
            ),
        },
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
        # Automations deliver finished runs to the proxy's notify route, which
        # passes them to gateway-api. The bearer token proves which assistant
        # is calling, and the SSRF guard (strict by default) lets exactly the
        # proxy's host through.
        "cron": {
            "webhookToken": secrets.notify_secret,
            "webhookSsrfPolicy": {"allowedHostnames": [notify_host]},
        },
    }
    return config


def _proxy_model(provider: str, model_id: str) -> dict[str, Any]:
    model: dict[str, Any] = {
        "id": model_id,
        "name": model_id,
        "reasoning": False,
        "input": ["text", "image"],
        # The proxy meters and prices every call; OpenClaw's own estimate is off.
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
        "contextWindow": _CONTEXT_WINDOWS.get(provider, 128_000),
        "maxTokens": 8192,
    }
    if provider == "anthropic":
        # Anthropic caches only what a request marks with cache_control, and
        # OpenClaw marks the stable prefix for a custom base URL only when
        # asked: later turns then read it at a tenth of the input price.
        model["params"] = {"cacheRetention": "short"}
    elif provider == "openai":
        # OpenAI caches long prefixes by itself; the key keeps a session's
        # turns on one cache (OpenClaw sends it to a proxy only when told).
        model["compat"] = {"supportsPromptCacheKey": True}
    return model


def _proxy_providers(proxy: str, token: str, model: str) -> dict[str, Any]:
    """Every provider of the catalog, at the proxy, with the assistant's credential.

    The primary is the user's model (a model change re-creates the gateway) and
    messaging's per-request `x-openclaw-model` picks any other of the catalog.
    """
    by_provider: dict[str, list[str]] = {}
    for model_ref in (*MODEL_CATALOG, model):
        provider, _, model_id = model_ref.partition("/")
        ids = by_provider.setdefault(provider, [])
        if model_id and model_id not in ids:
            ids.append(model_id)
    providers: dict[str, Any] = {}
    for provider, ids in by_provider.items():
        path, api = _PROVIDER_ROUTES.get(provider, ("/openai/v1", "openai-completions"))
        providers[provider] = {
            "baseUrl": proxy + path,
            "apiKey": token,
            "api": api,
            "models": [_proxy_model(provider, i) for i in ids],
        }
    return providers


def render_instructions(*, notify: str) -> str:
    """The workspace `CLAUDE.md`: the user's chat apps, no CLI talk, concise for
    mobile."""
    return f"""# How you work

You are the user's personal assistant. They talk to you from their phone, on
WhatsApp, Telegram or SMS: whichever they linked, and it may be more than one.

- You are already in their chat app. Never suggest connecting a messaging app,
  channel or bot: the conversation you are in is the one they use.
- The user has no terminal, command line, config files or dashboard for you. Never
  mention CLI commands, `openclaw ...`, shell steps or settings files, and never ask
  them to run anything. Do the work yourself with your tools and tell them the result.
- Keep replies short and easy to read on a phone: a few sentences or a short list.
  No tables, no headings, no long code blocks. Offer more detail if they want it.
- Formatting only as WhatsApp writes it: *bold*, _italic_, ~strikethrough~, `code`
  (Telegram shows it as formatting too; SMS gets the plain text). Paste links as
  plain URLs.

## Reminders, schedules, watching things

When the user asks for something later or on a schedule (a reminder, a daily
summary, watching a page for a change), create an automation for it with webhook
delivery to this address:

    mode: webhook
    to: {notify}

Whatever the run answers is sent to the user in their chat as it is, so write that
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
    llm_proxy_url: str,
    image: str,
    mcp_idle_ttl_seconds: int = MCP_IDLE_TTL_SECONDS,
) -> ContainerSpec:
    """The ContainerSpec a host needs to run this user's gateway.

    No provider key anywhere: not in the env (empty), not in the files."""
    notify = notify_url(llm_proxy_url, assistant_id)
    config = render_openclaw_config(
        model=model,
        secrets=secrets,
        llm_proxy_url=llm_proxy_url,
        mcp_idle_ttl_seconds=mcp_idle_ttl_seconds,
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
        "remove_files": list(BOOTSTRAP_TEMPLATES),
        "env": {},
    }
    defaults = ContainerSpec.model_fields
    for name in ("memory_mb", "cpus", "pids_limit"):
        fields[name] = defaults[name].default
    return ContainerSpec(**fields, spec_hash=spec_hash(fields))
