import uvloop

from yourclaw_messaging.app import main


def run() -> None:
    # uvloop: socket writes (Postgres, NATS, HTTP) are most of a turn's CPU.
    uvloop.run(main())


if __name__ == "__main__":
    run()
