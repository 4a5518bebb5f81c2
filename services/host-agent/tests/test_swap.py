"""Deep sleep's swap-out on cgroup v2, against a stand-in cgroup tree (the
development machine runs cgroup v1, which tests/test_sleep_containers.py covers on
the real engine): the container's limits end as they were, whatever the
kernel answers. The major-fault count the benchmark reads is also read from
this machine's own kernel."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from yourclaw_devkit import swapfile
from yourclaw_host_agent import swap


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    proc, cgroups = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text("0::/system.slice/docker-abc.scope\n")
    group = cgroups / "system.slice" / "docker-abc.scope"
    group.mkdir(parents=True)
    for name, value in {
        "memory.swap.max": "0\n",
        "memory.current": "838860800\n",
        "memory.reclaim": "",
        # As the kernel leaves it after the reclaim: little left in RAM.
        "memory.stat": "anon 20971520\nshmem 10485760\nfile 94371840\n",
        "memory.swap.current": "723517440\n",
    }.items():
        (group / name).write_text(value)
    monkeypatch.setattr(swap, "PROC_ROOT", proc)
    monkeypatch.setattr(swap, "CGROUP_ROOT", cgroups)
    monkeypatch.setattr(swap, "swap_free_bytes", lambda: 4 << 30)
    return group


def test_a_frozen_gateway_is_swapped_and_its_limit_restored(v2: Path):
    moved = swap.swap_out(4242, keep_free=1 << 30)

    assert moved == swap.Swapped(swapped=723517440, resident=20971520 + 10485760)
    assert (v2 / "memory.reclaim").read_text() == "838860800"
    # Awake again it can swap no more than before.
    assert (v2 / "memory.swap.max").read_text().strip() == "0"


def test_the_limit_is_restored_when_the_kernel_refuses_the_reclaim(
    v2: Path, monkeypatch: pytest.MonkeyPatch
):
    written = Path.write_text

    def refusing(path: Path, data: str, *args, **kwargs) -> int:
        if path.name == "memory.reclaim":
            raise OSError(errno.EAGAIN, "could not reclaim it all")
        return written(path, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refusing)

    assert swap.swap_out(4242, keep_free=0) is not None
    assert (v2 / "memory.swap.max").read_text().strip() == "0"


def test_too_little_free_swap_leaves_it_alone(v2: Path):
    # 4 GiB free and 30 MiB to move: keeping all 4 GiB free is not possible.
    assert swap.swap_out(4242, keep_free=4096 << 20) is None
    assert (v2 / "memory.reclaim").read_text() == ""
    assert (v2 / "memory.swap.max").read_text().strip() == "0"


def test_no_access_answers_none(v2: Path, monkeypatch: pytest.MonkeyPatch):
    def denied(path: Path, data: str, *args, **kwargs) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Path, "write_text", denied)

    assert swap.swap_out(4242, keep_free=0) is None


def test_most_of_it_still_in_ram_after_is_no_swap_out(v2: Path):
    # The kernel moved little (swap full, memory it cannot write out): the
    # caller stops the gateway instead of counting it swapped.
    (v2 / "memory.stat").write_text("anon 734003200\nshmem 10485760\n")
    (v2 / "memory.swap.current").write_text("4096\n")

    assert swap.swap_out(4242, keep_free=0) is None
    assert (v2 / "memory.swap.max").read_text().strip() == "0"


def test_major_faults_are_read_from_the_cgroup(v2: Path):
    (v2 / "memory.stat").write_text("anon 20971520\npgfault 90210\npgmajfault 317\n")

    assert swap.major_faults(4242) == 317


def test_major_faults_on_this_machines_kernel():
    # The count the benchmark reads per turn: this kernel names it as the
    # code expects (cgroup v1 `total_pgmajfault`, v2 `pgmajfault`).
    if swap.usage(os.getpid()) is None:
        pytest.skip("no memory cgroup of this process to read here")
    faults = swap.major_faults(os.getpid())

    assert isinstance(faults, int)
    assert faults >= 0


_CHILD = """
import mmap, sys, time
memory = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for page in range(0, len(memory), 4096):
    memory[page : page + 8] = page.to_bytes(8, "little")
print("ready", flush=True)
time.sleep(120)
"""


def test_a_swap_out_writes_memory_out_in_address_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # On this machine's kernel: a process's anonymous memory goes to swap in
    # address order (the cgroup's reclaim alone writes it in LRU order), so a
    # wake that reads it back in address order reads long runs. The stand-in
    # cgroup reclaims nothing: what is in swap, the page-out wrote. Swap slots
    # show in pagemap to root.
    if os.geteuid() != 0:
        pytest.skip("swap slots in pagemap need root")
    folder = Path(__file__).resolve().parents[3] / ".data"
    try:
        with swapfile.host_swap(256, folder):
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True
            )
            try:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
                group = tmp_path / "cgroup" / "tenant"
                group.mkdir(parents=True)
                (group / "cgroup.procs").write_text(f"{child.pid}\n")
                (group / "memory.reclaim").write_text("")
                (group / "memory.swap.max").write_text("0\n")
                (group / "memory.current").write_text(f"{64 << 20}\n")
                (group / "memory.stat").write_text("anon 0\nshmem 0\n")
                (group / "memory.swap.current").write_text(f"{64 << 20}\n")
                proc = tmp_path / "proc" / str(child.pid)
                proc.mkdir(parents=True)
                (proc / "cgroup").write_text("0::/tenant\n")
                for name in ("maps", "pagemap"):
                    (proc / name).symlink_to(f"/proc/{child.pid}/{name}")
                monkeypatch.setattr(swap, "PROC_ROOT", tmp_path / "proc")
                monkeypatch.setattr(swap, "CGROUP_ROOT", tmp_path / "cgroup")

                swap.swap_out(child.pid, keep_free=0)

                slots = swap.swap_slots(child.pid)
            finally:
                child.kill()
                child.communicate()
    except swapfile.SwapUnavailable as exc:
        pytest.skip(str(exc))
    assert len(slots) >= (60 << 20) // 4096  # its 64 MB, all but a little
    # Each page's slot after the one before it: where other processes' pages
    # hold the slots between (a swap in use), the runs are shorter, but the
    # order holds.
    ascending = sum(b > a for a, b in pairwise(slots))
    assert ascending >= 0.99 * (len(slots) - 1)
