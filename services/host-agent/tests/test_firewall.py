"""What the tenant firewall's rules say (applied on the real engine in
tests/test_containers.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from yourclaw_host_agent.firewall import EgressAllow, TenantFirewallPlan, resolvers
from yourclaw_host_agent.settings import HostAgentSettings


def _rules(plan: TenantFirewallPlan, chain: str) -> list[str]:
    return [" ".join(r) for r in plan.rules()[chain]]


class TestTenantFirewallPlan:
    def test_metadata_private_and_host_networks_are_dropped_then_internet_passes(
        self,
    ):
        plan = TenantFirewallPlan(
            bridge="yc-tenants", host_networks=["192.0.2.0/24", "10.1.0.0/16"]
        )

        fwd = _rules(plan, "YC-FWD-yc-tenants")

        assert fwd[0].startswith("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
        for net in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.0.2.0/24"):
            assert any(r.startswith(f"-d {net} -j DROP") for r in fwd), net
        # 10.1.0.0/16 is inside 10.0.0.0/8: not listed twice.
        assert not any("10.1.0.0/16" in r for r in fwd)
        assert fwd[-1].startswith("-j RETURN")

    def test_only_the_allowed_host_ports_reach_the_host(self):
        plan = TenantFirewallPlan(bridge="yc-tenants", host_ports=[8790])

        inp = _rules(plan, "YC-IN-yc-tenants")

        assert [r.split(" -m comment")[0] for r in inp] == [
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-p tcp --dport 8790 -j ACCEPT",
            "-j DROP",
        ]

    def test_allowed_endpoints_and_resolvers_come_before_the_drops(self):
        plan = TenantFirewallPlan(
            bridge="yc-t",
            egress_allow=[EgressAllow.parse("10.0.5.7:8790")],
            dns_servers=["10.255.255.53"],
        )

        fwd = _rules(plan, "YC-FWD-yc-t")
        first_drop = next(i for i, r in enumerate(fwd) if "-j DROP" in r)

        allowed = [r.split(" -m comment")[0] for r in fwd[1:first_drop]]
        assert allowed == [
            "-d 10.255.255.53 -p udp --dport 53 -j RETURN",
            "-d 10.255.255.53 -p tcp --dport 53 -j RETURN",
            "-d 10.0.5.7 -p tcp --dport 8790 -j RETURN",
        ]

    def test_jumps_name_the_bridge(self):
        plan = TenantFirewallPlan(bridge="yc-tenants")

        assert plan.jumps() == [
            ("DOCKER-USER", ["-i", "yc-tenants", "-j", "YC-FWD-yc-tenants"]),
            ("INPUT", ["-i", "yc-tenants", "-j", "YC-IN-yc-tenants"]),
        ]


class TestSettings:
    def test_comma_lists(self):
        settings = HostAgentSettings(
            _env_file=None,  # type: ignore[call-arg]
            tenant_host_ports="8790,8791",
            tenant_egress_allow="10.0.5.7:8790, 10.9.0.0/24",
        )

        assert settings.tenant_host_ports == [8790, 8791]
        assert settings.tenant_egress_allow == ["10.0.5.7:8790", "10.9.0.0/24"]

    def test_a_bad_egress_entry_is_refused_with_a_sentence(self):
        with pytest.raises(ValidationError, match="is not an IPv4 address"):
            HostAgentSettings(
                _env_file=None,  # type: ignore[call-arg]
                tenant_egress_allow="metadata.internal",
            )

    def test_docker_is_the_default_runtime(self):
        assert HostAgentSettings(_env_file=None).host_runtime == "docker"  # type: ignore[call-arg]

    def test_production_refuses_the_process_runtime(self):
        with pytest.raises(ValidationError, match="for YOURCLAW_ENV=dev only"):
            HostAgentSettings(_env_file=None, host_runtime="process")  # type: ignore[call-arg]
        dev = HostAgentSettings(
            _env_file=None,  # type: ignore[call-arg]
            host_runtime="process",
            yourclaw_env="dev",
        )
        assert dev.host_runtime == "process"


def test_resolvers_reads_ipv4_name_servers(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# c\nnameserver 10.255.255.53\nnameserver ::1\nsearch x\n")

    assert resolvers(conf) == ["10.255.255.53"]
