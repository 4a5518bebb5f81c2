"""A local Stripe: the API calls billing makes, a hosted checkout page, a customer
portal page, and Stripe-signed webhooks.

Billing reaches it through `STRIPE_API_BASE` with stripe-python, so it speaks
Stripe's wire format: form-encoded requests with bracketed keys
(`metadata[user_id]=…`, `line_items[0][price]=…`), `Authorization: Bearer
sk_…`, JSON objects with `id`/`object`/`created`, list objects, errors as
`{"error": {"type", "message", "code", "param"}}`, and `Idempotency-Key`
replays. The objects follow the current API version: a subscription's period is
on its items, an invoice names its subscription under `parent`.

The "Pay" button of the checkout page creates the subscription and its paid
invoice and sends `checkout.session.completed`, `customer.subscription.created`,
`invoice.paid` and `invoice.payment_succeeded`; the portal page cancels
(`customer.subscription.deleted`) and simulates a failed or a successful
renewal. Webhooks go, in order and retried a few times, to one endpoint signed
with `STRIPE_WEBHOOK_SECRET`. Routes that exist only here start with
`/_devsim/stripe/`.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import html
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from yourclaw_common.logging import get_logger

from yourclaw_devkit.signing import stripe_signature

__all__ = ["StripeSim", "StripeWebhooks", "parse_stripe_form", "stripe_router"]

log = get_logger(__name__)

API_VERSION = "2026-10-28.endive"
_PERIOD_SECONDS = 30 * 24 * 3600
_SESSION_TTL_SECONDS = 24 * 3600
_UNIT_AMOUNT = 2000
_CURRENCY = "usd"
_PRODUCT = "prod_yourclaw_pro"
_DELIVERY_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0)
_LIVE = ("active", "trialing", "past_due", "unpaid")


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


def _missing(kind: str, obj_id: str, param: str = "id") -> StripeError:
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


def _list(
    items: list[dict[str, Any]], url: str, *, has_more: bool = False
) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more, "url": url}


@dataclass
class _Delivery:
    event_id: str
    type: str
    statuses: list[int | str] = field(default_factory=list)
    delivered: bool = False


class StripeWebhooks:
    """Delivers events to one endpoint, in order, signed, retried a few times."""

    def __init__(self, *, url: str, secret: str):
        self.url = url
        self._secret = secret
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None
        self.deliveries: dict[str, _Delivery] = {}

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=10.0)
        self._worker = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def send(self, event: dict[str, Any]) -> None:
        self.deliveries[event["id"]] = _Delivery(event["id"], event["type"])
        self._queue.put_nowait(event)

    async def idle(self) -> None:
        """Wait until every queued event was delivered or given up on."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._deliver(event)
            except Exception as exc:  # one bad delivery must not stop the rest
                log.warning("devsim.stripe.webhook_error", error=str(exc))
            finally:
                self._queue.task_done()

    async def _deliver(self, event: dict[str, Any]) -> None:
        assert self._client is not None
        record = self.deliveries[event["id"]]
        if not self.url:
            record.statuses.append("no endpoint")
            return
        payload = orjson.dumps(event)
        for delay in _DELIVERY_DELAYS:
            await asyncio.sleep(delay)
            headers = {
                "content-type": "application/json; charset=utf-8",
                "stripe-signature": stripe_signature(payload, self._secret),
                "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            try:
                response = await self._client.post(
                    self.url, content=payload, headers=headers
                )
            except httpx.HTTPError as exc:
                record.statuses.append(type(exc).__name__)
                continue
            record.statuses.append(response.status_code)
            if 200 <= response.status_code < 300:
                record.delivered = True
                break
        log.info(
            "devsim.stripe.webhook",
            stripe_event_id=event["id"],
            type=event["type"],
            delivered=record.delivered,
            attempts=len(record.statuses),
        )


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
            raise _missing("customer", customer_id, param)
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
            raise _missing("checkout.session", session_id)
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
            "items": _list([item], f"/v1/subscription_items?subscription={sub_id}"),
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

    def subscription(self, sub_id: str) -> dict[str, Any]:
        found = self.subscriptions.get(sub_id)
        if found is None:
            raise _missing("subscription", sub_id)
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


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;"
        "padding:0 1rem;color:#1a1f36}.card{border:1px solid #e3e8ee;border-radius:8px;"
        "padding:1.5rem;margin:1rem 0}button{background:#635bff;color:#fff;border:0;"
        "border-radius:6px;padding:.7rem 1.4rem;font-size:1rem;cursor:pointer;"
        "margin:.2rem 0}button.secondary{background:#fff;color:#635bff;border:1px solid "
        "#635bff}.muted{color:#697386;font-size:.9rem}</style></head><body>"
        f"<p class='muted'>devsim — a local stand-in for Stripe</p>{body}</body></html>"
    )


def _when(epoch: int | None) -> str:
    return "—" if epoch is None else time.strftime("%Y-%m-%d", time.gmtime(epoch))


def stripe_router(*, secret_key: str, sim: StripeSim) -> APIRouter:
    """Stripe's API routes billing uses, and the dev-only pages and controls."""
    router = APIRouter()

    def authorized(request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.encode(), secret_key.encode()
        ):
            raise StripeError(
                401,
                "Invalid API Key provided.",
                code="api_key_invalid" if key else None,
            )

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def call(
        request: Request, action: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Response:
        """Authenticate, parse the form, run `action`, honour Idempotency-Key."""
        try:
            authorized(request)
            raw = await request.body()
            if request.method == "GET":
                pairs = parse_qsl(request.url.query, keep_blank_values=True)
            else:
                pairs = parse_qsl(raw.decode(), keep_blank_values=True)
            form = parse_stripe_form(pairs)
            key = request.headers.get("idempotency-key")
            if request.method != "POST" or not key:
                return JSONResponse(action(form))
            fingerprint = hashlib.sha256(
                request.method.encode() + request.url.path.encode() + b"\0" + raw
            ).hexdigest()
            replayed = sim.replay(key, fingerprint)
            if replayed is not None:
                return Response(
                    replayed[1],
                    status_code=replayed[0],
                    media_type="application/json",
                    headers={"idempotent-replayed": "true", "idempotency-key": key},
                )
            body = orjson.dumps(action(form))
            sim.remember(key, fingerprint, 200, body)
            return Response(
                body, media_type="application/json", headers={"idempotency-key": key}
            )
        except StripeError as exc:
            return exc.response()
        except (ValueError, TypeError) as exc:
            return StripeError(400, f"Invalid parameter: {exc}").response()

    # The API

    @router.post("/v1/customers")
    async def create_customer(request: Request) -> Response:
        return await call(request, sim.create_customer)

    @router.get("/v1/customers/{customer_id}")
    async def retrieve_customer(request: Request, customer_id: str) -> Response:
        return await call(request, lambda _: sim.customer(customer_id))

    @router.get("/v1/customers")
    async def list_customers(request: Request) -> Response:
        def action(form: dict[str, Any]) -> dict[str, Any]:
            found = [
                c
                for c in reversed(sim.customers.values())
                if not form.get("email") or c["email"] == form["email"]
            ]
            limit = int(form.get("limit") or 10)
            return _list(found[:limit], "/v1/customers", has_more=len(found) > limit)

        return await call(request, action)

    @router.post("/v1/checkout/sessions")
    async def create_checkout_session(request: Request) -> Response:
        return await call(
            request, lambda form: sim.create_checkout_session(form, base_url(request))
        )

    @router.get("/v1/checkout/sessions")
    async def list_checkout_sessions(request: Request) -> Response:
        def action(form: dict[str, Any]) -> dict[str, Any]:
            found = [
                cs
                for cs in reversed(sim.sessions.values())
                if not form.get("customer") or cs["customer"] == form["customer"]
            ]
            limit = int(form.get("limit") or 10)
            return _list(
                found[:limit], "/v1/checkout/sessions", has_more=len(found) > limit
            )

        return await call(request, action)

    @router.get("/v1/checkout/sessions/{session_id}")
    async def retrieve_checkout_session(request: Request, session_id: str) -> Response:
        return await call(request, lambda _: sim.session(session_id))

    @router.get("/v1/subscriptions/{sub_id}")
    async def retrieve_subscription(request: Request, sub_id: str) -> Response:
        return await call(request, lambda _: sim.subscription(sub_id))

    @router.delete("/v1/subscriptions/{sub_id}")
    async def cancel_subscription(request: Request, sub_id: str) -> Response:
        return await call(request, lambda _: sim.cancel(sub_id))

    @router.get("/v1/subscriptions")
    async def list_subscriptions(request: Request) -> Response:
        def action(form: dict[str, Any]) -> dict[str, Any]:
            status = form.get("status")
            found = [
                s
                for s in reversed(sim.subscriptions.values())
                if (not form.get("customer") or s["customer"] == form["customer"])
                and (
                    status == "all"
                    or (s["status"] == status if status else s["status"] != "canceled")
                )
            ]
            limit = int(form.get("limit") or 10)
            return _list(
                found[:limit], "/v1/subscriptions", has_more=len(found) > limit
            )

        return await call(request, action)

    @router.post("/v1/billing_portal/sessions")
    async def create_portal_session(request: Request) -> Response:
        return await call(
            request, lambda form: sim.create_portal_session(form, base_url(request))
        )

    @router.get("/v1/events/{event_id}")
    async def retrieve_event(request: Request, event_id: str) -> Response:
        def action(_: dict[str, Any]) -> dict[str, Any]:
            for event in sim.events:
                if event["id"] == event_id:
                    return event
            raise _missing("event", event_id)

        return await call(request, action)

    @router.get("/v1/events")
    async def list_events(request: Request) -> Response:
        return await call(request, lambda form: _list_events(sim, form))

    # Dev-only pages and controls

    @router.get("/_devsim/stripe/checkout/{session_id}", include_in_schema=False)
    async def checkout_page(session_id: str) -> Response:
        try:
            session = sim.session(session_id)
        except StripeError as exc:
            return exc.response()
        sid = html.escape(session_id)
        email = session["customer_email"] or (
            sim.customers.get(session["customer"] or "", {}).get("email")
        )
        if session["status"] == "complete":
            action = (
                "<p><strong>Paid.</strong></p>"
                f"<p><a href='{html.escape(_success_url(session))}'>Back to the app</a></p>"
            )
        elif session["status"] == "open":
            cancel = session["cancel_url"]
            action = (
                f"<form method='post' action='/_devsim/stripe/checkout/{sid}/pay'>"
                "<p class='muted'>Card 4242 4242 4242 4242 (nothing is charged)</p>"
                "<button type='submit'>Pay $20.00</button></form>"
                + (
                    f"<p><a href='{html.escape(cancel)}'>Cancel and go back</a></p>"
                    if cancel
                    else ""
                )
            )
        else:
            action = "<p>This checkout session has expired.</p>"
        return _page(
            "Checkout — YourClaw Pro",
            "<div class='card'><h2>YourClaw Pro</h2><p>$20.00 per month</p>"
            f"<p class='muted'>{html.escape(email or '')}</p>{action}</div>",
        )

    @router.post("/_devsim/stripe/checkout/{session_id}/pay", include_in_schema=False)
    async def checkout_pay(session_id: str) -> Response:
        try:
            session = sim.pay(session_id)
        except StripeError as exc:
            return exc.response()
        return RedirectResponse(_success_url(session), status_code=303)

    @router.get("/_devsim/stripe/portal/{portal_id}", include_in_schema=False)
    async def portal_page(portal_id: str) -> Response:
        portal = sim.portal_sessions.get(portal_id)
        if portal is None:
            return _missing("billing_portal.session", portal_id).response()
        rows = []
        for sub in reversed(sim.subscriptions.values()):
            if sub["customer"] != portal["customer"]:
                continue
            sid = html.escape(sub["id"])
            period_end = sub["items"]["data"][0]["current_period_end"]
            buttons = ""
            if sub["status"] in _LIVE:
                base = f"/_devsim/stripe/subscriptions/{sid}"
                back = f"?portal={html.escape(portal_id)}"
                buttons = (
                    f"<form method='post' action='{base}/cancel{back}'>"
                    "<button type='submit'>Cancel subscription</button></form>"
                    f"<form method='post' action='{base}/fail_renewal{back}'>"
                    "<button class='secondary' type='submit'>Simulate a failed renewal"
                    "</button></form>"
                    f"<form method='post' action='{base}/renew{back}'>"
                    "<button class='secondary' type='submit'>Simulate a paid renewal"
                    "</button></form>"
                )
            rows.append(
                f"<div class='card'><h3>YourClaw Pro</h3><p>Status: "
                f"<strong>{html.escape(sub['status'])}</strong></p><p class='muted'>"
                f"Current period ends {_when(period_end)} · {sid}</p>{buttons}</div>"
            )
        back_link = (
            f"<p><a href='{html.escape(portal['return_url'])}'>Return to YourClaw</a></p>"
            if portal["return_url"]
            else ""
        )
        customer = sim.customers[portal["customer"]]
        return _page(
            "Billing — YourClaw",
            "<h2>Your subscription</h2>"
            f"<p class='muted'>{html.escape(customer['email'] or '')} · "
            f"<span id='customer'>{html.escape(customer['id'])}</span></p>"
            + ("".join(rows) or "<p>No subscriptions.</p>")
            + back_link,
        )

    @router.post(
        "/_devsim/stripe/subscriptions/{sub_id}/{action}", include_in_schema=False
    )
    async def subscription_action(
        sub_id: str, action: str, portal: str | None = None
    ) -> Response:
        actions: dict[str, Callable[[str], dict[str, Any]]] = {
            "cancel": sim.cancel,
            "fail_renewal": sim.fail_renewal,
            "renew": sim.renew,
        }
        if action not in actions:
            return StripeError(404, f"Unknown action {action}").response()
        try:
            subscription = actions[action](sub_id)
        except StripeError as exc:
            return exc.response()
        if portal is not None:
            return RedirectResponse(f"/_devsim/stripe/portal/{portal}", status_code=303)
        return JSONResponse(subscription)

    @router.post("/_devsim/stripe/webhook_endpoint", include_in_schema=False)
    async def set_webhook_endpoint(request: Request) -> dict[str, str]:
        """Point webhooks elsewhere (tests start gateways on free ports)."""
        body = orjson.loads(await request.body() or b"{}")
        sim.webhooks.url = str(body.get("url") or "")
        return {"url": sim.webhooks.url}

    @router.get("/_devsim/stripe/webhooks", include_in_schema=False)
    async def webhook_deliveries(idle: bool = False) -> dict[str, Any]:
        """Deliveries so far; `?idle=true` waits for the queue to drain first."""
        if idle:
            await sim.webhooks.idle()
        return {
            "deliveries": [
                {
                    "event_id": d.event_id,
                    "type": d.type,
                    "statuses": d.statuses,
                    "delivered": d.delivered,
                }
                for d in sim.webhooks.deliveries.values()
            ]
        }

    @router.delete("/_devsim/stripe", include_in_schema=False)
    async def clear() -> dict[str, bool]:
        await sim.webhooks.idle()
        sim.clear()
        return {"cleared": True}

    return router


def _success_url(session: dict[str, Any]) -> str:
    return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])


def _list_events(sim: StripeSim, form: dict[str, Any]) -> dict[str, Any]:
    """`GET /v1/events`: newest first, with Stripe's filters and cursor."""
    created = form.get("created")
    bounds: dict[str, int] = {}
    if isinstance(created, dict):
        bounds = {op: int(v) for op, v in created.items()}
        if not set(bounds) <= {"gt", "gte", "lt", "lte"}:
            raise StripeError(400, "Invalid created filter", param="created")
    elif created:
        bounds = {"eq": int(created)}
    types = form.get("types") or ([form["type"]] if form.get("type") else None)
    delivery = form.get("delivery_success")
    checks: dict[str, Callable[[int, int], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "eq": lambda a, b: a == b,
    }

    def wanted(event: dict[str, Any]) -> bool:
        if types is not None and event["type"] not in types:
            return False
        if not all(checks[op](event["created"], v) for op, v in bounds.items()):
            return False
        if delivery is not None:
            record = sim.webhooks.deliveries.get(event["id"])
            delivered = record is not None and record.delivered
            return bool(delivered == (delivery == "true"))
        return True

    found = [e for e in reversed(sim.events) if wanted(e)]
    if after := form.get("starting_after"):
        ids = [e["id"] for e in found]
        found = found[ids.index(after) + 1 :] if after in ids else []
    limit = max(1, min(100, int(form.get("limit") or 10)))
    return _list(found[:limit], "/v1/events", has_more=len(found) > limit)
