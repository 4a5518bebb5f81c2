"""main(): settings → pg pool → nats → topology → consumers, request/reply, outbox
relay and the grace sweep → wait for SIGTERM → drain. `reconcile`: one catch-up
pass, then exit."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from yourclaw_common.events import Subject
from yourclaw_common.logging import configure_logging, get_logger
from yourclaw_common.nats import connect_as
from yourclaw_common.runtime import (
    connect_postgres,
    install_signal_handlers,
    open_runtime,
    run_consumers,
)

from yourclaw_billing.consumers import CONSUMERS
from yourclaw_billing.handlers import (
    on_checkout_request,
    on_portal_request,
    on_stripe_event,
    sweep_grace_periods_forever,
)
from yourclaw_billing.reconcile import ReconcileResult, reconcile
from yourclaw_billing.responder import Responder
from yourclaw_billing.service import Billing
from yourclaw_billing.settings import BillingSettings
from yourclaw_billing.stripe_api import StripeApi

__all__ = ["cli", "main", "run", "run_reconcile"]

log = get_logger(__name__)

_CONSUMERS = [CONSUMERS.BILLING_STRIPE_EVENTS]


def _stripe_api(settings: BillingSettings) -> StripeApi:
    key = settings.stripe_secret_key.get_secret_value()
    if not key or not settings.stripe_price_id:
        raise SystemExit("billing needs STRIPE_SECRET_KEY and STRIPE_PRICE_ID")
    return StripeApi(
        api_key=key,
        api_base=settings.stripe_api_base,
        timeout=settings.stripe_timeout_seconds,
    )


async def run(settings: BillingSettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set (tests call this directly)."""
    stripe = _stripe_api(settings)
    try:
        async with open_runtime(settings, stop=stop, consumers=_CONSUMERS) as runtime:
            billing = Billing(
                stripe,
                price_id=settings.stripe_price_id,
                app_url=settings.app_url,
                grace=timedelta(days=settings.billing_grace_period_days),
                service=settings.service_name,
            )
            responder = Responder(runtime.nc, queue=settings.service_name)
            try:
                await responder.serve(
                    Subject.BILLING_CHECKOUT_CREATE,
                    on_checkout_request(runtime.pool, billing),
                )
                await responder.serve(
                    Subject.BILLING_PORTAL_CREATE,
                    on_portal_request(runtime.pool, billing),
                )
                log.info("billing.started", stripe_api_base=settings.stripe_api_base)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(
                        run_consumers(
                            runtime,
                            [
                                (
                                    CONSUMERS.BILLING_STRIPE_EVENTS,
                                    on_stripe_event(runtime.pool, billing),
                                )
                            ],
                        )
                    )
                    tg.create_task(
                        sweep_grace_periods_forever(
                            runtime.pool,
                            billing,
                            stop=stop,
                            interval=settings.billing_grace_check_interval_seconds,
                        )
                    )
            finally:
                await responder.close()
    finally:
        await stripe.close()


async def main() -> None:
    settings = BillingSettings()
    configure_logging(settings.service_name, settings.log_level)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    await run(settings, stop)


async def run_reconcile(settings: BillingSettings, *, days: float) -> ReconcileResult:
    """Feed the Stripe events of the last `days` that `stripe_events` lacks."""
    stripe = _stripe_api(settings)
    pool = await connect_postgres(settings)
    try:
        nc = await connect_as(settings, name=f"{settings.service_name}-reconcile")
        try:
            return await reconcile(
                pool,
                nc.jetstream(),
                stripe,
                since=datetime.now(UTC) - timedelta(days=days),
            )
        finally:
            await nc.drain()
    finally:
        await pool.close()
        await stripe.close()


def cli(argv: Sequence[str] | None = None) -> None:
    """`yourclaw-billing [serve]` or `yourclaw-billing reconcile [--days N]`."""
    parser = argparse.ArgumentParser(
        prog="yourclaw-billing", description="YourClaw billing service."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    rec = commands.add_parser(
        "reconcile",
        help="feed recent Stripe events missing from stripe_events, then exit",
    )
    rec.add_argument(
        "--days",
        type=float,
        default=3.0,
        help="how far back to look (Stripe keeps 30 days; default 3)",
    )
    args = parser.parse_args(argv)
    if args.command == "reconcile":
        if not 0 < args.days <= 30:
            parser.error("--days must be in (0, 30]")
        settings = BillingSettings(service_name="billing")
        configure_logging(settings.service_name, settings.log_level)
        asyncio.run(run_reconcile(settings, days=args.days))
    else:
        asyncio.run(main())
