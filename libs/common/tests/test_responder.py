import asyncio
import uuid

from pydantic import BaseModel
from yourclaw_common.logging import get_correlation_id
from yourclaw_common.nats import CORRELATION_HEADER
from yourclaw_common.responder import Responder


class Answer(BaseModel):
    ok: bool
    text: str = ""


CRASHED = Answer(ok=False, text="internal error")


async def serving(nc, handler) -> tuple[Responder, str]:
    """A responder answering with `handler` on a subject of its own."""
    subject = f"test.{uuid.uuid4().hex}"
    responder = Responder(nc, queue="test", crashed=CRASHED)
    await responder.serve(subject, handler)
    return responder, subject


async def ask(nc, subject, body=b"", **kwargs):
    msg = await nc.request(subject, body, timeout=5, **kwargs)
    return Answer.model_validate_json(msg.data)


class TestResponder:
    async def test_each_request_gets_its_handlers_answer_under_its_correlation_id(
        self, nats_client
    ):
        async def echo(data: bytes) -> Answer:
            return Answer(ok=True, text=f"{data.decode()}@{get_correlation_id()}")

        responder, subject = await serving(nats_client, echo)
        try:
            answer = await ask(
                nats_client, subject, b"hi", headers={CORRELATION_HEADER: "c-1"}
            )
        finally:
            await responder.close()

        assert answer == Answer(ok=True, text="hi@c-1")

    async def test_a_crashing_handler_is_answered_and_the_next_request_too(
        self, nats_client
    ):
        async def fragile(data: bytes) -> Answer:
            if data == b"boom":
                raise RuntimeError("secret detail")
            return Answer(ok=True)

        responder, subject = await serving(nats_client, fragile)
        try:
            crashed = await ask(nats_client, subject, b"boom")
            fine = await ask(nats_client, subject, b"ok")
        finally:
            await responder.close()

        assert crashed == CRASHED
        assert fine.ok

    async def test_close_finishes_requests_in_flight(self, nats_client):
        started = asyncio.Event()
        release = asyncio.Event()

        async def slow(data: bytes) -> Answer:
            started.set()
            await release.wait()
            return Answer(ok=True, text="late")

        responder, subject = await serving(nats_client, slow)
        pending = asyncio.create_task(ask(nats_client, subject))
        await asyncio.wait_for(started.wait(), timeout=5)
        closing = asyncio.create_task(responder.close())
        await asyncio.sleep(0.1)
        assert not closing.done()

        release.set()
        await closing

        assert (await pending).text == "late"

    async def test_close_cancels_a_request_that_outlasts_the_grace(self, nats_client):
        # A wake that waits minutes for a host must not hold up a shutdown:
        # its requester times out and asks another replica.
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def stuck(data: bytes) -> Answer:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return Answer(ok=True)

        responder, subject = await serving(nats_client, stuck)
        pending = asyncio.create_task(ask(nats_client, subject))
        await asyncio.wait_for(started.wait(), timeout=5)

        await asyncio.wait_for(responder.close(grace_seconds=0.2), timeout=10)

        assert cancelled.is_set()
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
