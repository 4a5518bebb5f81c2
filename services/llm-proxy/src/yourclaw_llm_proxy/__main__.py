"""`yourclaw-llm-proxy` / `python -m yourclaw_llm_proxy`."""

import uvloop

from yourclaw_llm_proxy.app import main


def run() -> None:
    uvloop.run(main())


if __name__ == "__main__":
    run()
