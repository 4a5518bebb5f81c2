"""What both runtimes' warm pools share: the config a spare gateway boots
with, whether it admits traffic, and how a claim is known to have taken."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import time
from typing import Any

import httpx
from yourclaw_common.events import GATEWAY_CONFIG_PORT, ContainerSpec

__all__ = [
    "CONFIG_FILE",
    "admits_traffic",
    "port_free",
    "spare_config",
    "spare_template",
    "took_config",
]

CONFIG_FILE = "config/openclaw.json"
# Config keys whose string values are credentials (`token`, `apiKey`,
# `webhookToken`, ...): by name, so a secret a later render adds is caught too.
_SECRET_KEY = re.compile(r"(token|key|secret|password)$", re.IGNORECASE)
_PLACEHOLDER = "spare"


def _with_secrets(node: Any, value: Any) -> Any:
    """`node` with every credential replaced by `value()`."""
    if isinstance(node, dict):
        return {
            k: value()
            if isinstance(v, str) and _SECRET_KEY.search(k)
            else _with_secrets(v, value)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_with_secrets(v, value) for v in node]
    return node


def spare_template(config: str) -> str | None:
    """A user's rendered config with every credential replaced by a
    placeholder: what later spares boot with. None if it is not a config."""
    try:
        parsed = json.loads(config)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or "gateway" not in parsed:
        return None
    return json.dumps(_with_secrets(parsed, lambda: _PLACEHOLDER), sort_keys=True)


def spare_config(template: str | None = None) -> dict[str, Any]:
    """What a spare boots with: the template (a rendered config without its
    credentials), each credential a random value nobody knows, so a claim
    changes only those and OpenClaw hot-applies them in about a second.
    Without a template, the gateway block every rendered config has (a change
    there would make OpenClaw restart) and a token nobody knows: a claim then
    applies everything else, and the memory settings restart the gateway."""
    if template is not None:
        parsed = json.loads(template)
        if isinstance(parsed, dict):
            return dict(_with_secrets(parsed, lambda: secrets.token_urlsafe(32)))
    return {
        "gateway": {
            "mode": "local",
            "port": GATEWAY_CONFIG_PORT,
            "auth": {"mode": "token", "token": secrets.token_urlsafe(32)},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            "controlUi": {"enabled": False},
        }
    }


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


async def admits_traffic(host: str, port: int) -> bool:
    """OpenClaw's /readyz: startup done (config watcher, hooks, cron running).
    /healthz answers seconds earlier, before a config change would be seen."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            resp = await http.get(f"http://{host}:{port}/readyz")
    except httpx.HTTPError:
        return False
    return resp.status_code == 200


def _gateway_token(config: str | None) -> str | None:
    try:
        token = json.loads(config or "")["gateway"]["auth"]["token"]
    except (ValueError, KeyError, TypeError):
        return None
    return token if isinstance(token, str) and token else None


async def took_config(host: str, spec: ContainerSpec, timeout: float) -> bool:
    """Whether the gateway on the spec's port took the spec's config: its
    token opens /v1/models (the spare's own token is gone)."""
    token = _gateway_token(spec.files.get(CONFIG_FILE))
    if token is None:
        return True
    url = f"http://{host}:{spec.port}/v1/models"
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                resp = await http.get(url, headers={"Authorization": f"Bearer {token}"})
                if resp.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    return False
