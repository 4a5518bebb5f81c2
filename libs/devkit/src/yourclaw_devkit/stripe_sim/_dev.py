"""The dev-only side of the Stripe stand-in, under `/_devsim/stripe/`: the
hosted checkout page, the customer portal page, and the controls tests use."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from yourclaw_devkit.stripe_sim._account import LIVE, StripeError, StripeSim, missing

__all__ = ["dev_router"]


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


def _success_url(session: dict[str, Any]) -> str:
    return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])


def _router() -> APIRouter:
    return APIRouter(prefix="/_devsim/stripe", include_in_schema=False)


def _checkout(sim: StripeSim) -> APIRouter:
    router = _router()

    @router.get("/checkout/{session_id}")
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

    @router.post("/checkout/{session_id}/pay")
    async def checkout_pay(session_id: str) -> Response:
        try:
            return RedirectResponse(_success_url(sim.pay(session_id)), status_code=303)
        except StripeError as exc:
            return exc.response()

    return router


def _portal(sim: StripeSim) -> APIRouter:
    router = _router()

    @router.get("/portal/{portal_id}")
    async def portal_page(portal_id: str) -> Response:
        portal = sim.portal_sessions.get(portal_id)
        if portal is None:
            return missing("billing_portal.session", portal_id).response()
        rows = []
        for sub in reversed(sim.subscriptions.values()):
            if sub["customer"] != portal["customer"]:
                continue
            sid = html.escape(sub["id"])
            period_end = sub["items"]["data"][0]["current_period_end"]
            buttons = ""
            if sub["status"] in LIVE:
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

    @router.post("/subscriptions/{sub_id}/{action}")
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

    return router


def _controls(sim: StripeSim) -> APIRouter:
    router = _router()

    @router.post("/webhook_endpoint")
    async def set_webhook_endpoint(request: Request) -> dict[str, str]:
        """Point webhooks elsewhere (tests start gateways on free ports)."""
        body = orjson.loads(await request.body() or b"{}")
        sim.webhooks.url = str(body.get("url") or "")
        return {"url": sim.webhooks.url}

    @router.get("/webhooks")
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

    @router.delete("")
    async def clear() -> dict[str, bool]:
        await sim.webhooks.idle()
        sim.clear()
        return {"cleared": True}

    return router


def dev_router(sim: StripeSim) -> APIRouter:
    """The pages and controls that exist only here (left out of the schema)."""
    router = APIRouter()
    for part in (_checkout, _portal, _controls):
        router.include_router(part(sim))
    return router
