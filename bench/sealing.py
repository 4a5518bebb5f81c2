"""Benchmark: what sealing a create to its host costs, beside a clear create.

A real rendered spec (`build_spec`: openclaw.json with every provider, the
instructions twice), handled the way each side handles a create:

- baseline: the provisioner serialises `CreateContainer` in clear, the host
  parses it (what every create cost before sealing);
- sealed: the provisioner seals the spec to the host's key and serialises it,
  the host parses it and opens it.

Prints the median time per create over BENCH_ROUNDS rounds of BENCH_CREATES
creates, and the payload sizes.

    uv run python bench/sealing.py
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable

from yourclaw_common.events import CreateContainer
from yourclaw_common.sealing import HostKey, seal_spec
from yourclaw_provisioner.render import GatewaySecrets, build_spec

CREATES = int(os.environ.get("BENCH_CREATES", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def per_create(step: Callable[[], object]) -> float:
    """Median seconds per call over ROUNDS rounds of CREATES calls."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CREATES):
            step()
        rounds.append((time.perf_counter() - started) / CREATES)
    return statistics.median(rounds)


def main() -> None:
    spec = build_spec(
        user_id=uuid.uuid4(),
        assistant_id=uuid.uuid4(),
        port=19100,
        model="anthropic/claude-sonnet-4-5-20250929",
        secrets=GatewaySecrets(
            gateway_token="t" * 43,
            notify_secret="n" * 43,
            proxy_token="ycp_" + "p" * 43,
        ),
        llm_proxy_url="http://llm-proxy.test:8790",
        image="yourclaw-openclaw:latest",
    )
    host = HostKey.generate()

    def clear() -> object:
        data = CreateContainer(spec=spec, generation=1).model_dump_json().encode()
        return CreateContainer.model_validate_json(data).spec

    def sealed() -> object:
        command = CreateContainer(spec=seal_spec(spec, host.public_key), generation=1)
        data = command.model_dump_json().encode()
        return host.open_spec(CreateContainer.model_validate_json(data).spec)

    assert sealed() == clear() == spec
    clear_bytes = len(CreateContainer(spec=spec).model_dump_json())
    sealed_bytes = len(
        CreateContainer(spec=seal_spec(spec, host.public_key)).model_dump_json()
    )
    baseline = per_create(clear)
    cost = per_create(sealed)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; {ROUNDS} rounds of {CREATES} creates\n"
        f"clear create (baseline):  {baseline * 1e6:8.1f} µs  {clear_bytes:,} bytes\n"
        f"sealed create:            {cost * 1e6:8.1f} µs  {sealed_bytes:,} bytes\n"
        f"sealing adds {(cost - baseline) * 1e6:.1f} µs per create "
        f"({cost / baseline:.2f}x the clear path)"
    )


if __name__ == "__main__":
    main()
