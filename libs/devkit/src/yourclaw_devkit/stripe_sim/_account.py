"""The Stripe account in memory: its objects, its events, Stripe's errors and
form encoding."""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

from fastapi.responses import JSONResponse

from yourclaw_devkit.stripe_sim._webhooks import StripeWebhooks

__all__ = [
    "API_VERSION",
    "LIVE",
    "StripeError",
    "StripeSim",
    "list_object",
    "missing",
    "parse_stripe_form",
]

API_VERSION = "2026-10-28.endive"
_PERIOD_SECONDS = 30 * 24 * 3600
_SESSION_TTL_SECONDS = 24 * 3600
_UNIT_AMOUNT = 2000
_CURRENCY = "usd"
_PRODUCT = "prod_yourclaw_pro"
LIVE = ("active", "trialing", "past_due", "unpaid")


class StripeError(Exception):
    """An API error, rendered in Stripe's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {
            "error": {
                "type": type_,
                "message": message,
                **({"code": code} if code else {}),
                **({"param": param} if param else {}),
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def missing(kind: str, obj_id: str, param: str = "id") -> StripeError:
    return StripeError(
        404, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def parse_stripe_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][0][c]=v` pairs → nested dicts, with all-digit keys turned into lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        path = [head] + ([p.rstrip("]") for p in rest.split("[")] if rest else [])
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise StripeError(400, f"Invalid nesting for parameter {key}")
        leaf = path[-1]
        if leaf == "":  # `a[]=x`: append
            leaf = str(len(node))
        node[leaf] = value

    def listify(value: Any) -> Any:
        if isinstance(value, dict):
            converted = {k: listify(v) for k, v in value.items()}
            if converted and all(k.isdigit() for k in converted):
                return [converted[k] for k in sorted(converted, key=int)]
            return converted
        return value

    result = listify(root)
    assert isinstance(result, dict)
    return result


def _str_map(value: Any, param: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        raise StripeError(400, f"Invalid object for {param}", param=param)
    return dict(value)


def _price(price_id: str) -> dict[str, Any]:
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "currency": _CURRENCY,
        "unit_amount": _UNIT_AMOUNT,
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "usage_type": "licensed",
        },
        "type": "recurring",
        "product": _PRODUCT,
        "livemode": False,
    }


def list_object(
    items: list[dict[str, Any]], url: str, *, has_more: bool = False
) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more, "url": url}


class StripeSim:
    """The Stripe account's objects and events, in memory."""

    def __init__(self, webhooks: StripeWebhooks, *, max_events: int = 10_000):
        self.webhooks = webhooks
        self._max_events = max_events
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.portal_sessions: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        # Checkout data that Stripe keeps but does not show on the session.
        self._session_lines: dict[str, list[dict[str, Any]]] = {}
        self._session_sub_metadata: dict[str, dict[str, str]] = {}
        self._idempotency: dict[str, tuple[str, int, bytes]] = {}

    def clear(self) -> None:
        for store in (
            self.customers,
            self.sessions,
            self.subscriptions,
            self.invoices,
            self.portal_sessions,
            self._session_lines,
            self._session_sub_metadata,
            self._idempotency,
            self.webhooks.deliveries,
        ):
            store.clear()
        self.events.clear()

    # Events

    def emit(
        self,
        type_: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = previous
        event = {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        self.events.append(event)
        del self.events[: -self._max_events]
        self.webhooks.send(event)
        return event

    # Customers

    def create_customer(self, form: dict[str, Any]) -> dict[str, Any]:
        customer: dict[str, Any] = {
            "id": _new_id("cus"),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": int(time.time()),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": form.get("description"),
            "email": form.get("email") or None,
            "invoice_settings": {"default_payment_method": None},
            "livemode": False,
            "metadata": _str_map(form.get("metadata"), "metadata"),
            "name": form.get("name") or None,
            "phone": None,
            "preferred_locales": [],
            "tax_exempt": "none",
        }
        self.customers[customer["id"]] = customer
        self.emit("customer.created", customer)
        return customer

    def customer(self, customer_id: str, param: str = "id") -> dict[str, Any]:
        found = self.customers.get(customer_id)
        if found is None:
            raise missing("customer", customer_id, param)
        return found

    # Checkout

    def create_checkout_session(
        self, form: dict[str, Any], base_url: str
    ) -> dict[str, Any]:
        mode = form.get("mode")
        if mode != "subscription":
            raise StripeError(
                400,
                "devsim implements Checkout in subscription mode only",
                param="mode",
            )
        if not form.get("success_url"):
            raise StripeError(
                400, "Missing required param: success_url.", param="success_url"
            )
        lines = form.get("line_items")
        if not isinstance(lines, list) or not lines:
            raise StripeError(
                400, "Missing required param: line_items.", param="line_items"
            )
        parsed_lines = []
        for n, line in enumerate(lines):
            if not isinstance(line, dict) or not line.get("price"):
                raise StripeError(
                    400,
                    f"Missing required param: line_items[{n}][price].",
                    param=f"line_items[{n}][price]",
                )
            quantity = int(line.get("quantity") or 1)
            parsed_lines.append({"price": line["price"], "quantity": quantity})
        customer_id = form.get("customer") or None
        if customer_id is not None:
            self.customer(customer_id, "customer")
        subscription_data = form.get("subscription_data") or {}
        now = int(time.time())
        session_id = "cs_test_" + secrets.token_hex(16)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": _UNIT_AMOUNT * parsed_lines[0]["quantity"],
            "amount_total": _UNIT_AMOUNT * parsed_lines[0]["quantity"],
            "cancel_url": form.get("cancel_url") or None,
            "client_reference_id": form.get("client_reference_id") or None,
            "created": now,
            "currency": _CURRENCY,
            "customer": customer_id,
            "customer_email": form.get("customer_email") or None,
            "expires_at": now + _SESSION_TTL_SECONDS,
            "invoice": None,
            "livemode": False,
            "metadata": _str_map(form.get("metadata"), "metadata"),
            "mode": mode,
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": form["success_url"],
            "url": f"{base_url}/_devsim/stripe/checkout/{session_id}",
        }
        self.sessions[session_id] = session
        self._session_lines[session_id] = parsed_lines
        self._session_sub_metadata[session_id] = _str_map(
            subscription_data.get("metadata"), "subscription_data[metadata]"
        )
        return session

    def session(self, session_id: str) -> dict[str, Any]:
        found = self.sessions.get(session_id)
        if found is None:
            raise missing("checkout.session", session_id)
        if found["status"] == "open" and found["expires_at"] < time.time():
            found["status"] = "expired"
        return found

    def pay(self, session_id: str) -> dict[str, Any]:
        """What the buyer's "Pay" does: subscription, paid invoice, webhooks."""
        session = self.session(session_id)
        if session["status"] == "complete":
            return session  # a second click: nothing more happens
        if session["status"] != "open":
            raise StripeError(400, "This Checkout Session is no longer active.")
        customer_id = session["customer"]
        if customer_id is None:
            customer_id = self.create_customer({"email": session["customer_email"]})[
                "id"
            ]
        line = self._session_lines[session_id][0]
        subscription = self._new_subscription(
            customer_id,
            line["price"],
            line["quantity"],
            self._session_sub_metadata[session_id],
        )
        invoice = self._new_invoice(subscription, "subscription_create", paid=True)
        session.update(
            customer=customer_id,
            status="complete",
            payment_status="paid",
            subscription=subscription["id"],
            invoice=invoice["id"],
        )
        self.emit("checkout.session.completed", session)
        self.emit("customer.subscription.created", subscription)
        self.emit("invoice.paid", invoice)
        self.emit("invoice.payment_succeeded", invoice)
        return session

    # Subscriptions and invoices

    def _new_subscription(
        self, customer_id: str, price_id: str, quantity: int, metadata: dict[str, str]
    ) -> dict[str, Any]:
        now = int(time.time())
        sub_id = _new_id("sub")
        item = {
            "id": _new_id("si"),
            "object": "subscription_item",
            "created": now,
            "current_period_start": now,
            "current_period_end": now + _PERIOD_SECONDS,
            "metadata": {},
            "price": _price(price_id),
            "quantity": quantity,
            "subscription": sub_id,
        }
        subscription = {
            "id": sub_id,
            "object": "subscription",
            "billing_cycle_anchor": now,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": _CURRENCY,
            "customer": customer_id,
            "ended_at": None,
            "items": list_object(
                [item], f"/v1/subscription_items?subscription={sub_id}"
            ),
            "latest_invoice": None,
            "livemode": False,
            "metadata": dict(metadata),
            "start_date": now,
            "status": "active",
        }
        self.subscriptions[sub_id] = subscription
        return subscription

    def _new_invoice(
        self, subscription: dict[str, Any], reason: str, *, paid: bool
    ) -> dict[str, Any]:
        item = subscription["items"]["data"][0]
        amount = item["price"]["unit_amount"] * item["quantity"]
        invoice = {
            "id": _new_id("in"),
            "object": "invoice",
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            "amount_remaining": 0 if paid else amount,
            "attempt_count": 1,
            "attempted": True,
            "billing_reason": reason,
            "collection_method": "charge_automatically",
            "created": int(time.time()),
            "currency": _CURRENCY,
            "customer": subscription["customer"],
            "livemode": False,
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(subscription["metadata"]),
                    "subscription": subscription["id"],
                },
            },
            "period_end": item["current_period_end"],
            "period_start": item["current_period_start"],
            "status": "paid" if paid else "open",
        }
        self.invoices[invoice["id"]] = invoice
        subscription["latest_invoice"] = invoice["id"]
        return invoice

    def event(self, event_id: str) -> dict[str, Any]:
        for event in self.events:
            if event["id"] == event_id:
                return event
        raise missing("event", event_id)

    def subscription(self, sub_id: str) -> dict[str, Any]:
        found = self.subscriptions.get(sub_id)
        if found is None:
            raise missing("subscription", sub_id)
        return found

    def _advance_period(self, subscription: dict[str, Any]) -> dict[str, Any]:
        item = subscription["items"]["data"][0]
        previous = {
            "current_period_start": item["current_period_start"],
            "current_period_end": item["current_period_end"],
        }
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] += _PERIOD_SECONDS
        return {"items": {"data": [previous]}}

    def fail_renewal(self, sub_id: str) -> dict[str, Any]:
        """The next period's charge is declined: past_due."""
        subscription = self.subscription(sub_id)
        if subscription["status"] not in ("active", "trialing"):
            raise StripeError(400, f"Subscription is {subscription['status']}.")
        previous = self._advance_period(subscription)
        invoice = self._new_invoice(subscription, "subscription_cycle", paid=False)
        previous.update(status=subscription["status"])
        subscription["status"] = "past_due"
        self.emit("invoice.payment_failed", invoice)
        self.emit("customer.subscription.updated", subscription, previous)
        return subscription

    def renew(self, sub_id: str) -> dict[str, Any]:
        """A successful charge: the open invoice of a past_due subscription is
        paid, or an active one starts its next period."""
        subscription = self.subscription(sub_id)
        status = subscription["status"]
        if status in ("past_due", "unpaid"):
            invoice = self.invoices[subscription["latest_invoice"]]
            invoice.update(
                status="paid",
                amount_paid=invoice["amount_due"],
                amount_remaining=0,
                attempt_count=invoice["attempt_count"] + 1,
            )
            previous: dict[str, Any] = {"status": status}
        elif status in ("active", "trialing"):
            previous = self._advance_period(subscription)
            invoice = self._new_invoice(subscription, "subscription_cycle", paid=True)
        else:
            raise StripeError(400, f"Subscription is {status}.")
        subscription["status"] = "active"
        self.emit("invoice.paid", invoice)
        self.emit("invoice.payment_succeeded", invoice)
        self.emit("customer.subscription.updated", subscription, previous)
        return subscription

    def cancel(self, sub_id: str) -> dict[str, Any]:
        subscription = self.subscription(sub_id)
        if subscription["status"] == "canceled":
            raise StripeError(
                400,
                f"A canceled subscription can only update its cancellation_details "
                f"and metadata. ({sub_id})",
            )
        now = int(time.time())
        subscription.update(status="canceled", canceled_at=now, ended_at=now)
        self.emit("customer.subscription.deleted", subscription)
        return subscription

    # Portal

    def create_portal_session(
        self, form: dict[str, Any], base_url: str
    ) -> dict[str, Any]:
        customer_id = form.get("customer")
        if not customer_id:
            raise StripeError(
                400, "Missing required param: customer.", param="customer"
            )
        self.customer(customer_id, "customer")
        portal_id = _new_id("bps")
        portal = {
            "id": portal_id,
            "object": "billing_portal.session",
            "configuration": "bpc_devsim",
            "created": int(time.time()),
            "customer": customer_id,
            "flow": None,
            "livemode": False,
            "locale": None,
            "on_behalf_of": None,
            "return_url": form.get("return_url") or None,
            "url": f"{base_url}/_devsim/stripe/portal/{portal_id}",
        }
        self.portal_sessions[portal_id] = portal
        return portal

    # Idempotency

    def replay(self, key: str, fingerprint: str) -> tuple[int, bytes] | None:
        found = self._idempotency.get(key)
        if found is None:
            return None
        if found[0] != fingerprint:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with.",
                type_="idempotency_error",
            )
        return found[1], found[2]

    def remember(self, key: str, fingerprint: str, status: int, body: bytes) -> None:
        self._idempotency[key] = (fingerprint, status, body)
