"""Rate limits of the edge, cheap enough for the Twilio hot path: one dict lookup
and a little arithmetic per request, no lock (one event loop), no I/O.

Limits are per process: N workers or replicas allow up to N times the rate (the
load balancer spreads a client over them). Shared counters (PostgreSQL, NATS KV)
would cost a round trip per request; docs/security.md says what that leaves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from starlette.types import Scope, Send

from yourclaw_gateway_api.asgi import send_json

__all__ = ["ApiLimits", "ClientIp", "RateLimiter", "send_rate_limited"]

_Network = IPv4Network | IPv6Network


class RateLimiter:
    """Token buckets by key: `rate` tokens a second, at most `burst` saved up."""

    __slots__ = ("_buckets", "_burst", "_clock", "_max_keys", "_rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        # key -> [tokens left, when they were counted]
        self._buckets: dict[str, list[float]] = {}

    def waiting(self, key: str) -> float:
        """Like `retry_after`, but counts nothing: 0.0 when `key` has a token left."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = bucket[0] + (self._clock() - bucket[1]) * self._rate
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def retry_after(self, key: str) -> float:
        """0.0 when a request of `key` may go ahead now (and counts it), else the
        seconds until it may."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_idle(now)
            self._buckets[key] = [self._burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self._rate

    def _forget_idle(self, now: float) -> None:
        # A bucket that has refilled holds no information: drop those first, and
        # if a flood of distinct keys left none idle, start over rather than grow.
        full = self._burst / self._rate
        idle = [k for k, (_, at) in self._buckets.items() if now - at >= full]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()


def _per_minute(per_minute: float, burst: int) -> RateLimiter | None:
    return RateLimiter(per_minute / 60.0, burst) if per_minute > 0 else None


class ApiLimits:
    """The budgets of `/api/v1` (webhooks aside), each None when set to 0: every
    request by client IP and by signed-in user, and the sensitive routes (phone,
    keys, checkout, portal, dev sign-in) by both again, far tighter."""

    __slots__ = ("ip", "sensitive_ip", "sensitive_user", "user")

    def __init__(
        self,
        *,
        ip: RateLimiter | None = None,
        user: RateLimiter | None = None,
        sensitive_ip: RateLimiter | None = None,
        sensitive_user: RateLimiter | None = None,
    ):
        self.ip = ip
        self.user = user
        self.sensitive_ip = sensitive_ip
        self.sensitive_user = sensitive_user

    @classmethod
    def per_minute(
        cls,
        *,
        ip: tuple[float, int],
        user: tuple[float, int],
        sensitive_ip: tuple[float, int],
        sensitive_user: tuple[float, int],
    ) -> ApiLimits:
        """From (requests a minute, burst) pairs; 0 a minute turns one off."""
        return cls(
            ip=_per_minute(*ip),
            user=_per_minute(*user),
            sensitive_ip=_per_minute(*sensitive_ip),
            sensitive_user=_per_minute(*sensitive_user),
        )


class ClientIp:
    """The client's IP of a request: the socket peer, or, when the peer is a
    trusted proxy, the nearest untrusted address in X-Forwarded-For."""

    __slots__ = ("_known", "_trusted")

    def __init__(self, trusted_proxies: str = ""):
        self._trusted: tuple[_Network, ...] = tuple(
            ip_network(item.strip(), strict=False)
            for item in trusted_proxies.split(",")
            if item.strip()
        )
        # Parsing an address costs ~10 µs; the proxies' and clients' recur.
        self._known: dict[str, bool] = {}

    def __call__(self, scope: Scope) -> str:
        client = scope.get("client")
        peer: str = client[0] if client else ""
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded.extend(v.strip() for v in value.decode("latin-1").split(","))
        # Right to left: the rightmost entries were added by our own proxies; the
        # first one they did not add is the client (anything left of it is claimed
        # by the client and can be forged).
        for hop in reversed(forwarded):
            if hop and not self._is_trusted(hop):
                return hop
        return peer

    def _is_trusted(self, address: str) -> bool:
        known = self._known.get(address)
        if known is not None:
            return known
        try:
            ip = ip_address(address)
        except ValueError:
            trusted = False
        else:
            trusted = any(ip in network for network in self._trusted)
        if len(self._known) >= 10_000:
            self._known.clear()
        self._known[address] = trusted
        return trusted


async def send_rate_limited(send: Send, retry_after: float) -> None:
    """Answer 429 `{"detail","code"}` with Retry-After in whole seconds."""
    seconds = str(max(1, math.ceil(retry_after))).encode()
    await send_json(
        send,
        429,
        {"detail": "too many requests, retry later", "code": "RATE_LIMITED"},
        [(b"retry-after", seconds)],
    )
