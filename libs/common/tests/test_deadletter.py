"""Dead letters end to end on a real JetStream: a flood of events whose handler
always fails lands in DEAD_LETTER with the error, and `yourclaw-dlq replay`
feeds them to the fixed handler."""

import asyncio
import os
import sys
import uuid

import orjson
from yourclaw_common.deadletter import list_dead_letters, original_message
from yourclaw_common.errors import PermanentError
from yourclaw_common.events import ConsumerSpec, InboundWhatsApp, Subject
from yourclaw_common.metrics import runner_metrics
from yourclaw_common.nats import consume, publish, watch_consumers
from yourclaw_common.testing import eventually
from yourclaw_common.testing.plugin import TEST_ACK_WAIT_SECONDS

# Three deliveries: the backoff between them is about 1 s then 2 s.
FLOOD = ConsumerSpec("test-dlq-flood", Subject.INBOUND_WHATSAPP, max_deliver=3)
METRICS = runner_metrics("dlq-test")


def inbound(sid: str) -> InboundWhatsApp:
    return InboundWhatsApp(
        message_sid=sid,
        from_number="whatsapp:+15550001111",
        to_number="whatsapp:+14155238886",
        body="hello",
    )


def consuming(js, spec: ConsumerSpec, handler, stop: asyncio.Event) -> asyncio.Task:
    """The runner a service starts for `spec`, with the tests' short timings."""
    return asyncio.create_task(
        consume(
            js,
            spec,
            handler,
            stop=stop,
            metrics=METRICS,
            ack_wait=TEST_ACK_WAIT_SECONDS,
            fetch_timeout=0.2,
        )
    )


async def dlq_cli(nats_url: str, *args: str) -> list[dict]:
    """Run `yourclaw-dlq` as an operator would; its stdout is JSON lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "yourclaw_common.deadletter",
        *args,
        env={**os.environ, "NATS_URL": nats_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


async def test_flooded_failures_are_dead_lettered_with_reason_then_replayed(
    js, nats_url
):
    await js.add_consumer(FLOOD.stream, FLOOD.config(TEST_ACK_WAIT_SECONDS))
    broken = True
    handled: list[str] = []
    stop = asyncio.Event()

    async def handler(event: InboundWhatsApp, ctx) -> None:
        if broken:
            raise RuntimeError("assistant backend unreachable")
        handled.append(event.message_sid)

    exhausted_before = METRICS.dead_lettered.labels(FLOOD.durable, "exhausted")._value
    before = exhausted_before.get()
    tasks = [
        consuming(js, FLOOD, handler, stop),
        asyncio.create_task(
            watch_consumers(js, [FLOOD], stop=stop, metrics=METRICS, interval=0.2)
        ),
    ]
    sids = {f"SMflood{i}-{uuid.uuid4().hex[:6]}" for i in range(15)}
    for sid in sids:
        await publish(js, inbound(sid))

    async def all_dead() -> bool:
        return len(await list_dead_letters(js, consumer=FLOOD.durable)) == len(sids)

    await eventually(all_dead, timeout=30, message="not every event dead-lettered")
    assert handled == []

    # What an operator sees: the error, how often it was tried, the original.
    listed = await dlq_cli(nats_url, "list", "--consumer", FLOOD.durable)
    assert len(listed) == len(sids)
    for entry in listed:
        assert entry["kind"] == "terminated"
        assert entry["deliveries"] == 3
        assert "retries_exhausted" in entry["reason"]
        assert "RuntimeError: assistant backend unreachable" in entry["reason"]
    shown = await dlq_cli(nats_url, "show", str(listed[0]["seq"]))
    assert shown[0]["original"]["subject"] == "inbound.whatsapp"
    assert orjson.loads(shown[0]["original"]["data"])["message_sid"] in sids
    letters = await list_dead_letters(js, consumer=FLOOD.durable)
    originals = {
        orjson.loads((await original_message(js, letter)).data)["message_sid"]
        for letter in letters
    }
    assert originals == sids

    # Prometheus sees them: the runner's counter and the DLQ depth gauge.
    assert exhausted_before.get() - before == len(sids)
    gauge = METRICS.dead_letters.labels(FLOOD.durable)._value

    async def gauge_is(n: int) -> bool:
        return gauge.get() == n

    await eventually(lambda: gauge_is(len(sids)), message="dead-letter gauge")

    # The fix ships; the operator replays everything of that consumer.
    broken = False
    replayed = await dlq_cli(nats_url, "replay", "--all", "--consumer", FLOOD.durable)
    assert len(replayed) == len(sids)

    async def all_handled() -> bool:
        return set(handled) == sids

    await eventually(all_handled, timeout=15, message="replayed events not handled")
    assert len(handled) == len(sids)  # each once
    assert await list_dead_letters(js, consumer=FLOOD.durable) == []
    await eventually(lambda: gauge_is(0), message="dead-letter gauge not back to 0")
    stop.set()
    await asyncio.gather(*tasks)


async def test_permanent_errors_and_poison_bodies_keep_their_reason(js):
    spec = ConsumerSpec("test-dlq-poison", Subject.INBOUND_WHATSAPP)
    await js.add_consumer(spec.stream, spec.config(TEST_ACK_WAIT_SECONDS))
    stop = asyncio.Event()

    async def handler(event: InboundWhatsApp, ctx) -> None:
        raise PermanentError("no user has this number")

    task = consuming(js, spec, handler, stop)
    await publish(js, inbound("SMpermanent"))
    await js.publish("inbound.whatsapp", b"{not json", headers={"Nats-Msg-Id": "x1"})

    async def two() -> list:
        letters = await list_dead_letters(js, consumer=spec.durable)
        return letters if len(letters) == 2 else []

    letters = await eventually(two, message="not dead-lettered")
    reasons = sorted(letter.reason for letter in letters)
    assert reasons[0].startswith("invalid_message:")
    assert reasons[1].startswith("permanent_error")
    assert "no user has this number" in reasons[1]
    assert all(letter.deliveries == 1 for letter in letters)
    stop.set()
    await task


async def test_lag_gauge_shows_the_backlog_and_drains_to_zero(js):
    """What the ConsumerLagGrowing alert and the pipeline dashboard read."""
    spec = ConsumerSpec("test-lag", Subject.INBOUND_WHATSAPP)
    await js.add_consumer(spec.stream, spec.config(TEST_ACK_WAIT_SECONDS))
    for i in range(7):
        await publish(js, inbound(f"SMlag{i}-{uuid.uuid4().hex[:6]}"))
    stop = asyncio.Event()
    watcher = asyncio.create_task(
        watch_consumers(js, [spec], stop=stop, metrics=METRICS, interval=0.2)
    )
    pending = METRICS.consumer_pending.labels(spec.durable)._value

    async def pending_is(n: int) -> bool:
        return pending.get() == n

    await eventually(lambda: pending_is(7), message="backlog not exported")

    async def handler(event: InboundWhatsApp, ctx) -> None:
        return None

    consumer = consuming(js, spec, handler, stop)
    await eventually(lambda: pending_is(0), message="backlog did not drain")
    ack_pending = METRICS.consumer_ack_pending.labels(spec.durable)._value

    async def all_acked() -> bool:
        return ack_pending.get() == 0

    await eventually(all_acked, message="messages left unacked")
    stop.set()
    await asyncio.gather(watcher, consumer)


async def test_a_message_never_acked_dead_letters_as_max_deliveries(js):
    """A handler that hangs or a process that dies on every attempt: JetStream
    gives up after max_deliver and the DLQ says so."""
    spec = ConsumerSpec("test-dlq-hang", Subject.INBOUND_WHATSAPP, max_deliver=2)
    await js.add_consumer(spec.stream, spec.config(1.0))  # ack_wait 1 s
    await publish(js, inbound(f"SMhang-{uuid.uuid4().hex[:6]}"))
    psub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)

    async def dead() -> list:
        try:  # fetch and never ack, as a crashed worker would
            await psub.fetch(1, timeout=0.5)
        except TimeoutError:
            pass
        return await list_dead_letters(js, consumer=spec.durable)

    (letter,) = await eventually(dead, timeout=15, message="not dead-lettered")
    assert letter.kind == "max_deliveries"
    assert letter.deliveries == 2
    assert letter.reason == "max_deliveries: not acked after 2 deliveries"
    original = await original_message(js, letter)
    assert original.subject == "inbound.whatsapp"
    await psub.unsubscribe()
