"""`yourclaw-dev pay`: complete a user's dev checkout from the terminal.

The checkout session comes from billing as the dashboard gets it (through
gateway-api with a dev sign-in for `--email`, or billing's request subject on
NATS for `--user`), and is paid the way the Stripe stand-in's hosted page does
it: its **Pay** form is posted. The stand-in then sends the Stripe-signed
webhooks, and `pay` waits until billing has activated the subscription.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from html import unescape
from urllib.parse import urljoin

import asyncpg
import httpx
from nats.errors import Error as NatsError
from yourclaw_common.events import BillingReply, CreateCheckout, Subject
from yourclaw_common.nats import connect

__all__ = [
    "AlreadySubscribed",
    "CheckoutError",
    "checkout_for_email",
    "checkout_for_user",
    "press_pay",
    "wait_for_active",
]

# The one form on the stand-in's checkout page: its Pay button.
_PAY_FORM = re.compile(r"<form[^>]*\baction='([^']+/pay)'", re.IGNORECASE)
_POLL_SECONDS = 0.3


class CheckoutError(Exception):
    """The checkout could not be opened or paid; the message says why."""


class AlreadySubscribed(CheckoutError):
    """billing has the user's subscription ACTIVE or PAST_DUE already."""


async def checkout_for_email(
    client: httpx.AsyncClient, api_url: str, email: str
) -> tuple[str, Callable[[], Awaitable[str]]]:
    """Sign in as the web app's *Dev sign-in* does and open a checkout, as its
    Subscribe button does. Returns the checkout URL and a reader of the user's
    subscription status (from the API)."""
    api = api_url.rstrip("/") + "/api/v1"
    login = await client.post(f"{api}/dev/login", json={"email": email})
    if login.status_code == 404:
        raise CheckoutError(
            f"{api}/dev/login is off: gateway-api needs DEV_LOGIN_ENABLED=true "
            "(make up sets it)"
        )
    _raise_for(login, "dev sign-in")
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    checkout = await client.post(f"{api}/checkout", headers=auth)
    if checkout.status_code == 409:
        raise AlreadySubscribed(_detail(checkout))
    _raise_for(checkout, "POST /api/v1/checkout")

    async def status() -> str:
        response = await client.get(f"{api}/subscription", headers=auth)
        _raise_for(response, "GET /api/v1/subscription")
        return str(response.json()["status"])

    return str(checkout.json()["checkout_url"]), status


async def checkout_for_user(
    nats_url: str, conn: asyncpg.Connection, user_id: uuid.UUID
) -> tuple[str, Callable[[], Awaitable[str]]]:
    """Ask billing for the user's checkout over NATS, as gateway-api does. Returns
    the checkout URL and a reader of the subscription status (from PostgreSQL)."""
    email = await conn.fetchval("SELECT email FROM users WHERE id = $1", user_id)
    request = CreateCheckout(user_id=user_id, email=email)
    try:
        nc = await connect(nats_url, name="yourclaw-dev", max_reconnect_attempts=0)
    except (OSError, NatsError, TimeoutError) as exc:
        raise CheckoutError(f"cannot reach NATS at {nats_url}: {exc}") from exc
    try:
        msg = await nc.request(
            Subject.BILLING_CHECKOUT_CREATE.value,
            request.model_dump_json().encode(),
            timeout=15,
        )
    except (NatsError, TimeoutError) as exc:
        raise CheckoutError(f"billing did not answer: {exc!r}") from exc
    finally:
        await nc.close()
    reply = BillingReply.model_validate_json(msg.data)
    if reply.code == "ALREADY_SUBSCRIBED":
        raise AlreadySubscribed(reply.detail or "already subscribed")
    if not reply.ok or not reply.url:
        raise CheckoutError(f"billing refused: {reply.code}: {reply.detail}")

    async def status() -> str:
        found = await conn.fetchval(
            "SELECT status FROM subscriptions WHERE user_id = $1", user_id
        )
        return str(found or "NONE")

    return reply.url, status


async def press_pay(client: httpx.AsyncClient, checkout_url: str) -> bool:
    """Post the checkout page's Pay form. False when the session was paid before."""
    page = await client.get(checkout_url)
    _raise_for(page, f"the checkout page {checkout_url}")
    form = _PAY_FORM.search(page.text)
    if form is None:
        if "Paid." in page.text:
            return False
        raise CheckoutError(f"no Pay button on {checkout_url} (expired?)")
    paid = await client.post(urljoin(checkout_url, unescape(form.group(1))))
    if paid.status_code != 303:
        raise CheckoutError(f"Pay answered HTTP {paid.status_code}: {paid.text[:200]}")
    return True


async def wait_for_active(
    status: Callable[[], Awaitable[str]], *, timeout: float
) -> str:
    """The subscription status once ACTIVE, or the last one seen at `timeout`."""
    deadline = time.monotonic() + timeout
    current = await status()
    while current != "ACTIVE" and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_SECONDS)
        current = await status()
    return current


def _raise_for(response: httpx.Response, what: str) -> None:
    if not response.is_success:
        raise CheckoutError(
            f"{what} answered HTTP {response.status_code}: {_detail(response)}"
        )


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        return response.text[:200]
