"""Benchmark: what a turn costs, before and after the prompt diet, and what the
LLM proxy adds to a call.

1. Proxy overhead: the same small chat completion, sent straight to the
   stand-in and through llm-proxy (credential check, allowance check,
   metering), one at a time, interleaved; p50 of each and the difference.
2. Cost: the real OpenClaw gateway, once with the old config (tools profile
   "full", every plugin, bootstrap templates, recap and embeddings calls,
   heartbeat) and once with the one the provisioner renders now, both
   through llm-proxy to the recording stand-in (devsim, which reports usage
   from the request's size and cache reads on a repeated prefix, as
   Anthropic does). Ten plain turns on Claude Sonnet 4.5 in one session, then
   an idle window. The proxy meters and prices every call (Sonnet list prices,
   `prices.py`); the month is 30 such turns a day for 30 days.

    uv run python bench/llm_cost.py
    BENCH_TURNS=10 BENCH_IDLE_SECONDS=60 BENCH_OVERHEAD_CALLS=400 uv run python bench/llm_cost.py

Uses NATS_URL / DATABASE_URL when set, else starts embedded servers.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _stack import bench_infra, stop, wait_http
from yourclaw_common.embedded import free_port
from yourclaw_common.testing.factories import assistant_with_proxy_credential
from yourclaw_host_agent.install_openclaw import (
    DEFAULT_OPENCLAW_HOME,
    ensure_openclaw,
    node_bin_dir,
    openclaw_entry,
)
from yourclaw_provisioner.render import (
    INJECTED_INSTRUCTIONS,
    GatewaySecrets,
    render_instructions,
    render_openclaw_config,
)

TURNS = int(os.environ.get("BENCH_TURNS", "10"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
OVERHEAD_CALLS = int(os.environ.get("BENCH_OVERHEAD_CALLS", "400"))
MODEL = "anthropic/claude-sonnet-4-5-20250929"
TURNS_PER_DAY = 30
GATEWAY_TOKEN = "bench-gateway-token"
PLATFORM_KEY = "bench-platform-key"  # the stand-in takes any key


def old_config(new: dict[str, Any]) -> dict[str, Any]:
    """The config the provisioner rendered before the diet: the seed's, with
    the same providers (through the proxy, so every call is metered)."""
    config = copy.deepcopy(new)
    defaults = config["agents"]["defaults"]
    for knob in ("skipBootstrap", "utilityModel", "heartbeat"):
        defaults.pop(knob)
    config["models"].pop("catalogRefresh")
    for provider in config["models"]["providers"].values():
        for model in provider["models"]:
            model.pop("params", None)
            model.pop("compat", None)
    tools = config["tools"]
    config["tools"] = {"profile": "full", "web": tools["web"], "media": tools["media"]}
    config.pop("skills")
    memory = config["memory"]["search"]
    config["memory"]["search"] = {
        k: v
        for k, v in memory.items()
        if k not in ("sources", "rememberAcrossConversations")
    }
    config.pop("plugins")
    config.pop("diagnostics")
    config["gateway"].pop("controlUi")
    return config


async def _assistant(pool: asyncpg.Pool) -> tuple[uuid.UUID, str]:
    _, assistant_id, token = await assistant_with_proxy_credential(pool)
    return assistant_id, token


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def overhead(pool: asyncpg.Pool, proxy: str, devsim: str) -> dict[str, float]:
    _, token = await _assistant(pool)
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 16,
    }
    direct: list[float] = []
    through: list[float] = []
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:

        async def timed(url: str, key: str) -> float:
            started = time.perf_counter()
            response = await http.post(
                url, json=body, headers={"authorization": f"Bearer {key}"}
            )
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            return elapsed

        for _ in range(20):  # warm both paths (connections, caches)
            await timed(f"{devsim}/v1/chat/completions", PLATFORM_KEY)
            await timed(f"{proxy}/v1/chat/completions", token)
        for _ in range(OVERHEAD_CALLS):
            direct.append(await timed(f"{devsim}/v1/chat/completions", PLATFORM_KEY))
            through.append(await timed(f"{proxy}/v1/chat/completions", token))
    return {
        "direct_p50_ms": statistics.median(direct) * 1000,
        "proxy_p50_ms": statistics.median(through) * 1000,
        "direct_p95_ms": _pct(direct, 0.95) * 1000,
        "proxy_p95_ms": _pct(through, 0.95) * 1000,
    }


async def _calls(pool: asyncpg.Pool, assistant_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT model, endpoint, input_tokens, output_tokens, cache_read_tokens, "
        "cache_write_tokens, cost_microusd FROM llm_calls WHERE assistant_id = $1 "
        "ORDER BY id",
        assistant_id,
    )


async def _forwarded(http: httpx.AsyncClient, metrics_url: str) -> float:
    """Every call the proxy passed on (answered or not: the old config's
    embeddings calls get a 404 from the stand-in, and still count)."""
    text = (await http.get(metrics_url)).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("yourclaw_llm_proxy_calls_total{")
    )


async def cost(
    pool: asyncpg.Pool,
    name: str,
    config_for: Any,
    *,
    proxy: str,
    metrics_url: str,
    data: Path,
) -> dict[str, Any]:
    assistant_id, token = await _assistant(pool)
    home = data / name
    config_dir, workspace = home / "config", home / "workspace"
    (workspace / INJECTED_INSTRUCTIONS).parent.mkdir(parents=True)
    config_dir.mkdir(parents=True)
    instructions = render_instructions(notify=f"{proxy}/notify/{assistant_id}")
    (workspace / INJECTED_INSTRUCTIONS).write_text(instructions)
    (workspace / "CLAUDE.md").write_text(instructions)
    new = render_openclaw_config(
        model=MODEL,
        secrets=GatewaySecrets(GATEWAY_TOKEN, "bench-notify", token),
        llm_proxy_url=proxy,
    )
    config = config_for(new)
    (config_dir / "openclaw.json").write_text(json.dumps(config, indent=2))
    port = free_port()
    env = {
        "PATH": os.pathsep.join([str(node_bin_dir()), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "OPENCLAW_HOME": str(home),
        "OPENCLAW_STATE_DIR": str(config_dir),
        "OPENCLAW_CONFIG_PATH": str(config_dir / "openclaw.json"),
        "OPENCLAW_WORKSPACE_DIR": str(workspace),
        "XDG_CACHE_HOME": str(config_dir / "cache"),
        "OPENCLAW_NO_RESPAWN": "1",
        "OPENCLAW_DISABLE_BONJOUR": "1",
    }
    gateway = await asyncio.create_subprocess_exec(
        str(node_bin_dir() / "node"),
        str(openclaw_entry(DEFAULT_OPENCLAW_HOME.resolve())),
        "gateway",
        "--port",
        str(port),
        "--bind",
        "loopback",
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    per_turn: list[float] = []
    try:
        await wait_http(f"http://127.0.0.1:{port}/readyz", 120)
        async with httpx.AsyncClient(timeout=180, trust_env=False) as http:
            before = await _forwarded(http, metrics_url)
            for turn in range(TURNS):
                response = await http.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    headers={
                        "authorization": f"Bearer {GATEWAY_TOKEN}",
                        "x-openclaw-session-key": f"bench:{name}",
                    },
                    json={
                        "model": "openclaw/default",
                        "user": f"bench:{name}",
                        "messages": [
                            {"role": "user", "content": f"plain question {turn + 1}"}
                        ],
                    },
                )
                response.raise_for_status()
                await asyncio.sleep(1.0)  # calls made after the answer count too
                now = await _forwarded(http, metrics_url)
                per_turn.append(now - before)
                before = now
            await asyncio.sleep(IDLE_SECONDS)
            idle = await _forwarded(http, metrics_url) - before
    finally:
        gateway.terminate()
        try:
            await asyncio.wait_for(gateway.wait(), 10)
        except TimeoutError:
            gateway.kill()
    calls = await _calls(pool, assistant_id)
    answers = [c for c in calls if c["model"] == MODEL.partition("/")[2]]

    def prompt(c: asyncpg.Record) -> int:
        return int(c["input_tokens"] + c["cache_read_tokens"] + c["cache_write_tokens"])

    later = answers[1:TURNS]
    cached = sum(c["cache_read_tokens"] for c in later)
    month_usd = (
        sum(c["cost_microusd"] for c in calls) / 1e6 / TURNS * TURNS_PER_DAY * 30
    )
    heartbeat = config["agents"]["defaults"].get("heartbeat", {}).get("every", "30m")
    return {
        "calls_turn_1": per_turn[0],
        "calls_later": statistics.mean(per_turn[1:]) if len(per_turn) > 1 else 0,
        "first_prompt_tokens": prompt(answers[0]),
        "cache_share": cached / max(1, sum(prompt(c) for c in later)),
        "month_usd": month_usd,
        "idle_calls": idle,
        "scheduled_a_day": 0 if heartbeat == "0m" else 24 * 60 // int(heartbeat[:-1]),
    }


async def _run(db_url: str, proxy: str, metrics_url: str, devsim: str, data: Path):
    async with asyncpg.create_pool(db_url, min_size=1, max_size=4) as pool:
        speed = await overhead(pool, proxy, devsim)
        results = {
            name: await cost(
                pool, name, config_for, proxy=proxy, metrics_url=metrics_url, data=data
            )
            for name, config_for in (("before", old_config), ("after", lambda c: c))
        }
    print(
        f"\nLLM proxy overhead, {OVERHEAD_CALLS} sequential chat completions "
        "(small body, answered at once by the stand-in):\n"
        f"  p50 direct {speed['direct_p50_ms']:.2f} ms, through the proxy "
        f"{speed['proxy_p50_ms']:.2f} ms: +{speed['proxy_p50_ms'] - speed['direct_p50_ms']:.2f} ms"
        f" (p95 {speed['direct_p95_ms']:.2f} / {speed['proxy_p95_ms']:.2f} ms)\n"
    )
    rows = [
        ("model calls, first turn", "calls_turn_1", "{:.0f}"),
        (f"model calls per later turn (2-{TURNS})", "calls_later", "{:.2f}"),
        ("first-turn prompt tokens", "first_prompt_tokens", "{:,}"),
        (f"prompt share read from cache, turns 2-{TURNS}", "cache_share", "{:.0%}"),
        (
            f"month at {TURNS_PER_DAY} turns/day, Sonnet list prices",
            "month_usd",
            "${:.2f}",
        ),
        (f"model calls while idle for {IDLE_SECONDS:.0f} s", "idle_calls", "{:.0f}"),
        ("scheduled model turns a day (heartbeat)", "scheduled_a_day", "{}"),
    ]
    print(f"OpenClaw on {MODEL}, {TURNS} plain turns in one session:")
    print(f"  {'':50} {'before':>10} {'after':>10}")
    for label, key, fmt in rows:
        print(
            f"  {label:50} {fmt.format(results['before'][key]):>10} "
            f"{fmt.format(results['after'][key]):>10}"
        )


def main() -> None:
    ensure_openclaw(DEFAULT_OPENCLAW_HOME)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The proxy migrates nothing: the bench does, first.
        with bench_infra("yourclaw-llm-cost-", "bench_llm_cost") as (tmp, infra):
            devsim_port, proxy_port, metrics_port = (
                free_port(),
                free_port(),
                free_port(),
            )
            devsim = f"http://127.0.0.1:{devsim_port}"
            proxy = f"http://127.0.0.1:{proxy_port}"
            env = {
                **os.environ,
                "NATS_URL": infra.nats_url,
                "DATABASE_URL": infra.database_url,
                "LOG_LEVEL": "WARNING",
                "DEVSIM_PORT": str(devsim_port),
                "DEVSIM_LLM_DELAY_SECONDS": "0",
                "DEV_LLM_BASE_URL": devsim,
                "ANTHROPIC_API_KEY": PLATFORM_KEY,
                "OPENAI_API_KEY": PLATFORM_KEY,
                "GOOGLE_API_KEY": PLATFORM_KEY,
                "LLM_PROXY_PORT": str(proxy_port),
                "METRICS_PORT": str(metrics_port),
                "LLM_MONTHLY_ALLOWANCE_USD": "1000",
                "LLM_PROXY_RATE_LIMIT_PER_MIN": "100000",
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "yourclaw_devkit.devsim"], env=env
                )
            )
            asyncio.run(wait_http(f"{devsim}/_devsim/health", 120))
            procs.append(
                subprocess.Popen([sys.executable, "-m", "yourclaw_llm_proxy"], env=env)
            )
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            asyncio.run(wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 120))
            try:
                asyncio.run(
                    _run(infra.database_url, proxy, metrics_url, devsim, tmp / "homes")
                )
            finally:
                stop(procs, timeout=10)
    finally:
        stop(procs, timeout=10)


if __name__ == "__main__":
    main()
