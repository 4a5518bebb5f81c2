"""What billing shows Prometheus: subscriptions by status (the billing
dashboard) and the runner's lag and dead-letter gauges, on METRICS_PORT."""

import httpx
from yourclaw_common.embedded import free_port
from yourclaw_common.testing import eventually
from yourclaw_common.testing.factories import subscribed_user


async def test_subscriptions_by_status_and_runner_gauges(start_billing, clean_db):
    await subscribed_user(clean_db, phone="+15550100001")
    await subscribed_user(clean_db, phone="+15550100002")
    await subscribed_user(clean_db, phone="+15550100003", status="PAST_DUE")
    port = free_port()
    await start_billing(metrics_port=port)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/readyz")).status_code == 200

        async def scraped() -> str | None:
            text = (await http.get("/metrics")).text
            return (
                text
                if 'yourclaw_billing_subscriptions{status="ACTIVE"} 2.0' in text
                else None
            )

        text = await eventually(scraped, message="subscriptions gauge not exported")
    assert 'yourclaw_billing_subscriptions{status="PAST_DUE"} 1.0' in text
    assert 'yourclaw_billing_subscriptions{status="CANCELED"} 0.0' in text
    durable = 'consumer="billing-stripe-events"'
    assert f"yourclaw_billing_consumer_pending_messages{{{durable}}} 0.0" in text
    assert f"yourclaw_billing_dead_letter_messages{{{durable}}} 0.0" in text
