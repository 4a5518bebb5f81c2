"""What the benchmarks set up alike: embedded NATS and PostgreSQL (or the ones
NATS_URL / DATABASE_URL name), migrated, in a temporary directory; the
provisioner's environment; child processes waited for and stopped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
from yourclaw_common.crypto import generate_key
from yourclaw_common.db import migrate
from yourclaw_common.embedded import LocalInfra, local_infra

__all__ = ["bench_infra", "provisioner_env", "stop", "wait_http"]


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
