"""Every metric of llm-proxy, named `yourclaw_llm_proxy_<what>_<unit>`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CALLS",
    "COST",
    "IN_FLIGHT",
    "OVERHEAD_SECONDS",
    "REFUSALS",
    "TOKENS",
    "UPSTREAM_SECONDS",
]

CALLS = Counter(
    "yourclaw_llm_proxy_calls_total",
    "Provider calls, by provider, endpoint and outcome (ok, upstream_4xx, "
    "upstream_5xx, upstream_error).",
    ["provider", "endpoint", "outcome"],
)
REFUSALS = Counter(
    "yourclaw_llm_proxy_refusals_total",
    "Requests answered without calling a provider, by error code.",
    ["code"],
)
TOKENS = Counter(
    "yourclaw_llm_proxy_tokens_total",
    "Tokens the providers reported, by model and kind (input, output, "
    "cache_read, cache_write).",
    ["model", "kind"],
)
COST = Counter(
    "yourclaw_llm_proxy_cost_usd_total",
    "What the metered calls cost at list price, by model and key source.",
    ["model", "key_source"],
)
UPSTREAM_SECONDS = Histogram(
    "yourclaw_llm_proxy_upstream_seconds",
    "From sending a call to the provider's response headers, by provider.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
OVERHEAD_SECONDS = Histogram(
    "yourclaw_llm_proxy_overhead_seconds",
    "Time spent in the proxy before the provider is called (auth, allowance).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
)
IN_FLIGHT = Gauge(
    "yourclaw_llm_proxy_in_flight",
    "Provider calls in flight on this replica.",
)
