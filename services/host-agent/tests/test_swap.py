"""Deep sleep's swap-out on cgroup v2, against a stand-in cgroup tree (the
development machine runs cgroup v1, which tests/test_sleep_containers.py covers on
the real engine): the container's limits end as they were, whatever the
kernel answers. The major-fault count the benchmark reads is also read from
this machine's own kernel."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
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
