"""Placeholder entry point until the billing issue lands."""

import sys


def run() -> None:
    sys.exit("yourclaw-billing is not built yet: see the open issue for it")


if __name__ == "__main__":
    run()
