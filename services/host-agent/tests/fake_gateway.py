"""A stand-in for `openclaw gateway --port <p> --bind loopback`: serves /healthz,
and /v1/models to a bearer of the token in $OPENCLAW_CONFIG_PATH as it is now
(OpenClaw hot-reloads a changed config the same way).

It starts a helper child in its own process group (as OpenClaw does), so tests
can check that stopping a gateway stops its whole group. Like OpenClaw 2026.9.6
it writes its session database on a turn (POST /v1/chat/completions:
`agents/main/agent/openclaw-agent.sqlite` under $OPENCLAW_STATE_DIR), and runs
the jobs of its cron store (`state/openclaw.sqlite`, table `cron_jobs`) when
due, so tests drive a host's idea of activity and schedule the real way. Env knobs:
FAKE_GATEWAY_DELAY (seconds before listening), FAKE_GATEWAY_UNREADY (seconds
after listening during which /readyz answers 503, as OpenClaw's does while it
boots), FAKE_GATEWAY_THAW_UNREADY (seconds during which /readyz answers 503
after the process was frozen, as OpenClaw's readiness waits behind its thaw
recovery), FAKE_GATEWAY_CRASH_ONCE (a path: when it does not exist, create it and
exit 1 after a moment).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# OpenClaw 2026.9.6's own table, as its gateway creates it in
# `state/openclaw.sqlite`.
CRON_JOBS_SCHEMA = """CREATE TABLE IF NOT EXISTS cron_jobs (
  store_key TEXT NOT NULL,
  job_id TEXT NOT NULL,
  declaration_key TEXT,
  owner_agent_id TEXT,
  name TEXT NOT NULL,
  description TEXT,
  enabled INTEGER NOT NULL,
  agent_id TEXT,
  payload_kind TEXT NOT NULL,
  job_json TEXT NOT NULL,
  grant_definition_revision TEXT,
  grant_definition_generation INTEGER,
  grant_definition_updated_at INTEGER,
  state_json TEXT NOT NULL DEFAULT '{}',
  runtime_updated_at_ms INTEGER,
  schedule_identity TEXT,
  sort_order INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (store_key, job_id)
) STRICT"""


def add_cron_job(
    state_dir: Path, name: str, due_at: float, *, declaration_key: str | None = None
) -> None:
    """A one-shot job due at `due_at` (Unix s), as `openclaw cron add --at`
    stores it; with `declaration_key`, one of OpenClaw's own."""
    db = state_dir / "state" / "openclaw.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(CRON_JOBS_SCHEMA)
        conn.execute(
            "INSERT INTO cron_jobs (store_key, job_id, declaration_key, name, "
            "enabled, payload_kind, job_json, state_json, updated_at) "
            "VALUES (?, ?, ?, ?, 1, 'command', '{}', ?, ?)",
            (
                str(state_dir / "cron" / "jobs.json"),
                f"job-{name}",
                declaration_key,
                name,
                json.dumps({"nextRunAtMs": int(due_at * 1000)}),
                int(time.time() * 1000),
            ),
        )
        conn.commit()
    finally:
        conn.close()


def cron_state(state_dir: Path, name: str) -> dict[str, object]:
    conn = sqlite3.connect(state_dir / "state" / "openclaw.sqlite")
    try:
        (state_json,) = conn.execute(
            "SELECT state_json FROM cron_jobs WHERE name = ?", (name,)
        ).fetchone()
    finally:
        conn.close()
    return dict(json.loads(state_json))


def _state_dir() -> Path:
    return Path(os.environ["OPENCLAW_STATE_DIR"])


def _turn() -> None:
    db = _state_dir() / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS transcript_events (at REAL)")
        conn.execute("INSERT INTO transcript_events VALUES (?)", (time.time(),))
        conn.commit()
    finally:
        conn.close()


def _run_due_jobs() -> None:
    db = _state_dir() / "state" / "openclaw.sqlite"
    while True:
        time.sleep(0.1)
        if not db.exists():
            continue
        try:
            conn = sqlite3.connect(db, timeout=1)
            try:
                rows = conn.execute(
                    "SELECT job_id, state_json FROM cron_jobs WHERE enabled = 1"
                ).fetchall()
                for job_id, state_json in rows:
                    state = json.loads(state_json or "{}")
                    due = state.get("nextRunAtMs")
                    if due is None or due > time.time() * 1000:
                        continue
                    # A one-shot job: it runs (a turn), and is done.
                    _turn()
                    state = {"lastRunAtMs": int(time.time() * 1000)}
                    conn.execute(
                        "UPDATE cron_jobs SET enabled = 0, state_json = ? "
                        "WHERE job_id = ?",
                        (json.dumps(state), job_id),
                    )
                conn.commit()
            finally:
                conn.close()
        except sqlite3.Error:
            continue


def _token() -> str | None:
    try:
        config = json.loads(Path(os.environ["OPENCLAW_CONFIG_PATH"]).read_text())
        return str(config["gateway"]["auth"]["token"])
    except (KeyError, OSError, TypeError, ValueError):
        return None


# Until then /readyz answers 503 (set once it listens, and after a freeze).
_READY_AT = 0.0
_THAW_UNREADY = float(os.environ.get("FAKE_GATEWAY_THAW_UNREADY", "0"))
_LAST_TICK = time.monotonic()
_TICKS = threading.Lock()


def _tick() -> None:
    """Notice a freeze, a gap in a 0.1 s tick, from whichever thread runs
    first after the thaw: readiness then waits FAKE_GATEWAY_THAW_UNREADY."""
    global _READY_AT, _LAST_TICK
    with _TICKS:
        now = time.monotonic()
        if now - _LAST_TICK > 1.0:
            _READY_AT = max(_READY_AT, now + _THAW_UNREADY)
        _LAST_TICK = now


def _ticking() -> None:
    while True:
        time.sleep(0.1)
        _tick()


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if _THAW_UNREADY:
            _tick()
        if self.path == "/readyz" and time.monotonic() < _READY_AT:
            self._send(503, b'{"ok":false,"status":"starting"}')
        elif self.path in ("/healthz", "/readyz"):
            self._send(200, b'{"ok":true,"status":"live"}')
        elif self.path == "/v1/models":
            token = _token()
            if token and self.headers.get("Authorization") == f"Bearer {token}":
                self._send(200, b'{"object":"list","data":[{"id":"openclaw/default"}]}')
            else:
                self._send(401, b'{"error":{"message":"unauthorized"}}')
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        if self.path != "/v1/chat/completions":
            self._send(404, b"{}")
            return
        _turn()
        self._send(
            200, b'{"choices":[{"message":{"role":"assistant","content":"ok"}}]}'
        )

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    say(f"[gateway] starting pid={os.getpid()} helper={helper.pid}")
    say(
        f"[gateway] FAKE_MARK={os.environ.get('FAKE_MARK', '')} "
        f"state={os.environ.get('OPENCLAW_STATE_DIR')} "
        f"nats={os.environ.get('NATS_URL', '')}"
    )
    crash = os.environ.get("FAKE_GATEWAY_CRASH_ONCE")
    if crash and not Path(crash).exists():
        Path(crash).write_text("crashed")
        time.sleep(0.3)
        helper.kill()
        sys.exit(1)
    time.sleep(float(os.environ.get("FAKE_GATEWAY_DELAY", "0")))
    server = ThreadingHTTPServer(("127.0.0.1", port), _Health)
    global _READY_AT
    _READY_AT = time.monotonic() + float(os.environ.get("FAKE_GATEWAY_UNREADY", "0"))

    def on_term(*_: object) -> None:
        helper.terminate()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(target=_run_due_jobs, daemon=True).start()
    if _THAW_UNREADY:
        threading.Thread(target=_ticking, daemon=True).start()
    say("[gateway] ready")
    server.serve_forever()


if __name__ == "__main__":
    main()
