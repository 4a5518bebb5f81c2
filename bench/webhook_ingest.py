"""Benchmark: the Twilio WhatsApp webhook under load, against a no-work baseline.

One gateway-api worker (uvicorn + uvloop) with a real JetStream publish per
request; wrk (Debian package `wrk`) drives 50 connections with unique,
correctly signed MessageSids. The baseline is `GET /healthz` on the same server
in the same run, so the ratio webhook/baseline holds across machines.

    make bench                       # or: uv run python bench/webhook_ingest.py
    BENCH_SECONDS=20 BENCH_CONNECTIONS=50 make bench

Uses NATS_URL / DATABASE_URL when set, else starts embedded servers.
"""

from __future__ import annotations

import base64
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx
from yourclaw_common.embedded import free_port, local_infra
from yourclaw_devkit.signing import twilio_signature
from yourclaw_devkit.twilio_sim import inbound_whatsapp_form

SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
WARMUP_SECONDS = 3
TOKEN = "bench-twilio-auth-token"
PATH = "/api/v1/webhooks/twilio/whatsapp"

LUA = r"""
local bodies = {}
local sigs = {}
local i = 0
local n = 0
init = function(args)
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    n = n + 1
    sigs[n] = line:sub(1, tab - 1)
    bodies[n] = line:sub(tab + 1)
  end
end
request = function()
  i = i + 1
  if i > n then i = 1 end
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = sigs[i],
  }, bodies[i])
end
"""


def _signed_bodies(count: int, url: str, path: Path, *, code: bool = False) -> None:
    """`count` unique Twilio webhook forms, each signed for `url`. With `code`,
    each body holds a 6-digit run, which gateway-api checks against the
    phone-proof claims on the sender's number (one statement; none exist here)."""
    with path.open("w") as out:
        for n in range(count):
            phone = f"+1555{n % 10_000_000:07d}"
            form = inbound_whatsapp_form(
                phone=phone,
                body=f"my code is {n % 900_000 + 100_000}"
                if code
                else "a benchmark message for the assistant",
                to="whatsapp:+14155238886",
                account_sid="AC" + "0" * 32,
                message_sid="SM" + uuid.uuid4().hex,
                profile_name="Bench",
            )
            out.write(f"{twilio_signature(url, form, TOKEN)}\t{urlencode(form)}\n")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def _wrk(
    url: str, seconds: int, script: Path | None = None, bodies: Path | None = None
) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if script:
        argv += ["-s", str(script)]
    argv.append(url)
    if bodies:
        argv += ["--", str(bodies)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": _ms(lat["50"]),
        "p99": _ms(lat["99"]),
        "requests": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": 1 if errors else 0,
    }


def _ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("==> installing wrk (Debian package)")
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True
        )
        if not shutil.which("wrk"):
            subprocess.run(
                ["apt-get", "update", "-qq"], check=False, capture_output=True
            )
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "wrk"],
                check=True,
                capture_output=True,
            )
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")


def main() -> None:
    _ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="yourclaw-bench-"))
    os.chmod(tmp, 0o755)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        with local_infra(
            tmp,
            nats_url=os.environ.get("NATS_URL"),
            database_url=os.environ.get("DATABASE_URL"),
            database="bench",
            fast=True,
        ) as infra:
            nats_url, db_url = infra.operator_url, infra.database_url
            try:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                env = {
                    **os.environ,
                    "NATS_URL": nats_url,
                    "DATABASE_URL": db_url,
                    "API_HOST": "127.0.0.1",
                    "API_PORT": str(port),
                    "API_WORKERS": "1",
                    "PUBLIC_BASE_URL": base,
                    "TWILIO_AUTH_TOKEN": TOKEN,
                    "LOG_LEVEL": "WARNING",
                    "ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                    # wrk is one client IP: the per-IP limit runs (its cost is
                    # measured) but is set far above what wrk can send.
                    "WEBHOOK_RATE_LIMIT_PER_SECOND": os.environ.get(
                        "WEBHOOK_RATE_LIMIT_PER_SECOND", "1000000000"
                    ),
                    "WEBHOOK_RATE_LIMIT_BURST": "1000000",
                    # As in production: its own NATS user, permissions checked.
                    **(
                        {
                            "NATS_USER": "gateway-api",
                            "NATS_PASSWORD": infra.nats_passwords["gateway-api"],
                        }
                        if infra.nats_passwords
                        else {}
                    ),
                }
                gateway = subprocess.Popen(
                    [sys.executable, "-m", "yourclaw_gateway_api"], env=env
                )
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if (
                            httpx.get(f"{base}/api/v1/health", timeout=1).status_code
                            == 200
                        ):
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or gateway.poll() is not None:
                        sys.exit("gateway-api did not become healthy")
                    time.sleep(0.2)

                count = int((SECONDS + WARMUP_SECONDS) * 16_000)
                print(f"==> signing {count:,} unique webhook bodies")
                bodies = tmp / "bodies.tsv"
                _signed_bodies(count, base + PATH, bodies)
                coded = tmp / "coded.tsv"
                _signed_bodies(count, base + PATH, coded, code=True)
                script = tmp / "webhook.lua"
                script.write_text(LUA)

                print(f"==> warm-up {WARMUP_SECONDS}s each")
                _wrk(f"{base}/healthz", WARMUP_SECONDS)
                warm = tmp / "warm.tsv"
                _signed_bodies(WARMUP_SECONDS * 16_000, base + PATH, warm)
                _wrk(base + PATH, WARMUP_SECONDS, script, warm)

                print(
                    f"==> baseline GET /healthz, {CONNECTIONS} connections, {SECONDS}s"
                )
                baseline = _wrk(f"{base}/healthz", SECONDS)
                print(f"==> webhook POST {PATH}, {CONNECTIONS} connections, {SECONDS}s")
                webhook = _wrk(base + PATH, SECONDS, script, bodies)
                print(f"==> the same with a 6-digit run in every body, {SECONDS}s")
                with_code = _wrk(base + PATH, SECONDS, script, coded)

                stored = _stream_messages(nats_url)
                print()
                print(
                    f"machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}, Python {platform.python_version()}"
                )
                print(
                    f"{'route':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
                )
                for name, r in (
                    ("baseline GET /healthz", baseline),
                    ("webhook (verify + publish)", webhook),
                    ("webhook, 6 digits (+ proof lookup)", with_code),
                ):
                    print(
                        f"{name:<34}{r['rps']:>10,.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non2xx']:>9}"
                    )
                print(
                    f"webhook / baseline throughput: {webhook['rps'] / baseline['rps']:.2f}"
                )
                print(
                    "webhook with 6 digits / webhook throughput: "
                    f"{with_code['rps'] / webhook['rps']:.2f}"
                )
                print(
                    f"messages stored in INBOUND: {stored:,} (webhook requests incl. warm-up: {int(webhook['requests'] + with_code['requests']):,}+)"
                )
                ok = (
                    webhook["rps"] >= 8000
                    and webhook["p99"] <= 15
                    and webhook["non2xx"] == 0
                )
                print(
                    f"target (>= 8,000 req/s, p99 <= 15 ms, no errors): {'met' if ok else 'NOT met'}"
                )
            finally:
                if gateway is not None and gateway.poll() is None:
                    gateway.terminate()
                    gateway.wait(15)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stream_messages(nats_url: str) -> int:
    import asyncio

    import nats

    async def count() -> int:
        nc = await nats.connect(nats_url)
        try:
            info = await nc.jetstream().stream_info("INBOUND")
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
