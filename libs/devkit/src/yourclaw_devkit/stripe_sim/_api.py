"""Stripe's API as billing calls it: one router per resource (customers,
checkout sessions, subscriptions, billing portal sessions, events), each
declared by what it can create, list, retrieve and delete."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from yourclaw_devkit.stripe_sim._account import (
    StripeError,
    StripeSim,
    list_object,
    parse_stripe_form,
)

__all__ = ["api_router"]

_Form = dict[str, Any]
_Object = dict[str, Any]
_COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
}


class _Api:
    """What every API route does around its own work: check the secret key,
    parse the form, answer JSON or a Stripe error, replay an Idempotency-Key."""

    def __init__(self, secret_key: str, sim: StripeSim):
        self._secret_key = secret_key.encode()
        self.sim = sim

    def _authorize(self, request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.encode(), self._secret_key
        ):
            raise StripeError(
                401,
                "Invalid API Key provided.",
                code="api_key_invalid" if key else None,
            )

    async def __call__(
        self, request: Request, action: Callable[[_Form], _Object]
    ) -> Response:
        try:
            self._authorize(request)
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
            replayed = self.sim.replay(key, fingerprint)
            if replayed is not None:
                return Response(
                    replayed[1],
                    status_code=replayed[0],
                    media_type="application/json",
                    headers={"idempotent-replayed": "true", "idempotency-key": key},
                )
            body = orjson.dumps(action(form))
            self.sim.remember(key, fingerprint, 200, body)
            return Response(
                body, media_type="application/json", headers={"idempotency-key": key}
            )
        except StripeError as exc:
            return exc.response()
        except (ValueError, TypeError) as exc:
            return StripeError(400, f"Invalid parameter: {exc}").response()


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _page(
    objects: Iterable[_Object],
    form: _Form,
    url: str,
    *,
    by: str = "",
    keep: Callable[[_Object], bool] = lambda _: True,
) -> _Object:
    """A list endpoint's answer: the objects `keep` takes (and, if the form
    names `by`, whose `by` is that value), newest first, from after
    `starting_after`, at most `limit` (1 to 100, 10 by default)."""
    wanted = form.get(by) if by else None
    found = [
        o
        for o in reversed(list(objects))
        if keep(o) and (not wanted or o[by] == wanted)
    ]
    if after := form.get("starting_after"):
        ids = [o["id"] for o in found]
        found = found[ids.index(after) + 1 :] if after in ids else []
    limit = max(1, min(100, int(form.get("limit") or 10)))
    return list_object(found[:limit], url, has_more=len(found) > limit)


def _all(form: _Form) -> Callable[[_Object], bool]:
    return lambda _: True


def _resource(
    api: _Api,
    prefix: str,
    *,
    create: Callable[[_Form, str], _Object] | None = None,
    objects: Callable[[], Iterable[_Object]] | None = None,
    by: str = "",
    keep: Callable[[_Form], Callable[[_Object], bool]] = _all,
    retrieve: Callable[[str], _Object] | None = None,
    delete: Callable[[str], _Object] | None = None,
) -> APIRouter:
    """One resource's routes: `POST <prefix>` (`create`, given the form and our
    base URL), `GET <prefix>` (`objects` as `_page` lists them, `keep(form)`
    filtering), `GET` and `DELETE <prefix>/{id}`; each only if given."""
    router = APIRouter(prefix=prefix)
    if create is not None:
        make = create

        @router.post("")
        async def create_object(request: Request) -> Response:
            return await api(request, lambda form: make(form, _base_url(request)))

    if objects is not None:
        listed = objects

        @router.get("")
        async def list_objects(request: Request) -> Response:
            return await api(
                request,
                lambda form: _page(listed(), form, prefix, by=by, keep=keep(form)),
            )

    if retrieve is not None:
        one = retrieve

        @router.get("/{object_id}")
        async def retrieve_object(request: Request, object_id: str) -> Response:
            return await api(request, lambda _: one(object_id))

    if delete is not None:
        gone = delete

        @router.delete("/{object_id}")
        async def delete_object(request: Request, object_id: str) -> Response:
            return await api(request, lambda _: gone(object_id))

    return router


def _subscription_status(form: _Form) -> Callable[[_Object], bool]:
    # Stripe's default leaves canceled ones out; "all" keeps them.
    status = form.get("status")
    if status == "all":
        return lambda _: True
    if status:
        return lambda s: bool(s["status"] == status)
    return lambda s: bool(s["status"] != "canceled")


def _event_filter(sim: StripeSim) -> Callable[[_Form], Callable[[_Object], bool]]:
    """`GET /v1/events`'s filters: type(s), `created` bounds, delivery success."""

    def of(form: _Form) -> Callable[[_Object], bool]:
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

        def wanted(event: _Object) -> bool:
            if types is not None and event["type"] not in types:
                return False
            if not all(
                _COMPARISONS[op](event["created"], v) for op, v in bounds.items()
            ):
                return False
            if delivery is not None:
                record = sim.webhooks.deliveries.get(event["id"])
                delivered = record is not None and record.delivered
                return bool(delivered == (delivery == "true"))
            return True

        return wanted

    return of


def api_router(*, secret_key: str, sim: StripeSim) -> APIRouter:
    """Stripe's API routes billing uses, authenticated with `secret_key`."""
    api = _Api(secret_key, sim)
    router = APIRouter()
    for resource in (
        _resource(
            api,
            "/v1/customers",
            create=lambda form, _: sim.create_customer(form),
            objects=sim.customers.values,
            by="email",
            retrieve=sim.customer,
        ),
        _resource(
            api,
            "/v1/checkout/sessions",
            create=sim.create_checkout_session,
            objects=sim.sessions.values,
            by="customer",
            retrieve=sim.session,
        ),
        _resource(
            api,
            "/v1/subscriptions",
            objects=sim.subscriptions.values,
            by="customer",
            keep=_subscription_status,
            retrieve=sim.subscription,
            delete=sim.cancel,
        ),
        _resource(api, "/v1/billing_portal/sessions", create=sim.create_portal_session),
        _resource(
            api,
            "/v1/events",
            objects=lambda: sim.events,
            keep=_event_filter(sim),
            retrieve=sim.event,
        ),
    ):
        router.include_router(resource)
    return router
