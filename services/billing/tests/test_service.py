"""The rules of `service.py` on a real Postgres (each test rolled back), with a
scripted Stripe whose subscription moves through a realistic history:

    stage 0  checkout paid      → active      checkout.session.completed,
                                              customer.subscription.created,
                                              invoice.paid, invoice.payment_succeeded
    stage 1  renewal declined   → past_due    invoice.payment_failed,
                                              customer.subscription.updated
    stage 2  retry paid         → active      invoice.paid, invoice.payment_succeeded,
                                              customer.subscription.updated
    stage 3  canceled           → canceled    customer.subscription.deleted

Webhooks of a stage can only be delivered once Stripe has reached it, but any
later, in any order, any number of times.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yourclaw_billing.service import (
    ACTIVE,
    CANCELED,
    PAST_DUE,
    Billing,
    EventOutcome,
    derive_status,
)
from yourclaw_billing.stripe_api import SubscriptionSnapshot, from_timestamp
from yourclaw_common.events import StripeEventReceived, Subject, provider_event_id

USER = uuid.UUID("5d0c1c9e-8a31-4f7e-9a55-0f4c2d7e6b01")
CUS, SUB = "cus_history", "sub_history"
T0 = 1_800_000_000
DAY = 24 * 3600
GRACE = timedelta(days=7)

ACTIVATED = Subject.SUBSCRIPTION_ACTIVATED.value
PAST_DUE_EVENT = Subject.SUBSCRIPTION_PAST_DUE.value
CANCELED_EVENT = Subject.SUBSCRIPTION_CANCELED.value


def subscription_obj(
    status: str,
    period: tuple[int, int],
    *,
    sub_id: str = SUB,
    created: int = T0,
    user: uuid.UUID = USER,
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": CUS,
        "status": status,
        "created": created,
        "metadata": {"user_id": str(user)},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "object": "subscription_item",
                    "current_period_start": period[0],
                    "current_period_end": period[1],
                }
            ],
        },
    }


def invoice_obj(invoice_id: str, status: str, sub_id: str = SUB) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": CUS,
        "status": status,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": sub_id,
                "metadata": {"user_id": str(USER)},
            },
        },
    }


def event(n: int, type_: str, created: int, obj: dict[str, Any]) -> StripeEventReceived:
    evt_id = f"evt_{n:02d}_{type_}"
    return StripeEventReceived(
        event_id=provider_event_id(evt_id),
        stripe_event_id=evt_id,
        type=type_,
        created=created,
        data={"object": obj},
    )


@dataclass(frozen=True)
class Stage:
    time: int
    state: dict[str, Any]
    events: list[StripeEventReceived]


def realistic_history() -> list[Stage]:
    t1, t2 = T0 + 30 * DAY, T0 + 32 * DAY
    t3 = t2 + DAY
    first, second = (T0, T0 + 30 * DAY), (T0 + 30 * DAY, T0 + 60 * DAY)
    session = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": CUS,
        "subscription": SUB,
        "client_reference_id": str(USER),
        "metadata": {"user_id": str(USER)},
    }
    active, past_due = (
        subscription_obj("active", first),
        subscription_obj("past_due", second),
    )
    active_again = subscription_obj("active", second)
    canceled = subscription_obj("canceled", second)
    return [
        Stage(
            T0,
            active,
            [
                event(1, "checkout.session.completed", T0, session),
                event(2, "customer.subscription.created", T0, active),
                event(3, "invoice.paid", T0, invoice_obj("in_1", "paid")),
                event(4, "invoice.payment_succeeded", T0, invoice_obj("in_1", "paid")),
            ],
        ),
        Stage(
            t1,
            past_due,
            [
                event(5, "invoice.payment_failed", t1, invoice_obj("in_2", "open")),
                event(6, "customer.subscription.updated", t1, past_due),
            ],
        ),
        Stage(
            t2,
            active_again,
            [
                event(7, "invoice.paid", t2, invoice_obj("in_2", "paid")),
                event(8, "invoice.payment_succeeded", t2, invoice_obj("in_2", "paid")),
                event(9, "customer.subscription.updated", t2, active_again),
            ],
        ),
        Stage(t3, canceled, [event(10, "customer.subscription.deleted", t3, canceled)]),
    ]


HISTORY = realistic_history()
EVENTS = [e for stage in HISTORY for e in stage.events]
STAGE_OF = [n for n, stage in enumerate(HISTORY) for _ in stage.events]


class ScriptedStripe:
    """Stripe at one stage of the history: what a fetch returns, and when."""

    def __init__(self, stages: list[Stage]):
        self.stages = list(stages)
        self.stage = 0
        self.fetches = 0

    @property
    def now(self) -> int:
        return self.stages[self.stage].time + 60

    async def retrieve_subscription(self, subscription_id: str):
        self.fetches += 1
        state = self.stages[self.stage].state
        assert subscription_id == state["id"]
        return SubscriptionSnapshot.parse(state), from_timestamp(self.now)

    async def create_customer(self, **_: Any) -> str:
        raise NotImplementedError

    async def create_checkout_session(self, *_: Any, **__: Any) -> str:
        raise NotImplementedError

    async def create_portal_session(self, **_: Any) -> str:
        raise NotImplementedError


def billing_with(stripe: ScriptedStripe) -> Billing:
    return Billing(stripe, price_id="price_x", app_url="https://app.test", grace=GRACE)


async def add_user(conn, user_id: uuid.UUID = USER) -> None:
    await conn.execute("INSERT INTO users (id) VALUES ($1)", user_id)


async def deliver(
    conn, billing: Billing, stripe: ScriptedStripe, schedule: list[tuple[int, int]]
) -> list[str]:
    """Apply (event, Stripe's stage at delivery) in order, each in its own
    transaction as the handler does; returns each outcome."""
    outcomes = []
    for index, stage in schedule:
        stripe.stage = stage
        async with conn.transaction():
            outcomes.append(
                await billing.apply_stripe_event(
                    conn, EVENTS[index], now=from_timestamp(stripe.now + 60)
                )
            )
    return outcomes


async def final_state(conn) -> tuple[Any, ...]:
    row = await conn.fetchrow(
        "SELECT status, stripe_status, stripe_subscription_id, stripe_customer_id,"
        " current_period_end, past_due_since FROM subscriptions WHERE user_id = $1",
        USER,
    )
    return tuple(row) if row else ()


async def emitted(conn) -> list[str]:
    # Scoped to USER: tests that commit share this database.
    rows = await conn.fetch(
        "SELECT subject FROM outbox WHERE payload->>'user_id' = $1 ORDER BY id",
        str(USER),
    )
    return [r["subject"] for r in rows]


async def recorded(conn, event_ids: list[str]) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM stripe_events WHERE id = ANY($1::text[])", event_ids
        )
    )


async def past_due_since(conn):
    return await conn.fetchval(
        "SELECT past_due_since FROM subscriptions WHERE user_id = $1", USER
    )


IN_ORDER = [(n, STAGE_OF[n]) for n in range(len(EVENTS))]


@st.composite
def deliveries(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Every event at least once, some twice, in any order; Stripe's stage at
    each delivery is at least the event's own and never goes back."""
    n = len(EVENTS)
    extra = draw(st.lists(st.integers(0, n - 1), max_size=n))
    order = draw(st.permutations(list(range(n)) + extra))
    ahead = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    schedule, stage = [], 0
    for index, bump in zip(order, ahead, strict=True):
        stage = min(len(HISTORY) - 1, max(stage + bump, STAGE_OF[index]))
        schedule.append((index, stage))
    return schedule


class TestDeriveStatus:
    @pytest.mark.parametrize(
        ("stripe_status", "ours"),
        [
            ("active", ACTIVE),
            ("trialing", ACTIVE),
            ("past_due", PAST_DUE),
            ("unpaid", PAST_DUE),
            ("canceled", CANCELED),
            ("incomplete_expired", CANCELED),
            ("paused", CANCELED),
            ("incomplete", None),
        ],
    )
    def test_maps_stripe_statuses(self, stripe_status, ours):
        now = from_timestamp(T0)
        since = now - timedelta(days=1)
        assert derive_status(stripe_status, since, now=now, grace=GRACE) == ours

    def test_past_due_becomes_canceled_when_the_grace_runs_out(self):
        since = from_timestamp(T0)
        inside = since + GRACE - timedelta(seconds=1)
        assert derive_status("past_due", since, now=inside, grace=GRACE) == PAST_DUE
        assert derive_status("past_due", since, now=since + GRACE, grace=GRACE) == (
            CANCELED
        )


class TestApplyStripeEvent:
    async def test_in_order_history_emits_each_transition_once(self, db_conn):
        await add_user(db_conn)
        stripe = ScriptedStripe(HISTORY)

        await deliver(db_conn, billing_with(stripe), stripe, IN_ORDER)

        assert await emitted(db_conn) == [
            ACTIVATED,
            PAST_DUE_EVENT,
            ACTIVATED,
            CANCELED_EVENT,
        ]
        assert await final_state(db_conn) == (
            CANCELED,
            "canceled",
            SUB,
            CUS,
            from_timestamp(T0 + 60 * DAY),
            None,
        )
        assert await recorded(db_conn, [e.stripe_event_id for e in EVENTS]) == len(
            EVENTS
        )

    async def test_duplicate_event_is_noop(self, db_conn):
        await add_user(db_conn)
        stripe = ScriptedStripe(HISTORY)
        billing = billing_with(stripe)

        outcomes = await deliver(db_conn, billing, stripe, [(1, 0), (1, 0)])

        assert outcomes == [EventOutcome.APPLIED, EventOutcome.DUPLICATE]
        assert await emitted(db_conn) == [ACTIVATED]

    async def test_newer_event_is_applied_from_its_own_object(self, db_conn):
        await add_user(db_conn)
        stripe = ScriptedStripe(HISTORY)
        billing = billing_with(stripe)
        await deliver(db_conn, billing, stripe, [(0, 0)])
        fetches = stripe.fetches

        # Stripe already moved on (stage 3), but the event is newer than what we
        # hold: its object is used without asking Stripe.
        await deliver(db_conn, billing, stripe, [(5, 3)])

        assert stripe.fetches == fetches
        assert (await final_state(db_conn))[:2] == (PAST_DUE, "past_due")

    async def test_older_event_refetches_and_never_goes_back(self, db_conn):
        await add_user(db_conn)
        stripe = ScriptedStripe(HISTORY)
        billing = billing_with(stripe)
        await deliver(db_conn, billing, stripe, [(9, 3)])
        assert (await final_state(db_conn))[0] == CANCELED
        fetches = stripe.fetches

        # The "active" subscription.created of stage 0 arrives last.
        await deliver(db_conn, billing, stripe, [(1, 3)])

        assert stripe.fetches == fetches + 1
        assert (await final_state(db_conn))[:2] == (CANCELED, "canceled")
        assert await emitted(db_conn) == []

    async def test_ended_subscription_does_not_replace_a_live_one(self, db_conn):
        await add_user(db_conn)
        new = subscription_obj("active", (T0 + 90 * DAY, T0 + 120 * DAY))
        new.update(id="sub_new", created=T0 + 90 * DAY)
        stripe = ScriptedStripe([Stage(T0 + 90 * DAY, new, [])])
        billing = billing_with(stripe)
        created = event(20, "customer.subscription.created", T0 + 90 * DAY, new)
        old_deleted = HISTORY[3].events[0]

        async with db_conn.transaction():
            await billing.apply_stripe_event(
                db_conn, created, now=from_timestamp(stripe.now)
            )
        stripe.stages = [Stage(T0 + 90 * DAY, HISTORY[3].state, [])]
        async with db_conn.transaction():
            outcome = await billing.apply_stripe_event(
                db_conn, old_deleted, now=from_timestamp(stripe.now)
            )

        assert outcome == EventOutcome.OTHER_SUBSCRIPTION
        assert (await final_state(db_conn))[:3] == (ACTIVE, "active", "sub_new")
        assert await emitted(db_conn) == [ACTIVATED]

    async def test_resubscription_takes_over_a_canceled_row(self, db_conn):
        await add_user(db_conn)
        stripe = ScriptedStripe(HISTORY)
        billing = billing_with(stripe)
        await deliver(db_conn, billing, stripe, IN_ORDER)
        new = subscription_obj(
            "active",
            (T0 + 90 * DAY, T0 + 120 * DAY),
            sub_id="sub_new",
            created=T0 + 90 * DAY,
        )
        stripe.stages.append(Stage(T0 + 90 * DAY, new, []))
        stripe.stage = len(stripe.stages) - 1

        async with db_conn.transaction():
            await billing.apply_stripe_event(
                db_conn,
                event(21, "customer.subscription.created", T0 + 90 * DAY, new),
                now=from_timestamp(stripe.now),
            )

        assert (await final_state(db_conn))[:3] == (ACTIVE, "active", "sub_new")
        assert (await emitted(db_conn))[-2:] == [CANCELED_EVENT, ACTIVATED]

    async def test_unknown_user_is_recorded_and_skipped(self, db_conn):
        stripe = ScriptedStripe(HISTORY)  # USER is not in `users`

        outcomes = await deliver(db_conn, billing_with(stripe), stripe, [(1, 0)])

        assert outcomes == [EventOutcome.UNKNOWN_USER]
        assert await final_state(db_conn) == ()
        assert await recorded(db_conn, [EVENTS[1].stripe_event_id]) == 1

    async def test_incomplete_subscription_makes_no_row(self, db_conn):
        await add_user(db_conn)
        pending = subscription_obj("incomplete", (T0, T0 + 30 * DAY))
        stripe = ScriptedStripe([Stage(T0, pending, [])])

        async with db_conn.transaction():
            outcome = await billing_with(stripe).apply_stripe_event(
                db_conn,
                event(22, "customer.subscription.created", T0, pending),
                now=from_timestamp(stripe.now),
            )

        assert outcome == EventOutcome.NOT_STARTED
        assert await final_state(db_conn) == ()

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(schedule=deliveries())
    async def test_any_delivery_order_ends_as_in_order_without_contradictions(
        self, db_conn, schedule
    ):
        expected_state, expected_events = await _run(db_conn, IN_ORDER)
        assert expected_events == [ACTIVATED, PAST_DUE_EVENT, ACTIVATED, CANCELED_EVENT]

        state, events = await _run(db_conn, schedule)

        assert state == expected_state
        # Each event announces a change: never the same one twice in a row, never
        # a cancellation of something that was not announced, and nothing after
        # the final cancellation.
        assert all(a != b for a, b in itertools.pairwise(events))
        if events:
            assert events[0] != CANCELED_EVENT
            assert events[-1] == CANCELED_EVENT


async def _run(conn, schedule) -> tuple[tuple[Any, ...], list[str]]:
    """Deliver on a fresh database state (a savepoint rolled back after)."""
    tr = conn.transaction()
    await tr.start()
    try:
        await add_user(conn)
        stripe = ScriptedStripe(HISTORY)
        await deliver(conn, billing_with(stripe), stripe, schedule)
        return await final_state(conn), await emitted(conn)
    finally:
        await tr.rollback()


class TestEndGracePeriod:
    async def _past_due(self, db_conn) -> Billing:
        await add_user(db_conn)
        stripe = ScriptedStripe(HISTORY)
        billing = billing_with(stripe)
        await deliver(db_conn, billing, stripe, [(0, 0), (4, 1)])
        assert (await final_state(db_conn))[0] == PAST_DUE
        return billing

    async def test_within_the_grace_period_nothing_changes(self, db_conn):
        billing = await self._past_due(db_conn)
        since = await past_due_since(db_conn)
        now = since + GRACE - timedelta(minutes=1)

        assert USER not in await billing.expired_grace_candidates(db_conn, now=now)
        assert not await billing.end_grace_period(db_conn, USER, now=now)
        assert (await final_state(db_conn))[0] == PAST_DUE

    async def test_after_it_the_user_loses_the_assistant(self, db_conn):
        billing = await self._past_due(db_conn)
        since = await past_due_since(db_conn)
        now = since + GRACE + timedelta(minutes=1)

        assert USER in await billing.expired_grace_candidates(db_conn, now=now)
        assert await billing.end_grace_period(db_conn, USER, now=now)
        assert not await billing.end_grace_period(db_conn, USER, now=now)

        assert (await final_state(db_conn))[:2] == (CANCELED, "past_due")
        assert await emitted(db_conn) == [ACTIVATED, PAST_DUE_EVENT, CANCELED_EVENT]

    async def test_a_later_past_due_event_keeps_it_canceled(self, db_conn):
        billing = await self._past_due(db_conn)
        since = await past_due_since(db_conn)
        await billing.end_grace_period(db_conn, USER, now=since + GRACE)
        stripe = billing.stripe
        assert isinstance(stripe, ScriptedStripe)

        # Stripe retries the charge and fails again, weeks later.
        stripe.stage = 1
        retry = event(
            30,
            "invoice.payment_failed",
            HISTORY[1].time + 9 * DAY,
            invoice_obj("in_2", "open"),
        )
        async with db_conn.transaction():
            await billing.apply_stripe_event(
                db_conn, retry, now=since + GRACE + timedelta(days=2)
            )

        assert (await final_state(db_conn))[0] == CANCELED
        assert (await emitted(db_conn))[-1] == CANCELED_EVENT
