"""Swap for the deep-sleep tests and bench on a machine that has none.

Deep sleep moves a frozen gateway's memory to the host's swap (docs/sleep.md);
a development machine often has no swap at all. `host_swap` adds a swap file
for the duration (root only, under `folder`, never a tmpfs) and removes it
after; a host with enough free swap already is left alone. `host_zram` does
the same with the kernel's compressed RAM disk (zram) instead of a file: a
page comes back in microseconds instead of a disk read, and what a sleeper
gives up still costs its compressed size in RAM (`zram_used_mb`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

__all__ = ["SwapUnavailable", "host_swap", "host_zram", "zram_used_mb"]

_MIB = 1024 * 1024
_ZRAM = Path("/sys/block/zram0")
_ZRAM_DEVICE = Path("/dev/zram0")


class SwapUnavailable(RuntimeError):
    """This machine has too little swap, and it cannot add any (why)."""


def _need_root(why: str) -> None:
    """SwapUnavailable(`why`) unless this process may add swap."""
    if os.geteuid() != 0 or shutil.which("swapon") is None:
        raise SwapUnavailable(why)


@contextmanager
def host_swap(size_mb: int, folder: Path) -> Iterator[None]:
    """At least `size_mb` of free swap while inside; SwapUnavailable if the
    machine has less and no way to add a file (not root, no `swapon`, a
    kernel or file system that refuses one)."""
    if psutil.swap_memory().free >= size_mb * _MIB:
        yield
        return
    _need_root("deep sleep needs swap on the host, and root to add some")
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


@contextmanager
def host_zram(size_mb: int) -> Iterator[None]:
    """Swap of `size_mb` on the kernel's first zram disk while inside, at a
    priority above any other swap; SwapUnavailable when there is no unused
    zram disk or no root to set one up."""
    if not _ZRAM.is_dir() or not _ZRAM_DEVICE.exists():
        raise SwapUnavailable("this kernel has no zram disk (zram0)")
    if int((_ZRAM / "disksize").read_text()) != 0:
        raise SwapUnavailable("zram0 is in use already")
    _need_root("zram swap needs root to set it up")
    (_ZRAM / "disksize").write_text(f"{size_mb}M")
    try:
        subprocess.run(["mkswap", _ZRAM_DEVICE], check=True, capture_output=True)
        added = subprocess.run(
            ["swapon", "-p", "100", _ZRAM_DEVICE], capture_output=True, text=True
        )
        if added.returncode != 0:
            raise SwapUnavailable(f"zram0 refused as swap: {added.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["swapoff", _ZRAM_DEVICE], check=False)
    finally:
        (_ZRAM / "reset").write_text("1")


def zram_used_mb() -> float:
    """RAM the zram disk takes now, compressed pages and its own bookkeeping
    (`mem_used_total` of mm_stat); 0 without one."""
    try:
        fields = (_ZRAM / "mm_stat").read_text().split()
    except OSError:
        return 0.0
    return int(fields[2]) / _MIB
