"""`python -m yourclaw_gateway_api.telegram_setup` (`make telegram-webhook`):
point the bot's webhook at this deployment.

Calls setWebhook with `<PUBLIC_BASE_URL>/api/v1/webhooks/telegram`,
`secret_token = TELEGRAM_WEBHOOK_SECRET` and `allowed_updates = ["message"]`,
then prints what getWebhookInfo says. Run it once per deployment, and again
whenever the public URL or the secret changes. The token is never printed.
"""

from __future__ import annotations

import asyncio
import sys

import httpx

from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.telegram_bot import BotApi, BotApiError
from yourclaw_gateway_api.webhooks.telegram import TELEGRAM_WEBHOOK_PATH

__all__ = ["main", "set_webhook"]


async def set_webhook(
    http: httpx.AsyncClient, settings: GatewaySettings
) -> dict[str, object]:
    """Point the webhook at `settings.public_base_url`; getWebhookInfo's answer."""
    api = BotApi(
        http,
        settings.telegram_api_base,
        settings.telegram_bot_token.get_secret_value(),
    )
    await api.call(
        "setWebhook",
        url=settings.public_base_url + TELEGRAM_WEBHOOK_PATH,
        secret_token=settings.telegram_webhook_secret.get_secret_value(),
        allowed_updates=["message"],
    )
    info = await api.call("getWebhookInfo")
    return info if isinstance(info, dict) else {}


async def _run(settings: GatewaySettings) -> int:
    async with httpx.AsyncClient(timeout=15) as http:
        try:
            info = await set_webhook(http, settings)
        except BotApiError as exc:
            sys.stderr.write(f"telegram-webhook: {exc}\n")
            return 1
    sys.stdout.write(
        f"webhook: {info.get('url')}\n"
        f"allowed updates: {info.get('allowed_updates')}\n"
        f"pending updates: {info.get('pending_update_count')}\n"
    )
    if info.get("last_error_message"):
        sys.stdout.write(f"last error: {info['last_error_message']}\n")
    return 0


def main() -> int:
    """Set the webhook; the exit code."""
    settings = GatewaySettings()
    missing = [
        name
        for name, value in (
            ("TELEGRAM_BOT_TOKEN", settings.telegram_bot_token),
            ("TELEGRAM_WEBHOOK_SECRET", settings.telegram_webhook_secret),
        )
        if not value.get_secret_value()
    ]
    if missing:
        sys.stderr.write(f"telegram-webhook: set {' and '.join(missing)}\n")
        return 2
    return asyncio.run(_run(settings))


if __name__ == "__main__":
    sys.exit(main())
