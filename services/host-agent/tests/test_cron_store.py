"""The agent reads each gateway's cron store (OpenClaw's SQLite, in WAL mode)
to know its next due automation. Read while the gateway has it closed, SQLite
creates the store's `-wal` and `-shm` files for the reader; left the agent's,
they keep the gateway (another user) from opening its own store at the next
boot. Checked as the systemd unit runs the agent: not root, but allowed to
chown (SQLite itself gives the files back only when run as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .fake_gateway import add_cron_job

GATEWAY_UID = 1000  # the tenant container's user
AGENT_UID = 64_917

READ = """
import sys
from pathlib import Path
from yourclaw_host_agent.layout import UserPaths
from yourclaw_host_agent.sleep import SleepMarks
print(SleepMarks().next_due(UserPaths(Path(sys.argv[1]))))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the reader as the unit's user",
)
def test_reading_a_closed_store_leaves_its_files_to_the_gateway(tmp_path: Path):
    user = tmp_path / "user"
    due = int(time.time()) + 3600
    add_cron_job(user / "config", "reminder", due)  # closed: no -wal, no -shm
    for path in [user, *user.rglob("*")]:
        os.chown(path, GATEWAY_UID, GATEWAY_UID)
    db = user / "config" / "state" / "openclaw.sqlite"
    assert not db.with_name(db.name + "-shm").exists()

    read = subprocess.run(
        [
            "setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_UID}",
            "--clear-groups", "--inh-caps=-all,+chown,+dac_override",
            "--ambient-caps=-all,+chown,+dac_override",
            sys.executable, "-c", READ, str(user),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip

    assert int(float(read.stdout)) == due
    # What the read left beside the store is the gateway's, as the store is.
    sidecars = [db.with_name(db.name + s) for s in ("-wal", "-shm")]
    left = [p for p in sidecars if p.exists()]
    assert left, "SQLite left nothing: the case this guards is gone"
    assert {p.stat().st_uid for p in left} == {GATEWAY_UID}
