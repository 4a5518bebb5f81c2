"""The Stripe calls billing makes, through stripe-python, and what it reads back.

The client is built once in `app.py` with `api_base` from `STRIPE_API_BASE`, so
tests and `make up` swap the endpoint, not the code path. Every POST that
creates something carries an idempotency key derived from our own ids: a
retry, or a restart after a crash between Stripe's answer and our commit, gets
Stripe's first result back instead of a second object.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import stripe
from yourclaw_common.logging import get_logger

from yourclaw_billing import metrics
from yourclaw_billing.errors import (
    StripeRejected,
    StripeUnavailable,
    UnknownSubscription,
)

__all__ = ["StripeApi", "SubscriptionSnapshot", "from_timestamp", "object_id"]

log = get_logger(__name__)

T = TypeVar("T")


def from_timestamp(value: int | float) -> datetime:
    """Stripe's unix seconds → aware UTC datetime."""
    return datetime.fromtimestamp(value, UTC)


def object_id(value: Any) -> str | None:
    """An id field that may be a plain id or an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class SubscriptionSnapshot:
    """What billing needs of a Stripe Subscription object."""

    id: str
    customer: str
    status: str
    created: datetime
    current_period_end: datetime | None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> SubscriptionSnapshot:
        """Read a subscription from any API version we meet: the period end is on
        the subscription before 2025-03-31 (localstripe) and on its items since."""
        sub_id, customer = object_id(obj.get("id")), object_id(obj.get("customer"))
        status, created = obj.get("status"), obj.get("created")
        if not (sub_id and customer and isinstance(status, str)) or not isinstance(
            created, int
        ):
            raise UnknownSubscription(
                "not a Stripe subscription (id, customer, status, created)",
                subscription_id=sub_id,
            )
        period_end = obj.get("current_period_end")
        if not isinstance(period_end, int):
            items = (obj.get("items") or {}).get("data") or []
            ends = [
                i["current_period_end"]
                for i in items
                if isinstance(i, Mapping)
                and isinstance(i.get("current_period_end"), int)
            ]
            period_end = max(ends) if ends else None
        metadata = obj.get("metadata") or {}
        return cls(
            id=sub_id,
            customer=customer,
            status=status,
            created=from_timestamp(created),
            current_period_end=None
            if period_end is None
            else from_timestamp(period_end),
            metadata={str(k): str(v) for k, v in metadata.items()},
        )


def _response_date(obj: Any) -> datetime:
    """When Stripe answered, by Stripe's clock (the `Date` header); ours if absent.

    A fetched object is the truth as of this moment, so events created up to it
    are older than what we hold.
    """
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "date":
            try:
                return parsedate_to_datetime(value).astimezone(UTC)
            except (TypeError, ValueError):
                break
    return datetime.now(UTC)


class _HTTPXClient(stripe.HTTPXClient):
    """stripe-python's httpx client, with the form body sent as `content=`.

    stripe 16.1.0 passes its encoded body as `data=`, which httpx 0.28 deprecates
    with a warning on every POST (an error under our test settings).
    """

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        args: list[Any] = super()._get_request_args_kwargs(
            method, url, headers, post_data
        )
        kwargs = args[1]
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data
        return args


class StripeApi:
    """The few Stripe operations billing performs; owns its HTTP client."""

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str,
        timeout: float = 20.0,
        max_network_retries: int = 2,
    ):
        self._http = _HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await call
        except stripe.InvalidRequestError as exc:
            outcome = "rejected"
            if exc.http_status == 404:
                raise UnknownSubscription(
                    f"Stripe has no such object ({operation})", code="STRIPE_NOT_FOUND"
                ) from exc
            if exc.code == "resource_missing":
                # An object a parameter names (a deleted customer) is missing: 400.
                raise StripeRejected(
                    f"Stripe has no such {exc.param or 'object'} ({operation})",
                    code="STRIPE_NOT_FOUND",
                ) from exc
            raise StripeRejected(
                f"Stripe rejected {operation}: {exc.user_message or exc.code}"
            ) from exc
        except stripe.IdempotencyError as exc:
            outcome = "rejected"
            raise StripeRejected(
                f"Stripe rejected {operation}: idempotency key reused"
            ) from exc
        except stripe.StripeError as exc:
            # Network, 5xx, 429, and authentication: nothing the request can fix.
            outcome = "unavailable"
            log.warning(
                "billing.stripe.unavailable",
                operation=operation,
                http_status=exc.http_status,
                error_type=type(exc).__name__,
                request_id=exc.request_id,
            )
            raise StripeUnavailable(f"Stripe is unavailable ({operation})") from exc
        finally:
            metrics.STRIPE_API_SECONDS.labels(operation, outcome).observe(
                time.perf_counter() - started
            )

    async def create_customer(
        self, *, email: str | None, metadata: Mapping[str, str], idempotency_key: str
    ) -> str:
        params: dict[str, Any] = {"metadata": dict(metadata)}
        if email:
            params["email"] = email
        customer = await self._call(
            "customers.create",
            self._client.v1.customers.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            ),
        )
        return str(customer.id)

    async def create_checkout_session(
        self, params: Mapping[str, Any], *, idempotency_key: str
    ) -> str:
        session = await self._call(
            "checkout.sessions.create",
            self._client.v1.checkout.sessions.create_async(
                dict(params),  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            ),
        )
        if not session.url:
            raise StripeRejected("Stripe returned a Checkout Session without a url")
        return str(session.url)

    async def create_portal_session(self, *, customer: str, return_url: str) -> str:
        # Nothing is created that a retry could duplicate: stripe-python's own
        # random key covers its retries.
        portal = await self._call(
            "billing_portal.sessions.create",
            self._client.v1.billing_portal.sessions.create_async(
                {"customer": customer, "return_url": return_url}
            ),
        )
        return str(portal.url)

    async def retrieve_subscription(
        self, subscription_id: str
    ) -> tuple[SubscriptionSnapshot, datetime]:
        """The subscription now, and when "now" was by Stripe's clock."""
        sub = await self._call(
            "subscriptions.retrieve",
            self._client.v1.subscriptions.retrieve_async(subscription_id),
        )
        return SubscriptionSnapshot.parse(sub.to_dict()), _response_date(sub)

    async def list_events(
        self, *, since: datetime, types: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Every event of these types created since `since`, oldest first."""

        async def collect() -> list[dict[str, Any]]:
            page = await self._client.v1.events.list_async(
                {
                    "created": {"gte": int(since.timestamp())},
                    "types": list(types),
                    "limit": 100,
                }
            )
            return [event.to_dict() async for event in page.auto_paging_iter()]

        events = await self._call("events.list", collect())
        return sorted(events, key=lambda e: (e.get("created", 0), e.get("id", "")))
