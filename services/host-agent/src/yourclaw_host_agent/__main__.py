"""`python -m yourclaw_host_agent` runs the agent; `… bootstrap --help` sets up a
new host over SSH; `… install-openclaw` installs the pinned openclaw; `… sweep`
stops and removes every gateway of this host's data dir (files stay)."""

from __future__ import annotations

import asyncio
import sys


def run() -> None:
    args = sys.argv[1:]
    if args and args[0] == "bootstrap":
        from yourclaw_host_agent.bootstrap import cli

        cli(args[1:])
        return
    if args and args[0] == "install-openclaw":
        from yourclaw_host_agent.install_openclaw import cli as install

        install(args[1:])
        return
    if args and args[0] == "sweep":
        from yourclaw_host_agent.app import sweep

        asyncio.run(sweep())
        return
    if args and args[0] not in ("serve",):
        sys.exit(
            f"unknown command {args[0]!r}: "
            "use serve, bootstrap, install-openclaw or sweep"
        )

    from yourclaw_host_agent.app import main

    asyncio.run(main())


if __name__ == "__main__":
    run()
