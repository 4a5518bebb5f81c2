"""A stand-in for `openclaw gateway --port <p> --bind loopback`: serves /healthz,
and /v1/models to a bearer of the token in $OPENCLAW_CONFIG_PATH as it is now
(OpenClaw hot-reloads a changed config the same way).

It starts a helper child in its own process group (as OpenClaw does), so tests
can check that stopping a gateway stops its whole group. Env knobs:
FAKE_GATEWAY_DELAY (seconds before listening), FAKE_GATEWAY_CRASH_ONCE (a path:
when it does not exist, create it and exit 1 after a moment).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _token() -> str | None:
    try:
        config = json.loads(Path(os.environ["OPENCLAW_CONFIG_PATH"]).read_text())
        return str(config["gateway"]["auth"]["token"])
    except (KeyError, OSError, TypeError, ValueError):
        return None


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in ("/healthz", "/readyz"):
            body = b'{"ok":true,"status":"live"}'
            self.send_response(200)
        elif self.path == "/v1/models":
            token = _token()
            if token and self.headers.get("Authorization") == f"Bearer {token}":
                body = b'{"object":"list","data":[{"id":"openclaw/default"}]}'
                self.send_response(200)
            else:
                body = b'{"error":{"message":"unauthorized"}}'
                self.send_response(401)
        else:
            body = b"{}"
            self.send_response(404)
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

    def on_term(*_: object) -> None:
        helper.terminate()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    say("[gateway] ready")
    server.serve_forever()


if __name__ == "__main__":
    main()
