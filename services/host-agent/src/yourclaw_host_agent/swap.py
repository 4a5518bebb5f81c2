"""Moving a frozen gateway's memory to the host's swap (docs/sleep.md, "Deep
sleep: swapped").

A frozen gateway touches none of its memory, so the kernel can write it to
swap and give the RAM to others; a thaw faults back in only the pages the next
turn touches. Tenant containers run with no swap of their own (the engine's
MemorySwap equals Memory), so for the move the container's cgroup is allowed
swap, asked to reclaim, and put back as it was:

- cgroup v2: `memory.swap.max` to `max`, `memory.reclaim` of everything it
  holds, `memory.swap.max` back;
- cgroup v1: `memory.memsw.limit_in_bytes` lifted, `memory.limit_in_bytes`
  lowered to 1 MiB (the kernel reclaims what it can, then refuses the limit:
  EBUSY) and both put back.

Before the reclaim, each process's anonymous memory is written out in address
order (process_madvise with MADV_PAGEOUT; the reclaim takes what is left). The
reclaim alone writes it in the order of the kernel's LRU lists, scattered over
swap in runs of a few pages, and a wake that reads it back in address order
then waits for tens of thousands of small reads; written in address order, it
comes back in runs several times longer. (A page read back at a wake keeps its
slot while it stays in swap's cache, so later sleeps mostly keep the order.)

The limits end as they were: what the thawed gateway faults back in counts
against its usual limit, and it cannot swap while awake. At a wake `swap_in`
asks the kernel to read everything back in one go (process_madvise with
MADV_WILLNEED on each process's anonymous memory), so the first turn does
not fault its pages in 4 KB at a time. Needs the host's
/proc and write access to its cgroup filesystem at /sys/fs/cgroup (root, or
CAP_DAC_OVERRIDE); without, it answers None (and says so once in the log) and
the caller stops the gateway instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import psutil
from yourclaw_common.logging import get_logger

__all__ = [
    "Swapped",
    "major_faults",
    "swap_free_bytes",
    "swap_in",
    "swap_out",
    "swap_slots",
    "usage",
]

log = get_logger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")
_denied_logged = False
_V1_FLOOR = str(1 << 20)
_PAGE = 4096


@dataclass(frozen=True)
class Swapped:
    """A gateway's memory after the move, in bytes."""

    swapped: int  # in swap
    resident: int  # still in RAM (what the kernel could not write out)


def swap_free_bytes() -> int:
    """Free swap on the host (0 without swap)."""
    return int(psutil.swap_memory().free)


def _memory_cgroup(pid: int) -> tuple[Path, int] | None:
    """The memory cgroup directory of `pid` and the cgroup version."""
    for line in (PROC_ROOT / str(pid) / "cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            v2 = CGROUP_ROOT / path.lstrip("/")
            if (v2 / "memory.reclaim").exists():
                return v2, 2
        elif "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/"), 1
    return None


def _stat(directory: Path) -> dict[str, int]:
    stats: dict[str, int] = {}
    for line in (directory / "memory.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.isdigit():
            stats[key] = int(value)
    return stats


def _resident(directory: Path, version: int) -> int:
    stats = _stat(directory)
    # Anonymous memory and tmpfs: what only swap can take.
    if version == 2:
        return stats.get("anon", 0) + stats.get("shmem", 0)
    return stats.get("rss", 0) + stats.get("shmem", 0)


def _write(path: Path, value: str, *, refused_ok: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        if not (refused_ok and exc.errno in (errno.EBUSY, errno.EAGAIN)):
            raise


def _moved(directory: Path, version: int) -> Swapped | None:
    """Where its memory is after a move; None when most of it stayed."""
    after = Swapped(
        swapped=_in_swap(directory, version), resident=_resident(directory, version)
    )
    return after if after.swapped > after.resident else None


def swap_out(pid: int, *, keep_free: int) -> Swapped | None:
    """Move the memory of the frozen cgroup `pid` is in to swap, if the host's
    free swap stays above `keep_free` bytes after it; None when it cannot
    (no swap room, no cgroup access, a kernel without the files, most of it
    still in RAM after)."""
    try:
        found = _memory_cgroup(pid)
        if found is None:
            return None
        directory, version = found
        if swap_free_bytes() - _resident(directory, version) < keep_free:
            return None
        _advise(directory, _MADV_PAGEOUT)  # what it cannot, the reclaim takes
        if version == 2:
            swap_max = directory / "memory.swap.max"
            before = swap_max.read_text().strip()
            _write(swap_max, "max")
            try:
                current = (directory / "memory.current").read_text().strip()
                _write(directory / "memory.reclaim", current, refused_ok=True)
            finally:
                _write(swap_max, before)
            return _moved(directory, 2)
        limit = directory / "memory.limit_in_bytes"
        memsw = directory / "memory.memsw.limit_in_bytes"
        before_limit = limit.read_text().strip()
        before_memsw = memsw.read_text().strip() if memsw.exists() else None
        if before_memsw is not None:
            _write(memsw, "-1")
        try:
            _write(limit, _V1_FLOOR, refused_ok=True)
        finally:
            # The memory limit first: memsw may never be below it.
            _write(limit, before_limit)
            if before_memsw is not None:
                _write(memsw, before_memsw)
        return _moved(directory, 1)
    except PermissionError as exc:
        global _denied_logged
        if not _denied_logged:
            _denied_logged = True
            log.warning(
                "host_agent.swap.denied",
                error=str(exc),
                message="no write access to the tenants' cgroups: idle "
                "gateways are stopped instead of swapped (docs/sleep.md)",
            )
        return None
    except (OSError, ValueError):
        return None


# process_madvise(2) (440 on every architecture). MADV_PAGEOUT writes the
# pages out to swap now, in the order given; MADV_WILLNEED starts reading
# swapped pages back (swap readahead), so a thawed gateway finds its memory
# coming in as one bulk read instead of faulting it in 4 KB at a time.
_SYS_PROCESS_MADVISE = 440
_MADV_WILLNEED = 3
_MADV_PAGEOUT = 21
_IOV_MAX = 1024


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _anonymous_ranges(pid: int) -> list[tuple[int, int]]:
    """(start, length) of the process's private writable memory without a
    file behind it: its heap, stack and anonymous mappings (V8's spaces)."""
    ranges = []
    for line in (PROC_ROOT / str(pid) / "maps").read_text().splitlines():
        fields = line.split()
        name = fields[5] if len(fields) > 5 else ""
        if not fields[1].startswith("rw") or name not in ("", "[heap]", "[stack]"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        ranges.append((start, end - start))
    return ranges


def usage(pid: int) -> Swapped | None:
    """How much of the memory of `pid`'s cgroup is in swap and in RAM now;
    None when it cannot tell."""
    try:
        found = _memory_cgroup(pid)
        if found is None:
            return None
        return Swapped(swapped=_in_swap(*found), resident=_resident(*found))
    except (OSError, ValueError):
        return None


def major_faults(pid: int) -> int | None:
    """How many times the processes of `pid`'s memory cgroup have waited for
    a page from disk or swap so far; None when it cannot tell."""
    try:
        found = _memory_cgroup(pid)
        if found is None:
            return None
        directory, version = found
        return _stat(directory).get(
            "pgmajfault" if version == 2 else "total_pgmajfault"
        )
    except (OSError, ValueError):
        return None


def _in_swap(directory: Path, version: int) -> int:
    if version == 2:
        return int((directory / "memory.swap.current").read_text())
    return _stat(directory).get("swap", 0)


def swap_in(pid: int) -> int:
    """Ask the kernel to read back what every process in `pid`'s memory
    cgroup has in swap; how many bytes of mappings were advised (0 when
    nothing is in swap, or it cannot: no access, a kernel without
    process_madvise)."""
    try:
        found = _memory_cgroup(pid)
        if found is None or not _in_swap(*found):
            return 0
    except (OSError, ValueError):
        return 0
    return _advise(found[0], _MADV_WILLNEED)


def _advise(directory: Path, behaviour: int) -> int:
    """process_madvise(`behaviour`) over the anonymous memory of every process
    in the cgroup `directory`, in address order; how many bytes were advised
    (what it cannot, a process gone or no access, it leaves out)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long  # bytes advised: past 2 GB too
    advised = 0
    try:
        members = (directory / "cgroup.procs").read_text().split()
    except OSError:
        return 0
    for member in members:
        try:
            ranges = _anonymous_ranges(int(member))
            pidfd = os.pidfd_open(int(member))
        except (OSError, ValueError):
            continue
        try:
            for at in range(0, len(ranges), _IOV_MAX):
                chunk = ranges[at : at + _IOV_MAX]
                vector = (_Iovec * len(chunk))(
                    *(_Iovec(start, length) for start, length in chunk)
                )
                done = libc.syscall(
                    _SYS_PROCESS_MADVISE, pidfd, vector, len(chunk), behaviour, 0
                )
                if done < 0:
                    break
                advised += done
        finally:
            os.close(pidfd)
    return advised


def swap_slots(pid: int) -> list[int]:
    """The swap slots of `pid`'s swapped pages, in address order (its
    anonymous memory, what the page-out and the read-back cover).
    Consecutive slots are read back as one read. Slots show to root only
    (CAP_SYS_ADMIN); without, every slot reads 0."""
    slots = []
    with open(PROC_ROOT / str(pid) / "pagemap", "rb") as pagemap:
        for start, length in _anonymous_ranges(pid):
            pagemap.seek(start // _PAGE * 8)
            entries = pagemap.read(length // _PAGE * 8)
            for (entry,) in struct.iter_unpack("Q", entries):
                if entry >> 62 & 1:  # swapped; its slot in bits 5-54
                    slots.append(entry >> 5 & ((1 << 50) - 1))
    return slots
