"""The bench's zram swap: it never takes a zram disk that is in use, and it
reads what the disk costs in RAM. (Setting one up changes the machine's swap
for every process, so only `bench/density.py` does that.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from yourclaw_devkit import swapfile


@pytest.fixture
def zram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    disk = tmp_path / "zram0"
    disk.mkdir()
    device = tmp_path / "dev-zram0"
    device.touch()
    monkeypatch.setattr(swapfile, "_ZRAM", disk)
    monkeypatch.setattr(swapfile, "_ZRAM_DEVICE", device)
    return disk


def test_a_zram_disk_in_use_is_left_alone(zram: Path):
    (zram / "disksize").write_text("4294967296\n")

    with (
        pytest.raises(swapfile.SwapUnavailable, match="in use"),
        swapfile.host_zram(512),
    ):
        pass

    assert (zram / "disksize").read_text() == "4294967296\n"
    assert not (zram / "reset").exists()


def test_no_zram_disk_is_said(zram: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(swapfile, "_ZRAM", zram / "absent")

    with (
        pytest.raises(swapfile.SwapUnavailable, match="no zram disk"),
        swapfile.host_zram(512),
    ):
        pass
    assert swapfile.zram_used_mb() == 0.0


def test_what_zram_holds_in_ram_is_read_from_its_stats(zram: Path):
    # mm_stat: orig_data_size compr_data_size mem_used_total … (bytes)
    (zram / "mm_stat").write_text(
        f"{700 << 20} {230 << 20} {241 << 20} 0 {241 << 20} 12 0 0 0\n"
    )

    assert swapfile.zram_used_mb() == 241.0
