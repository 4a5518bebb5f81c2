"""Fixtures of the cross-service tests that run the real OpenClaw gateway."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from yourclaw_host_agent.install_openclaw import DEFAULT_OPENCLAW_HOME, ensure_openclaw
from yourclaw_host_agent.layout import DataLayout
from yourclaw_host_agent.runtimes.process import ProcessRuntime

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def openclaw_dir() -> Path:
    """The pinned openclaw `make openclaw` installed (installed here if missing)."""
    configured = os.environ.get("OPENCLAW_INSTALL_DIR")
    home = Path(configured) if configured else REPO / DEFAULT_OPENCLAW_HOME
    ensure_openclaw(home)
    return home.resolve()


@pytest_asyncio.fixture(loop_scope="session")
async def gateway_host_dir(tmp_path: Path, openclaw_dir: Path) -> AsyncIterator[Path]:
    """A host-agent's data dir; after the test, every gateway under it is stopped.

    Gateways outlive their host-agent by design, and a provisioner's reconcile
    can re-create one the test removed: sweeping from disk once everything has
    stopped is what keeps a 1.3 GB gateway from outliving the test run.
    """
    data_dir = tmp_path / "host"
    yield data_dir
    runtime = ProcessRuntime(
        DataLayout(data_dir.resolve()),
        openclaw_dir=openclaw_dir,
        install=False,
        stop_timeout=10,
    )
    for info in await runtime.list():
        await runtime.remove(info.name)
    await runtime.close()  # and warm spares
