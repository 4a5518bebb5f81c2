"""What the benchmarks set up alike: embedded NATS and PostgreSQL (or the ones
NATS_URL / DATABASE_URL name), migrated, in a temporary directory; the
provisioner's environment; child processes waited for and stopped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop
from yourclaw_common.crypto import generate_key
from yourclaw_common.db import migrate
from yourclaw_common.embedded import LocalInfra, free_port, local_infra

__all__ = [
    "Edge",
    "bench_infra",
    "provisioner_env",
    "run_edge",
    "stop",
    "wait_http",
]


@contextmanager
def bench_infra(
    prefix: str, database: str, *, fast: bool = True, migrated: bool = True
) -> Iterator[tuple[Path, LocalInfra]]:
    """NATS and PostgreSQL for one benchmark run, and a directory for its files
    (removed afterwards). `fast` turns fsync and synchronous commit off."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_dir:
        tmp = Path(tmp_dir)
        os.chmod(tmp, 0o755)  # readable by the PostgreSQL user when run as root
        with local_infra(
            tmp,
            nats_url=os.environ.get("NATS_URL"),
            database_url=os.environ.get("DATABASE_URL"),
            database=database,
            fast=fast,
        ) as infra:
            if migrated:
                asyncio.run(_migrate(infra.database_url))
            yield tmp, infra


def provisioner_env(infra: LocalInfra) -> dict[str, str]:
    """The environment the benchmarks run the provisioner (and host agent) with."""
    return {
        **os.environ,
        "NATS_URL": infra.operator_url,
        "DATABASE_URL": infra.database_url,
        "ENCRYPTION_KEY": generate_key(),
        "SERVICE_NAME": "provisioner",
        "LOG_LEVEL": "WARNING",
        "RUN_MIGRATIONS": "false",
        "METRICS_PORT": "0",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
    }


@dataclass(frozen=True)
class Edge:
    """A running edge: gateway-api's URL, the stand-ins' URL, the database
    and the encryption key the services share."""

    api: str
    standins: str
    database_url: str
    key: str


def run_edge(
    prefix: str,
    database: str,
    run: Callable[[Edge], Coroutine[Any, Any, None]],
    *,
    twilio: tuple[str, str],
    assistant_token: str,
    env: Callable[[Edge], dict[str, str]] = lambda edge: {},
    standins: tuple[list[str], str] | None = None,
    replicas: int = 1,
) -> None:
    """Run `run` against gateway-api, `replicas` messaging processes and the
    stand-ins, on durable NATS and PostgreSQL (fsync on, migrated by the
    services, as in production); stop them all afterwards.

    `twilio` is the account sid and auth token, `assistant_token` what the
    assistant stand-in accepts, `env` the settings on top of the defaults
    (webhook and send-rate limits off, logs at WARNING), `standins` the
    stand-ins' command and health path (default `_standins.py`).
    """
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with bench_infra(prefix, database, fast=False, migrated=False) as (_, infra):
            api_port, standin_port = free_port(), free_port()
            edge = Edge(
                api=f"http://127.0.0.1:{api_port}",
                standins=f"http://127.0.0.1:{standin_port}",
                database_url=infra.database_url,
                key=generate_key(),
            )
            account_sid, auth_token = twilio
            environ = {
                **os.environ,
                "NATS_URL": infra.operator_url,
                "DATABASE_URL": infra.database_url,
                "ENCRYPTION_KEY": edge.key,
                "LOG_LEVEL": "WARNING",
                "API_HOST": "127.0.0.1",
                "API_PORT": str(api_port),
                "PUBLIC_BASE_URL": edge.api,
                "WEBHOOK_RATE_LIMIT_PER_SECOND": "0",
                "TWILIO_ACCOUNT_SID": account_sid,
                "TWILIO_AUTH_TOKEN": auth_token,
                "TWILIO_API_BASE": edge.standins,
                "BENCH_STANDIN_PORT": str(standin_port),
                "BENCH_ASSISTANT_TOKEN": assistant_token,
                "TWILIO_SEND_RATE_PER_SECOND": "100000",
                "METRICS_PORT": "0",
                **env(edge),
            }
            command, health = standins or (
                [sys.executable, str(Path(__file__).with_name("_standins.py"))],
                "/health",
            )
            procs.append(subprocess.Popen(command, env=environ))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "yourclaw_gateway_api"], env=environ
                )
            )
            asyncio.run(wait_http(edge.standins + health))
            asyncio.run(wait_http(f"{edge.api}/healthz"))
            procs.extend(
                subprocess.Popen(
                    [sys.executable, "-m", "yourclaw_messaging"], env=environ
                )
                for _ in range(replicas)
            )
            try:
                uvloop.run(run(edge))
            finally:
                # Before NATS and PostgreSQL go away.
                stop(procs)
    finally:
        stop(procs)


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def wait_http(url: str, timeout: float = 60) -> None:
    """Until `url` answers 200, or SystemExit after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout:.0f} s")


def stop(procs: list[subprocess.Popen[bytes]], *, timeout: float = 15) -> None:
    """SIGTERM to every process still running, then SIGKILL to any that outlives
    `timeout` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
