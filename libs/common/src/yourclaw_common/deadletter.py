"""Dead letters: read, replay and delete what landed in the DEAD_LETTER stream.

JetStream publishes an advisory when a consumer terminates a message
(`MSG_TERMINATED`, with the reason the runner gave) or gives up after
`max_deliver` attempts (`MAX_DELIVERIES`). The DEAD_LETTER stream stores those
advisories; the message itself stays in its own stream at `stream_seq` until
that stream's retention removes it. Replaying publishes the original subject,
body and correlation id again (with a new dedupe id) and deletes the dead letter.

`yourclaw-dlq list | show SEQ | replay SEQ…|--all | delete SEQ…` is the operator's CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from yourclaw_common.events import Stream
from yourclaw_common.logging import configure_logging, get_logger
from yourclaw_common.nats import CORRELATION_HEADER, connect
from yourclaw_common.settings import CommonSettings

__all__ = [
    "DeadLetter",
    "OriginalMessage",
    "cli",
    "delete_dead_letter",
    "get_dead_letter",
    "list_dead_letters",
    "original_message",
    "replay_dead_letter",
]

log = get_logger(__name__)

_MSG_ID_HEADER = "Nats-Msg-Id"
_KINDS = {
    "io.nats.jetstream.advisory.v1.terminated": "terminated",
    "io.nats.jetstream.advisory.v1.max_deliver": "max_deliveries",
}


@dataclass(frozen=True)
class DeadLetter:
    """One advisory of the DEAD_LETTER stream."""

    seq: int  # in the DEAD_LETTER stream
    kind: str  # terminated | max_deliveries
    stream: str
    consumer: str
    stream_seq: int  # of the original message, in `stream`
    deliveries: int
    reason: str
    timestamp: str

    @classmethod
    def from_advisory(cls, seq: int, data: bytes) -> DeadLetter:
        advisory: dict[str, Any] = orjson.loads(data)
        kind = _KINDS.get(str(advisory.get("type")), str(advisory.get("type")))
        deliveries = int(advisory.get("deliveries") or 0)
        reason = str(advisory.get("reason") or "")
        if not reason and kind == "max_deliveries":
            # No ack (or only naks) within max_deliver attempts: the handler
            # hung past ack_wait or the process died while handling it.
            reason = f"max_deliveries: not acked after {deliveries} deliveries"
        return cls(
            seq=seq,
            kind=kind,
            stream=str(advisory.get("stream", "")),
            consumer=str(advisory.get("consumer", "")),
            stream_seq=int(advisory.get("stream_seq") or 0),
            deliveries=deliveries,
            reason=reason,
            timestamp=str(advisory.get("timestamp", "")),
        )


@dataclass(frozen=True)
class OriginalMessage:
    """The dead-lettered message, read back from its own stream."""

    subject: str
    data: bytes
    headers: dict[str, str]


async def list_dead_letters(
    js: JetStreamContext, *, consumer: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """The oldest `limit` dead letters, optionally of one consumer."""
    info = await js.stream_info(Stream.DEAD_LETTER)
    found: list[DeadLetter] = []
    seq = info.state.first_seq
    while seq and seq <= info.state.last_seq and len(found) < limit:
        try:
            # next=True: the first message at or after seq (skips deleted ones).
            raw = await js.get_msg(Stream.DEAD_LETTER, seq, next=True)
        except NotFoundError:
            break
        assert raw.seq is not None
        letter = DeadLetter.from_advisory(raw.seq, raw.data or b"{}")
        if consumer is None or letter.consumer == consumer:
            found.append(letter)
        seq = raw.seq + 1
    return found


async def get_dead_letter(js: JetStreamContext, seq: int) -> DeadLetter:
    """One dead letter by its DEAD_LETTER sequence; `NotFoundError` if gone."""
    raw = await js.get_msg(Stream.DEAD_LETTER, seq)
    return DeadLetter.from_advisory(seq, raw.data or b"{}")


async def original_message(js: JetStreamContext, letter: DeadLetter) -> OriginalMessage:
    """The message the advisory points at; `NotFoundError` once its stream's
    retention removed it."""
    raw = await js.get_msg(letter.stream, letter.stream_seq)
    headers = {str(k): str(v) for k, v in (raw.headers or {}).items()}
    return OriginalMessage(raw.subject or "", raw.data or b"", headers)


async def replay_dead_letter(js: JetStreamContext, seq: int) -> PubAck:
    """Publish the original message again and delete the dead letter.

    Every durable filtering the subject receives it again; consumers are
    idempotent (inbox claims on the event id), so those that handled it before
    drop it. The dedupe id is new, or JetStream would drop the copy as a
    duplicate within its window.
    """
    letter = await get_dead_letter(js, seq)
    original = await original_message(js, letter)
    headers = dict(original.headers)
    msg_id = headers.get(_MSG_ID_HEADER) or f"{letter.stream}:{letter.stream_seq}"
    headers[_MSG_ID_HEADER] = f"{msg_id}:replay:{seq}"
    ack = await js.publish(original.subject, original.data, headers=headers)
    await js.delete_msg(Stream.DEAD_LETTER, seq)
    log.info(
        "dlq.replayed",
        dead_letter_seq=seq,
        stream=letter.stream,
        consumer=letter.consumer,
        subject=original.subject,
        new_seq=ack.seq,
        correlation_id=headers.get(CORRELATION_HEADER),
    )
    return ack


async def delete_dead_letter(js: JetStreamContext, seq: int) -> None:
    """Drop a dead letter without replaying it (the original stays in its stream)."""
    await js.delete_msg(Stream.DEAD_LETTER, seq)
    log.info("dlq.deleted", dead_letter_seq=seq)


def _out(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


async def _run(args: argparse.Namespace, nats_url: str) -> int:
    nc = await connect(nats_url, name="yourclaw-dlq", max_reconnect_attempts=2)
    js = nc.jetstream()
    try:
        if args.command == "list":
            for letter in await list_dead_letters(
                js, consumer=args.consumer, limit=args.limit
            ):
                _out(asdict(letter))
        elif args.command == "show":
            letter = await get_dead_letter(js, args.seq)
            shown: dict[str, Any] = asdict(letter)
            try:
                original = await original_message(js, letter)
            except NotFoundError:
                shown["original"] = None  # aged out of its stream
            else:
                shown["original"] = {
                    "subject": original.subject,
                    "headers": original.headers,
                    "data": original.data.decode(errors="replace"),
                }
            _out(shown)
        elif args.command == "replay":
            seqs = list(args.seq)
            if args.all:
                seqs += [
                    letter.seq
                    for letter in await list_dead_letters(
                        js, consumer=args.consumer, limit=args.limit
                    )
                ]
            if not seqs:
                sys.stderr.write("give dead-letter sequence numbers or --all\n")
                return 2
            for seq in seqs:
                ack = await replay_dead_letter(js, seq)
                _out({"replayed": seq, "stream": ack.stream, "new_seq": ack.seq})
        elif args.command == "delete":
            for seq in args.seq:
                await delete_dead_letter(js, seq)
                _out({"deleted": seq})
    except NotFoundError:
        sys.stderr.write("no such dead letter (or its original aged out)\n")
        return 1
    finally:
        await nc.drain()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yourclaw-dlq",
        description="List, show, replay or delete dead letters (NATS_URL from the env).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="dead letters, oldest first, one JSON per line")
    ls.add_argument("--consumer", help="only this durable")
    ls.add_argument("--limit", type=int, default=100)
    show = sub.add_parser("show", help="a dead letter with its original message")
    show.add_argument("seq", type=int)
    replay = sub.add_parser(
        "replay", help="publish the originals again and delete the dead letters"
    )
    replay.add_argument("seq", type=int, nargs="*")
    replay.add_argument("--all", action="store_true", help="every listed one")
    replay.add_argument("--consumer", help="with --all: only this durable's")
    replay.add_argument("--limit", type=int, default=100)
    delete = sub.add_parser("delete", help="drop dead letters without replaying")
    delete.add_argument("seq", type=int, nargs="+")
    return parser


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of `yourclaw-dlq`."""
    args = _parser().parse_args(argv)
    settings = CommonSettings(service_name="dlq")
    configure_logging("dlq", settings.log_level)  # JSON lines on stderr
    return asyncio.run(_run(args, settings.nats_url))


if __name__ == "__main__":
    raise SystemExit(cli())
