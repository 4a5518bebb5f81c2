"""Schemathesis against the served OpenAPI document: every operation, positive
and negative cases, as a signed-in subscriber. No 5xx; every response matches the
status, content type, headers and body schema the document promises.

The gateway runs on its own event loop in a thread: schemathesis calls it with
blocking `requests` from the test's thread.
"""

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import jwt
import nats
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from prometheus_client import REGISTRY
from schemathesis import GenerationMode
from yourclaw_common.embedded import free_port
from yourclaw_common.events import BillingReply, Subject
from yourclaw_devkit.telegram_sim import running_telegram_sim
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings

SUPABASE_URL = "https://project.supabase.test"
JWT_SECRET = "schemathesis-supabase-jwt-secret-0123456789"
DEV_SECRET = "schemathesis-dev-login-secret-0123456789abcd"
TWILIO_TOKEN = "schemathesis-twilio-auth-token"


@dataclass
class Served:
    url: str
    user_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _seed(database_url: str, user_id: uuid.UUID) -> None:
    """A subscriber with a READY assistant, some messages and some usage."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO users (id, email) VALUES ($1, 'fuzz@example.com')", user_id
        )
        await conn.execute(
            """
            INSERT INTO subscriptions (user_id, stripe_customer_id, status)
            VALUES ($1, 'cus_fuzz', 'ACTIVE')
            """,
            user_id,
        )
        await conn.execute(
            "INSERT INTO assistants (user_id, status) VALUES ($1, 'READY')", user_id
        )
        # Reachable on every channel, so any preferred channel is a valid choice.
        await conn.execute(
            "INSERT INTO user_phones (user_id, phone_e164) VALUES ($1, '+15550001111')",
            user_id,
        )
        await conn.execute(
            "INSERT INTO telegram_links (user_id, chat_id, username, linked_by) "
            "VALUES ($1, 1111, 'fuzz', 1)",
            user_id,
        )
        for n in range(5):
            await conn.execute(
                """
                INSERT INTO messages (user_id, phone_e164, direction, body, status)
                VALUES ($1, '+15550001111', 'INBOUND', $2, 'RECEIVED')
                """,
                user_id,
                f"hello {n}",
            )
        await conn.execute(
            "INSERT INTO usage_daily VALUES ($1, (now() AT TIME ZONE 'utc')::date, 3, 3, 10, 20)",
            user_id,
        )
    finally:
        await conn.close()


async def _billing(msg: nats.aio.msg.Msg) -> None:
    await msg.respond(
        BillingReply(ok=True, url="https://checkout.stripe.test/c/fuzz")
        .model_dump_json()
        .encode()
    )


@pytest.fixture(scope="module")
def served(service_env: dict[str, str]) -> Iterator[Served]:
    user_id = uuid.uuid4()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    telegram_port = free_port()
    settings_ = GatewaySettings(
        _env_file=None,
        database_url=service_env["DATABASE_URL"],
        nats_url=service_env["NATS_URL"],
        encryption_key=service_env["ENCRYPTION_KEY"],
        public_base_url=url,
        api_port=port,
        db_pool_max_size=4,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_sms_number="+15550002222",
        supabase_url=SUPABASE_URL,
        supabase_jwt_secret=JWT_SECRET,
        yourclaw_env="dev",
        dev_login_enabled=True,
        dev_login_secret=DEV_SECRET,
        app_url="https://app.yourclaw.test",
        # The fuzzer sends thousands of requests from one IP as one user.
        api_rate_limit_ip_per_minute=0,
        api_rate_limit_user_per_minute=0,
        api_sensitive_rate_limit_ip_per_minute=0,
        api_sensitive_rate_limit_user_per_minute=0,
        # A bot on the Telegram stand-in (`main`), so the link route answers 200.
        telegram_bot_token="7000000001:schemathesis-bot-token",
        telegram_webhook_secret="schemathesis-telegram-secret",
        telegram_api_base=f"http://127.0.0.1:{telegram_port}",
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        token = settings_.telegram_bot_token.get_secret_value()
        async with running_telegram_sim(token, port=telegram_port):
            await serve()

    async def serve() -> None:
        await _seed(service_env["DATABASE_URL"], user_id)
        nc = await nats.connect(service_env["NATS_URL"])
        for subject in (Subject.BILLING_CHECKOUT_CREATE, Subject.BILLING_PORTAL_CREATE):
            await nc.subscribe(subject, cb=_billing)
        server = _Server(
            uvicorn.Config(
                create_app(settings_),
                host="127.0.0.1",
                port=port,
                lifespan="on",
                ws="none",
                log_config=None,
                access_log=False,
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited during start-up")
                await asyncio.sleep(0.01)
            ready.set()
            await stop.wait()
        finally:
            server.should_exit = True
            await task
            await nc.drain()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, name="gateway-under-schemathesis")
    thread.start()
    ready.wait(60)
    if failure:
        raise failure[0]
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": f"{SUPABASE_URL}/auth/v1",
            "aud": "authenticated",
            "sub": str(user_id),
            "email": "fuzz@example.com",
            "role": "authenticated",
            "iat": now,
            "exp": now + 3600,
        },
        JWT_SECRET,
        algorithm="HS256",
    )
    try:
        yield Served(url=url, user_id=user_id, token=token)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
    if failure:
        raise failure[0]


@pytest.fixture(scope="module")
def api_schema(served: Served) -> schemathesis.BaseSchema:
    # Through schemathesis' own auth, so negative cases that drop or break the
    # token are generated (and judged) as such.
    config = schemathesis.Config.from_dict(
        {"auth": {"openapi": {"HTTPBearer": {"bearer": served.token}}}}
    )
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json", config=config)


def _run(operation, mode: GenerationMode, served: Served) -> None:
    # schemathesis' own pytest integration (`from_fixture`) does not run on
    # pytest 9.2, so each operation gets a plain Hypothesis test.
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate()

    check()


EXAMPLES = 25


class TestOpenApiContract:
    @pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    def test_every_operation_keeps_the_promises_of_the_document(
        self, api_schema, served, mode
    ):
        before = _requests_served()
        failures: list[str] = []
        operations = [result.ok() for result in api_schema.get_all_operations()]
        for operation in operations:
            try:
                _run(operation, mode, served)
            except Unsatisfiable:
                # No way to break a request without parameters or body.
                assert mode is GenerationMode.NEGATIVE
            except Exception as exc:
                failures.append(f"{operation.label}:\n{exc}")

        assert len(operations) >= 20
        assert not failures, "\n\n".join(failures)
        # It really ran: many requests reached the API, and some got through.
        served_now = _requests_served()
        assert sum(served_now.values()) - sum(before.values()) >= 5 * len(operations)
        if mode is GenerationMode.POSITIVE:
            assert served_now.get("2xx", 0) - before.get("2xx", 0) >= len(operations)


def _requests_served() -> dict[str, float]:
    by_class: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "yourclaw_gateway_api_api_requests":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels["status"][0] + "xx"
                    by_class[key] = by_class.get(key, 0) + sample.value
    return by_class
