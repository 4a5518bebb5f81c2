"""Placeholder entry point until the host-agent issue lands."""

import sys


def run() -> None:
    sys.exit("yourclaw-host-agent is not built yet: see the open issue for it")


if __name__ == "__main__":
    run()
