"""Swap for the deep-sleep tests and bench on a machine that has none.

Deep sleep moves a frozen gateway's memory to the host's swap (docs/sleep.md);
a development machine often has no swap at all. `host_swap` adds a swap file
for the duration (root only, under `folder`, never a tmpfs) and removes it
after; a host with enough free swap already is left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

__all__ = ["SwapUnavailable", "host_swap"]

_MIB = 1024 * 1024


class SwapUnavailable(RuntimeError):
    """This machine has too little swap, and it cannot add any (why)."""


@contextmanager
def host_swap(size_mb: int, folder: Path) -> Iterator[None]:
    """At least `size_mb` of free swap while inside; SwapUnavailable if the
    machine has less and no way to add a file (not root, no `swapon`, a
    kernel or file system that refuses one)."""
    if psutil.swap_memory().free >= size_mb * _MIB:
        yield
        return
    if os.geteuid() != 0 or shutil.which("swapon") is None:
        raise SwapUnavailable("deep sleep needs swap on the host, and root to add some")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"swap-{os.getpid()}"
    subprocess.run(["fallocate", "-l", f"{size_mb}M", str(path)], check=True)
    path.chmod(0o600)
    subprocess.run(["mkswap", str(path)], check=True, capture_output=True)
    added = subprocess.run(["swapon", str(path)], capture_output=True, text=True)
    if added.returncode != 0:
        path.unlink()
        raise SwapUnavailable(
            f"this machine refuses a swap file: {added.stderr.strip()}"
        )
    try:
        yield
    finally:
        subprocess.run(["swapoff", str(path)], check=False)
        path.unlink(missing_ok=True)
