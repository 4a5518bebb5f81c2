"""What both runtimes' warm pools share: the config a spare gateway boots
with, whether it admits traffic, and how a claim is known to have taken."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time

import httpx
from yourclaw_common.events import GATEWAY_CONFIG_PORT, ContainerSpec

__all__ = ["CONFIG_FILE", "admits_traffic", "port_free", "spare_config", "took_config"]

CONFIG_FILE = "config/openclaw.json"


def spare_config() -> dict[str, object]:
    """What a spare boots with: the gateway block every rendered config has
    (a change there would make OpenClaw restart), and a token nobody knows."""
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
