"""The host firewall around tenant containers (docker runtime).

Every tenant container sits on one bridge (`yc-tenants`, inter-container
traffic off). Two chains of our own keep it from everything but the internet
and the LLM proxy:

- `YC-FWD-<bridge>`, jumped to from Docker's `DOCKER-USER` (traffic the host
  routes for a tenant): replies pass; the allowed platform endpoints pass; the
  cloud metadata range, link-local, every private, shared and reserved range
  and the host's own networks are dropped; the rest (the internet) passes.
- `YC-IN-<bridge>`, jumped to from `INPUT` for the tenant bridge (traffic to the
  host itself: NATS, PostgreSQL, the services, the Docker API): replies pass,
  the allowed host ports (the LLM proxy's tenant-facing port) pass, the rest is
  dropped.

The rules are written whole at every start (idempotent: our chains are flushed
and refilled, the jumps added once), and `remove` deletes only our own chains
and jumps. Docker's own chains are never edited.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from yourclaw_common.logging import get_logger

from yourclaw_host_agent.errors import RuntimeFailure

__all__ = [
    "BLOCKED_RANGES",
    "EgressAllow",
    "Firewall",
    "TenantFirewallPlan",
    "local_networks",
    "resolvers",
]

log = get_logger(__name__)

_COMMENT = "yourclaw tenant firewall"

# Never reachable from a tenant: the metadata service (169.254.169.254 on every
# major cloud) and link-local, the private ranges (other hosts, the cluster,
# the database), shared address space, loopback, multicast and reserved space.
BLOCKED_RANGES: tuple[str, ...] = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)


@dataclass(frozen=True)
class EgressAllow:
    """A platform endpoint a tenant may reach although its range is blocked."""

    address: str  # an IPv4 address or network
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> EgressAllow:
        """`10.0.5.7:8790` or `10.0.5.0/24` (any port)."""
        host, sep, port = text.strip().rpartition(":")
        if not sep or "/" in port:
            host, port = text.strip(), ""
        ipaddress.ip_network(host, strict=False)  # raises ValueError when bad
        return cls(address=host, port=int(port) if port else None)


@dataclass(frozen=True)
class TenantFirewallPlan:
    """What the rules must say; `rules()` is pure so tests can read it."""

    bridge: str
    host_ports: Sequence[int] = ()
    egress_allow: Sequence[EgressAllow] = ()
    host_networks: Sequence[str] = field(default_factory=tuple)
    # The host's resolvers: Docker's embedded DNS forwards a tenant's lookups
    # from the tenant's own network namespace, so they cross this firewall.
    dns_servers: Sequence[str] = ()

    def blocked(self) -> list[str]:
        """Ranges dropped on the way out: the fixed list plus the host's own."""
        fixed = [ipaddress.IPv4Network(r) for r in BLOCKED_RANGES]
        extra = []
        for net in self.host_networks:
            network = ipaddress.ip_network(net, strict=False)
            if isinstance(network, ipaddress.IPv4Network) and not any(
                network.subnet_of(f) for f in fixed
            ):
                extra.append(network)
        return [str(n) for n in (*fixed, *extra)]

    @property
    def forward_chain(self) -> str:
        return f"YC-FWD-{self.bridge}"

    @property
    def input_chain(self) -> str:
        return f"YC-IN-{self.bridge}"

    def rules(self) -> dict[str, list[list[str]]]:
        """Each chain's rules, as `iptables -A <chain>` arguments."""
        tag = ["-m", "comment", "--comment", _COMMENT]
        fwd: list[list[str]] = [
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
        ]
        for server in self.dns_servers:
            for proto in ("udp", "tcp"):
                fwd.append(["-d", server, "-p", proto, "--dport", "53", "-j", "RETURN"])
        for allow in self.egress_allow:
            rule = ["-d", allow.address]
            if allow.port is not None:
                rule += ["-p", "tcp", "--dport", str(allow.port)]
            fwd.append([*rule, "-j", "RETURN"])
        fwd += [["-d", net, "-j", "DROP"] for net in self.blocked()]
        fwd.append(["-j", "RETURN"])
        inp: list[list[str]] = [
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ]
        inp += [
            ["-p", "tcp", "--dport", str(port), "-j", "ACCEPT"]
            for port in self.host_ports
        ]
        inp.append(["-j", "DROP"])
        return {
            self.forward_chain: [[*r, *tag] for r in fwd],
            self.input_chain: [[*r, *tag] for r in inp],
        }

    def jumps(self) -> list[tuple[str, list[str]]]:
        """(parent chain, rule) pairs that send the bridge's traffic to ours."""
        return [
            ("DOCKER-USER", ["-i", self.bridge, "-j", self.forward_chain]),
            ("INPUT", ["-i", self.bridge, "-j", self.input_chain]),
        ]


class Firewall:
    """Applies a TenantFirewallPlan with the `iptables` command (as root)."""

    def __init__(self, plan: TenantFirewallPlan, *, iptables: str = "iptables"):
        self.plan = plan
        self._iptables = iptables

    @staticmethod
    def available(iptables: str = "iptables") -> bool:
        """Whether the command exists (it needs root to run)."""
        return shutil.which(iptables) is not None

    async def _run(self, *args: str, check: bool = True) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            self._iptables,
            "-w",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace").strip()
        if check and proc.returncode != 0:
            raise RuntimeFailure(f"iptables {' '.join(args)}: {text[:300]}")
        return proc.returncode or 0, text

    async def apply(self) -> None:
        """Create or refill our chains, then make sure the jumps exist (first)."""
        for chain, rules in self.plan.rules().items():
            code, _ = await self._run("-N", chain, check=False)
            if code != 0:  # exists: refill it
                await self._run("-F", chain)
            for rule in rules:
                await self._run("-A", chain, *rule)
        for parent, rule in self.plan.jumps():
            code, _ = await self._run("-C", parent, *rule, check=False)
            if code != 0:
                await self._run("-I", parent, "1", *rule)
        log.info(
            "host_agent.firewall.applied",
            bridge=self.plan.bridge,
            host_ports=list(self.plan.host_ports),
            blocked=len(self.plan.blocked()),
        )

    async def remove(self) -> None:
        """Delete our jumps and chains; Docker's rules stay as they are."""
        for parent, rule in self.plan.jumps():
            while (await self._run("-D", parent, *rule, check=False))[0] == 0:
                pass
        for chain in self.plan.rules():
            await self._run("-F", chain, check=False)
            await self._run("-X", chain, check=False)

    async def listing(self) -> str:
        """`iptables -S` of our chains, for tests and operators."""
        parts = []
        for chain in self.plan.rules():
            parts.append((await self._run("-S", chain))[1])
        return "\n".join(parts)


def resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The IPv4 name servers the host (and so Docker's embedded DNS) uses."""
    found = []
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(parts[1]).version == 4:
                    found.append(parts[1])
    return found


def local_networks(skip: str) -> list[str]:
    """The IPv4 networks on the host's interfaces but the tenant bridge."""
    nets = []
    for iface, addrs in psutil.net_if_addrs().items():
        if iface == skip:
            continue
        for addr in addrs:
            if addr.family == socket.AF_INET and addr.netmask:
                nets.append(
                    str(
                        ipaddress.ip_network(
                            f"{addr.address}/{addr.netmask}", strict=False
                        )
                    )
                )
    return sorted(set(nets))
