"""Where each provider's calls go, and with which key.

Tenants address the proxy per provider, as each SDK expects its base URL:
`<proxy>/anthropic` (the Anthropic client adds `/v1/messages`),
`<proxy>/openai/v1` and `<proxy>/google/v1` (OpenAI-compatible clients add
`/chat/completions`, `/embeddings`, `/audio/transcriptions`,
`/audio/speech`). The unprefixed
`/v1/...` paths work too; the provider then follows from the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from yourclaw_llm_proxy.prices import Provider
from yourclaw_llm_proxy.settings import LlmProxySettings

__all__ = ["ENDPOINTS", "Upstream", "Upstreams"]

# Tenant path after `/v1/` → the endpoint and the providers that serve it.
ENDPOINTS: dict[str, frozenset[Provider]] = {
    "messages": frozenset({Provider.ANTHROPIC}),
    "chat/completions": frozenset({Provider.OPENAI, Provider.GOOGLE}),
    "embeddings": frozenset({Provider.OPENAI, Provider.GOOGLE}),
    "audio/transcriptions": frozenset({Provider.OPENAI}),
    "audio/speech": frozenset({Provider.OPENAI}),
}

# Request headers passed on; everything else (the tenant's credential first of
# all) stays here.
_FORWARDED = ("content-type", "accept", "anthropic-version", "anthropic-beta")
_ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class Upstream:
    """One provider's API base (version included) and platform key."""

    provider: Provider
    base_url: str
    platform_key: str

    def url(self, endpoint: str) -> str:
        return f"{self.base_url}/{endpoint}"

    def headers(self, incoming: dict[str, str], key: str) -> dict[str, str]:
        """The headers of the provider call: selected ones of the tenant's, our key."""
        headers = {h: incoming[h] for h in _FORWARDED if h in incoming}
        # Uncompressed, so usage can be read out of the stream as it passes.
        headers["accept-encoding"] = "identity"
        if self.provider is Provider.ANTHROPIC:
            headers["x-api-key"] = key
            headers.setdefault("anthropic-version", _ANTHROPIC_VERSION)
        else:
            headers["authorization"] = f"Bearer {key}"
        return headers


def _dev_base(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


class Upstreams:
    """Every provider's upstream, from the settings."""

    def __init__(self, settings: LlmProxySettings):
        keys = {
            Provider.ANTHROPIC: settings.anthropic_api_key.get_secret_value(),
            Provider.OPENAI: settings.openai_api_key.get_secret_value(),
            Provider.GOOGLE: settings.google_api_key.get_secret_value(),
        }
        bases = {
            Provider.ANTHROPIC: settings.anthropic_api_base,
            Provider.OPENAI: settings.openai_api_base,
            Provider.GOOGLE: settings.google_api_base,
        }
        if settings.dev_llm_base_url:
            # The stand-in serves every provider and accepts any key.
            dev = _dev_base(settings.dev_llm_base_url)
            bases = dict.fromkeys(bases, dev)
            keys = {p: key or "dev" for p, key in keys.items()}
        self._by_provider = {p: Upstream(p, bases[p], keys[p]) for p in Provider}

    def __getitem__(self, provider: Provider) -> Upstream:
        return self._by_provider[provider]
