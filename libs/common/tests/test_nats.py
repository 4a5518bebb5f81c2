import asyncio
import signal
import uuid

import nats
import pytest
import pytest_asyncio
from nats.errors import ConnectionReconnectingError
from yourclaw_common.embedded import EmbeddedNats
from yourclaw_common.errors import PermanentError
from yourclaw_common.events import (
    ConsumerSpec,
    InboundWhatsApp,
    Stream,
    Subject,
    ensure_topology,
)
from yourclaw_common.metrics import runner_metrics
from yourclaw_common.nats import CORRELATION_HEADER, connect, consume, publish
from yourclaw_common.testing import eventually
from yourclaw_common.testing.plugin import TEST_ACK_WAIT_SECONDS

# A service declares its own consumers; this test declares one of its own.
SPEC = ConsumerSpec("test-inbound-whatsapp", Subject.INBOUND_WHATSAPP)


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def durable(js):
    await js.add_consumer(SPEC.stream, SPEC.config(TEST_ACK_WAIT_SECONDS))


def inbound(sid: str | None = None, body: str = "hi") -> InboundWhatsApp:
    return InboundWhatsApp(
        message_sid=sid or f"SM{uuid.uuid4().hex}",
        from_number="whatsapp:+15550001111",
        to_number="whatsapp:+14155238886",
        body=body,
    )


async def run_consumer(js, handler, stop, **kw):
    return asyncio.create_task(
        consume(
            js,
            SPEC,
            handler,
            stop=stop,
            metrics=runner_metrics("test"),
            ack_wait=TEST_ACK_WAIT_SECONDS,
            fetch_timeout=0.2,
            **kw,
        )
    )


class TestPublish:
    async def test_same_message_sid_is_stored_once(self, js):
        event = inbound("SMdup")
        first = await publish(js, event)
        second = await publish(js, inbound("SMdup", body="retry"))
        assert not first.duplicate
        assert second.duplicate
        info = await js.stream_info(Stream.INBOUND)
        assert info.state.messages == 1

    async def test_correlation_id_travels_in_headers(self, js):
        await publish(js, inbound(), correlation_id="corr-123")
        msg = await js.get_last_msg(Stream.INBOUND, "inbound.whatsapp")
        assert msg.headers[CORRELATION_HEADER] == "corr-123"
        assert msg.headers["Nats-Msg-Id"].startswith("SM")


class TestConsume:
    async def test_handler_gets_typed_event_and_message_is_acked(self, js):
        seen: list[InboundWhatsApp] = []
        stop = asyncio.Event()

        async def handler(event, ctx):
            seen.append(event)

        task = await run_consumer(js, handler, stop)
        await publish(js, inbound("SMack", body="hello"))
        await eventually(lambda: _async(len(seen) == 1))
        assert seen[0].body == "hello"
        await eventually(lambda: _pending_zero(js), message="message still pending")
        stop.set()
        await task

    async def test_failure_is_redelivered_with_backoff_then_succeeds(self, js):
        attempts: list[int] = []
        stop = asyncio.Event()

        async def handler(event, ctx):
            attempts.append(ctx.num_delivered)
            if len(attempts) == 1:
                raise RuntimeError("database hiccup")

        task = await run_consumer(js, handler, stop)
        await publish(js, inbound())
        await eventually(lambda: _async(len(attempts) == 2), timeout=10)
        assert attempts == [1, 2]
        stop.set()
        await task

    async def test_permanent_error_and_invalid_body_are_terminated(
        self, js, nats_client
    ):
        calls = 0
        stop = asyncio.Event()
        advisories = await nats_client.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{Stream.INBOUND}.{SPEC.durable}"
        )

        async def handler(event, ctx):
            nonlocal calls
            calls += 1
            raise PermanentError("unknown user")

        task = await run_consumer(js, handler, stop)
        await publish(js, inbound())
        await js.publish(
            "inbound.whatsapp", b"{not json", headers={"Nats-Msg-Id": "bad"}
        )
        for _ in range(2):
            await advisories.next_msg(timeout=5)
        await asyncio.sleep(TEST_ACK_WAIT_SECONDS + 0.5)
        assert calls == 1  # terminated: never redelivered
        # The advisories land in the dead-letter stream too.
        dlq = await js.stream_info(Stream.DEAD_LETTER)
        assert dlq.state.messages == 2
        stop.set()
        await task

    @pytest.mark.slow
    async def test_long_handler_is_kept_alive_not_redelivered(self, js):
        deliveries: list[int] = []
        stop = asyncio.Event()

        async def handler(event, ctx):
            deliveries.append(ctx.num_delivered)
            await asyncio.sleep(TEST_ACK_WAIT_SECONDS * 2.5)

        task = await run_consumer(js, handler, stop)
        await publish(js, inbound())
        await eventually(lambda: _async(len(deliveries) == 1))
        await eventually(lambda: _pending_zero(js), timeout=TEST_ACK_WAIT_SECONDS * 4)
        assert deliveries == [1]
        stop.set()
        await task

    async def test_stop_finishes_in_flight_work(self, js):
        finished = asyncio.Event()
        started = asyncio.Event()
        stop = asyncio.Event()

        async def handler(event, ctx):
            started.set()
            await asyncio.sleep(0.5)
            finished.set()

        task = await run_consumer(js, handler, stop)
        await publish(js, inbound())
        await asyncio.wait_for(started.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert finished.is_set()
        await eventually(lambda: _pending_zero(js))

    async def test_two_replicas_share_one_durable(self, js, nats_url):
        seen: dict[str, list[str]] = {"a": [], "b": []}
        stop = asyncio.Event()
        other = await nats.connect(nats_url)

        def handler_for(name):
            async def handler(event, ctx):
                seen[name].append(event.message_sid)
                await asyncio.sleep(0.05)

            return handler

        t1 = await run_consumer(js, handler_for("a"), stop, concurrency=1)
        t2 = await run_consumer(
            other.jetstream(), handler_for("b"), stop, concurrency=1
        )
        sids = [f"SMrep{i}" for i in range(20)]
        for sid in sids:
            await publish(js, inbound(sid))
        await eventually(lambda: _async(len(seen["a"]) + len(seen["b"]) == 20))
        assert sorted(seen["a"] + seen["b"]) == sorted(sids)
        assert seen["a"]
        assert seen["b"]
        stop.set()
        await asyncio.gather(t1, t2)
        await other.drain()


async def _async(value):
    return value


async def _pending_zero(js):
    info = await js.consumer_info(Stream.INBOUND, SPEC.durable)
    return info.num_ack_pending == 0 and info.num_pending == 0


class TestConnect:
    async def test_a_frozen_server_is_left_and_joined_again_once_it_runs(
        self, tmp_path
    ):
        """SIGSTOP keeps the TCP connection open and silent (a partition without a
        reset): the client notices instead of writing into it for minutes (nats-py
        pings every 120 s), refuses publishes meanwhile rather than replaying them
        later, and is back once the server runs again."""
        server = EmbeddedNats(tmp_path).start()
        assert server.proc is not None
        left, back = asyncio.Event(), asyncio.Event()

        async def on_disconnect() -> None:
            left.set()

        async def on_reconnect() -> None:
            back.set()

        nc = await connect(
            server.url,
            name="test",
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
        try:
            js = nc.jetstream()
            await ensure_topology(js)
            server.proc.send_signal(signal.SIGSTOP)
            await asyncio.wait_for(left.wait(), timeout=30)
            with pytest.raises(ConnectionReconnectingError):
                await publish(js, inbound("SMduring"))
            server.proc.send_signal(signal.SIGCONT)
            await asyncio.wait_for(back.wait(), timeout=30)
            await publish(js, inbound("SMafter"))
            info = await js.stream_info(Stream.INBOUND)
            assert info.state.messages == 1
        finally:
            server.proc.send_signal(signal.SIGCONT)
            await nc.close()
            server.stop()
