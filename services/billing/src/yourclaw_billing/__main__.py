"""`yourclaw-billing [serve]` / `yourclaw-billing reconcile` / `python -m yourclaw_billing`."""

from yourclaw_billing.app import cli


def run() -> None:
    cli()


if __name__ == "__main__":
    run()
