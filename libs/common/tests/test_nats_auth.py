"""The bus takes only its users, and each may do only its job (a real server)."""

from __future__ import annotations

import asyncio
import re

import nats
import nats.js.errors
import pytest
from nats.errors import NoServersError
from nats.js.api import ConsumerConfig, StreamConfig
from yourclaw_common.events import ensure_topology
from yourclaw_common.nats import connect
from yourclaw_common.nats_auth import (
    PLATFORM_GRANTS,
    declared_consumers,
    host_user,
    jetstream_api,
    owned_streams,
    render_authorization,
    users_for,
)


@pytest.fixture
def server(infra):
    if infra.nats is None:
        pytest.skip("NATS_URL is given: its users are not ours to test")
    return infra.nats


class _Client:
    """A connection as one user that keeps the server's refusals."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc = None

    async def open(self, server, identity) -> _Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await connect(
            server.url,
            name="auth-test",
            user=identity["nats_user"],
            password=identity["nats_password"],
            error_cb=on_error,
            max_reconnect_attempts=0,
        )
        return self

    def refused(self, verb: str, subject: str) -> bool:
        wanted = f'permissions violation for {verb} to "{subject}"'
        return any(wanted.lower() in e.lower() for e in self.errors)


async def _as(server, nats_identity, user: str) -> _Client:
    return await _Client().open(server, nats_identity(user))


async def _received(nats_client, subject: str) -> list[str]:
    """What arrives on `subject` while the caller publishes (operator's view)."""
    seen: list[str] = []

    async def on_msg(msg) -> None:
        seen.append(msg.subject)

    await nats_client.subscribe(subject, cb=on_msg)
    await nats_client.flush()
    return seen


class TestCredentials:
    async def test_a_client_without_credentials_is_refused(self, server):
        with pytest.raises((NoServersError, nats.errors.Error)) as refused:
            await nats.connect(
                server.url,
                connect_timeout=2,
                max_reconnect_attempts=0,
                allow_reconnect=False,
            )
        assert "authorization" in str(refused.value).lower() or isinstance(
            refused.value, NoServersError
        )

    async def test_a_wrong_password_is_refused(self, server, nats_identity):
        identity = nats_identity("messaging")
        with pytest.raises((NoServersError, nats.errors.Error)):
            await connect(
                server.url,
                name="auth-test",
                user=identity["nats_user"],
                password=identity["nats_password"] + "x",
                connect_timeout=2,
                max_reconnect_attempts=0,
                allow_reconnect=False,
            )


class TestHostAgent:
    async def test_publishes_only_its_own_heartbeat(
        self, server, nats_identity, nats_client
    ):
        seen = await _received(nats_client, ">")
        host = await _as(server, nats_identity, host_user("h1"))
        try:
            for subject in (
                "outbound.whatsapp",
                "heartbeat.h2",
                "host.h2.remove",
                "assistant.ready",
                "subscription.activated",
            ):
                await host.nc.publish(subject, b"{}")
            await host.nc.publish("heartbeat.h1", b"{}")
            await host.nc.flush()
            await asyncio.sleep(0.3)
        finally:
            await host.nc.close()

        assert [s for s in seen if not s.startswith("$")] == ["heartbeat.h1"]
        for subject in ("outbound.whatsapp", "heartbeat.h2", "host.h2.remove"):
            assert host.refused("publish", subject), host.errors

    async def test_hears_only_its_own_commands_and_reads_no_stream(
        self, server, nats_identity, nats_client
    ):
        host = await _as(server, nats_identity, host_user("h1"))
        try:
            mine: list[str] = []

            async def on_mine(msg) -> None:
                mine.append(msg.subject)
                await msg.respond(b"ok")

            await host.nc.subscribe("host.h1.*", cb=on_mine)
            await host.nc.subscribe("host.h2.*")
            await host.nc.subscribe("outbound.>")
            await host.nc.flush()
            await asyncio.sleep(0.2)
            # The operator (the provisioner's place) commands h1: h1 answers.
            reply = await nats_client.request("host.h1.inspect", b"{}", timeout=2)
            js = host.nc.jetstream(timeout=1)
            with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
                await js.stream_info("OUTBOUND")
            await asyncio.sleep(0.2)
        finally:
            await host.nc.close()

        assert reply.data == b"ok"
        assert mine == ["host.h1.inspect"]
        assert host.refused("subscription", "host.h2.*"), host.errors
        assert host.refused("subscription", "outbound.>"), host.errors
        assert any(re.search(r'publish to "\$js\.api', e.lower()) for e in host.errors)


class TestServices:
    async def test_each_publishes_only_the_events_it_owns(
        self, server, nats_identity, nats_client
    ):
        seen = await _received(nats_client, "subscription.*")
        messaging = await _as(server, nats_identity, "messaging")
        billing = await _as(server, nats_identity, "billing")
        try:
            await messaging.nc.publish("subscription.activated", b"{}")
            await billing.nc.publish("subscription.past_due", b"{}")
            await messaging.nc.flush()
            await billing.nc.flush()
            await asyncio.sleep(0.3)
        finally:
            await messaging.nc.close()
            await billing.nc.close()

        assert seen == ["subscription.past_due"]
        assert messaging.refused("publish", "subscription.activated")

    async def test_one_cannot_read_another_services_replies(
        self, server, nats_identity
    ):
        messaging = await _as(server, nats_identity, "messaging")
        try:
            await messaging.nc.subscribe("_INBOX.gateway-api.>")
            await messaging.nc.subscribe("_INBOX.>")
            await messaging.nc.flush()
            await asyncio.sleep(0.2)
        finally:
            await messaging.nc.close()

        assert messaging.refused("subscription", "_INBOX.gateway-api.>"), (
            messaging.errors
        )
        assert messaging.refused("subscription", "_INBOX.>")


class TestRenderedConfig:
    def test_names_every_service_and_host_and_no_password(self):
        text = render_authorization(users=users_for(["h1"]), password_refs=True)

        for user in ["operator", *PLATFORM_GRANTS, "host-agent-h1"]:
            assert f'user: "{user}"' in text
        assert "$NATS_PASSWORD_HOST_AGENT_H1" in text
        assert not re.search(r'password: "', text)

    def test_a_host_id_that_is_not_one_subject_token_is_refused(self):
        with pytest.raises(ValueError, match="host id"):
            users_for(["eu.1"])


async def _refused_request(call) -> None:
    """A JetStream API call the server drops: the client hears no answer."""
    with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
        await call


class TestJetStreamScopes:
    """Each service gets only the JetStream API of its own streams and
    durables (nats_auth.jetstream_api)."""

    @pytest.fixture(autouse=True)
    async def durables(self, js):
        """Every service's durables, as the services make them at start."""
        await ensure_topology(js, consumers=declared_consumers())

    async def test_a_service_cannot_delete_purge_change_or_read_anothers_stream(
        self, server, nats_identity, js
    ):
        await js.publish("inbound.whatsapp", b'{"secret": "for messaging only"}')
        billing = await _as(server, nats_identity, "billing")
        spy = billing.nc.jetstream(timeout=1)
        try:
            await _refused_request(spy.delete_stream("INBOUND"))
            await _refused_request(spy.purge_stream("INBOUND"))
            await _refused_request(
                spy.update_stream(StreamConfig(name="INBOUND", subjects=["inbound.*"]))
            )
            await _refused_request(spy.get_msg("INBOUND", 1))
            # Neither a consumer of its own on the stream...
            await _refused_request(
                spy.add_consumer("INBOUND", ConsumerConfig(durable_name="billing-spy"))
            )
            # ...nor a fetch from messaging's.
            sub = await spy.pull_subscribe_bind(
                durable="messaging-inbound-whatsapp", stream="INBOUND"
            )
            await _refused_request(sub.fetch(1, timeout=1))
            # A new stream could capture what no stream stores (host commands).
            await _refused_request(
                spy.add_stream(StreamConfig(name="SPY", subjects=["host.>"]))
            )
        finally:
            await billing.nc.close()

        info = await js.stream_info("INBOUND")
        assert info.state.messages == 1
        assert info.config.max_msgs == -1
        consumer = await js.consumer_info("INBOUND", "messaging-inbound-whatsapp")
        assert consumer.num_pending == 1
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info("SPY")
        for verb in (
            "STREAM.DELETE",
            "STREAM.PURGE",
            "STREAM.UPDATE",
            "STREAM.MSG.GET",
            "CONSUMER.MSG.NEXT",
        ):
            assert any(
                f"$js.api.{verb.lower()}.inbound" in e.lower() for e in billing.errors
            ), (verb, billing.errors)

    async def test_a_service_reads_and_acks_its_own_durable(
        self, server, nats_identity, js
    ):
        await js.publish("inbound.whatsapp", b"{}")
        messaging = await _as(server, nats_identity, "messaging")
        try:
            own = messaging.nc.jetstream(timeout=2)
            sub = await own.pull_subscribe_bind(
                durable="messaging-inbound-whatsapp", stream="INBOUND"
            )
            (msg,) = await sub.fetch(1, timeout=2)
            await msg.ack_sync(timeout=2)
        finally:
            await messaging.nc.close()

        assert messaging.errors == []
        consumer = await js.consumer_info("INBOUND", "messaging-inbound-whatsapp")
        assert (consumer.num_pending, consumer.num_ack_pending) == (0, 0)

    async def test_a_service_waits_for_a_stream_it_consumes_but_does_not_own(
        self, server, nats_identity, js
    ):
        """messaging may not create INBOUND (gateway-api's): started first, it
        waits for it instead of failing, then makes its durable."""
        await js.delete_stream("INBOUND")
        messaging = await _as(server, nats_identity, "messaging")
        try:
            starting = asyncio.create_task(
                ensure_topology(
                    messaging.nc.jetstream(timeout=2),
                    consumers=[
                        spec
                        for spec in declared_consumers()
                        if spec.durable == "messaging-inbound-whatsapp"
                    ],
                    owned=owned_streams("messaging"),
                    wait_interval=0.1,
                )
            )
            await asyncio.sleep(1)
            assert not starting.done()
            await ensure_topology(js, consumers=[])  # gateway-api's place
            await asyncio.wait_for(starting, 5)
        finally:
            await messaging.nc.close()

        assert messaging.errors == []
        await js.consumer_info("INBOUND", "messaging-inbound-whatsapp")


def test_each_service_declares_its_own_durables_and_may_use_only_those():
    """The durables come from the services' entry points (libs/common lists
    none); each service's JetStream grant names its own and no other's."""
    durables = {spec.durable for spec in declared_consumers()}
    assert {"messaging-inbound-whatsapp", "provisioner-provision-requested"} <= durables
    assert "billing-stripe-events" in durables
    for user in ("messaging", "provisioner", "billing"):
        api = " ".join(jetstream_api(user))
        for durable in durables:
            assert (durable in api) == durable.startswith(user + "-"), (user, durable)
