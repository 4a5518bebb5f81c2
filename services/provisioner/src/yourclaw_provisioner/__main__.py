"""Placeholder entry point until the provisioner issue lands."""

import sys


def run() -> None:
    sys.exit("yourclaw-provisioner is not built yet: see the open issue for it")


if __name__ == "__main__":
    run()
