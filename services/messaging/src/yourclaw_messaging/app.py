"""main(): settings → pg pool → nats → topology → consumers → wait for SIGTERM → drain."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import aiohttp
import asyncpg
from yourclaw_common.crypto import SecretBox
from yourclaw_common.logging import configure_logging, get_logger
from yourclaw_common.runtime import (
    install_signal_handlers,
    open_runtime,
    run_consumers,
    tune_gc,
)

from yourclaw_messaging.assistant import AssistantClient
from yourclaw_messaging.channels.base import Channel
from yourclaw_messaging.channels.sms import SmsChannel
from yourclaw_messaging.channels.sms import incoming as sms_in
from yourclaw_messaging.channels.telegram import TelegramChannel
from yourclaw_messaging.channels.telegram import incoming as telegram_in
from yourclaw_messaging.channels.whatsapp import Templates, WhatsAppChannel
from yourclaw_messaging.channels.whatsapp import incoming as whatsapp_in
from yourclaw_messaging.commands import Commands
from yourclaw_messaging.consumers import CONSUMERS
from yourclaw_messaging.handlers import on_event, on_inbound
from yourclaw_messaging.limits import Limits
from yourclaw_messaging.proactive import Proactive
from yourclaw_messaging.settings import MessagingSettings
from yourclaw_messaging.speech import HostedMedia, Speaker, VoiceReplies
from yourclaw_messaging.telegram import TelegramClient
from yourclaw_messaging.turns import Turns
from yourclaw_messaging.twilio import TwilioClient
from yourclaw_messaging.voice import Transcriber, VoiceNotes
from yourclaw_messaging.wake import Waker

log = get_logger(__name__)


class _Sending(TypedDict):
    """How every Twilio channel sends (`TwilioChannel`'s settings)."""

    status_callback: str
    send_retries: int
    send_rate: float
    send_confirm_seconds: float


_CONSUMERS = [
    CONSUMERS.MESSAGING_INBOUND_WHATSAPP,
    CONSUMERS.MESSAGING_INBOUND_STATUS,
    CONSUMERS.MESSAGING_OUTBOUND_WHATSAPP,
    CONSUMERS.MESSAGING_ASSISTANT_READY,
    CONSUMERS.MESSAGING_ASSISTANT_RESTARTED,
    CONSUMERS.MESSAGING_USAGE_NOTICES,
]


async def run(settings: MessagingSettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set (tests call this directly)."""
    secrets = SecretBox(settings.encryption_key.get_secret_value())
    # A channel that is off gets no durable consumer.
    telegram_token = settings.telegram_bot_token.get_secret_value()
    consumers = list(_CONSUMERS)
    if settings.twilio_sms_number:
        consumers.append(CONSUMERS.MESSAGING_INBOUND_SMS)
    if telegram_token:
        consumers.append(CONSUMERS.MESSAGING_INBOUND_TELEGRAM)
    async with (
        open_runtime(settings, stop=stop, consumers=consumers) as runtime,
        # aiohttp: a fifth of httpx's CPU per call, which is most of a turn's.
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        # A new connection per turn: OpenClaw's server closes an idle kept-alive
        # connection after 5 s (aiohttp would keep it 15 s), and a gateway may be
        # re-created at the same address; a turn sent on such a connection gets
        # nothing back, and its user an apology. A turn takes seconds; a
        # connection, a round trip.
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True)
        ) as gateways,
    ):
        pool = runtime.pool
        limits = Limits(
            per_minute=settings.rate_limit_msg_per_min,
            per_day=settings.rate_limit_msg_per_day,
            tokens_per_day=settings.rate_limit_tokens_per_day,
        )
        twilio = TwilioClient(
            http,
            api_base=settings.twilio_api_base,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
        )
        # What every Twilio channel sends with: the same retries, confirmation
        # wait and status callbacks, a send rate per sender.
        sending: _Sending = {
            "status_callback": settings.twilio_status_callback_url,
            "send_retries": settings.twilio_send_retries,
            "send_rate": settings.twilio_send_rate_per_second,
            "send_confirm_seconds": settings.twilio_send_confirm_seconds,
        }
        whatsapp = WhatsAppChannel(
            pool=pool,
            twilio=twilio,
            sender=settings.twilio_whatsapp_number,
            templates=Templates(
                assistant_ready=settings.twilio_template_assistant_ready,
                notification=settings.twilio_template_notification,
            ),
            allowed=settings.whatsapp_allowed_countries,
            app_url=settings.app_url,
            voice_media=hosted_media(settings, pool),
            **sending,
        )
        channels: dict[str, Channel] = {"whatsapp": whatsapp}
        if settings.twilio_sms_number:
            channels["sms"] = SmsChannel(
                pool=pool,
                twilio=twilio,
                sender=settings.twilio_sms_number,
                app_url=settings.app_url,
                **sending,
            )
        if telegram_token:
            channels["telegram"] = TelegramChannel(
                pool=pool,
                client=TelegramClient(
                    http, api_base=settings.telegram_api_base, token=telegram_token
                ),
                app_url=settings.app_url,
            )
        turns = Turns(
            pool=pool,
            channels=channels,
            assistant=AssistantClient(
                gateways, timeout=settings.assistant_timeout_seconds
            ),
            secrets=secrets,
            commands=Commands(
                app_url=settings.app_url,
                limits=limits,
                llm_allowance_usd=settings.llm_monthly_allowance_usd,
                service_name=settings.service_name,
                channels=tuple(channels),
            ),
            app_url=settings.app_url,
            limits=limits,
            media_max_bytes=settings.media_max_bytes,
            voice_notes=voice_notes(settings, http),
            voice_replies=voice_replies(settings, http, pool),
            not_ready_deliveries=settings.assistant_not_ready_deliveries,
            waker=Waker(runtime.nc, timeout=settings.assistant_wake_timeout_seconds),
        )
        proactive = Proactive(
            pool=pool,
            channels=channels,
            limits=limits,
            app_url=settings.app_url,
            llm_allowance_usd=settings.llm_monthly_allowance_usd,
        )
        log.info(
            "messaging.started",
            twilio_api_base=settings.twilio_api_base,
            channels=list(channels),
        )
        # Each channel's messages, converted to one `Incoming`, take one path.
        inbound = [
            (CONSUMERS.MESSAGING_INBOUND_WHATSAPP, on_inbound(turns, whatsapp_in)),
        ]
        if "sms" in channels:
            inbound.append((CONSUMERS.MESSAGING_INBOUND_SMS, on_inbound(turns, sms_in)))
        if "telegram" in channels:
            inbound.append(
                (CONSUMERS.MESSAGING_INBOUND_TELEGRAM, on_inbound(turns, telegram_in))
            )
        await run_consumers(
            runtime,
            [
                *inbound,
                (CONSUMERS.MESSAGING_INBOUND_STATUS, on_event(whatsapp.handle_status)),
                (
                    CONSUMERS.MESSAGING_OUTBOUND_WHATSAPP,
                    on_event(proactive.handle_outbound),
                ),
                (CONSUMERS.MESSAGING_ASSISTANT_READY, on_event(proactive.handle_ready)),
                (
                    CONSUMERS.MESSAGING_ASSISTANT_RESTARTED,
                    on_event(proactive.handle_restarted),
                ),
                (CONSUMERS.MESSAGING_USAGE_NOTICES, on_event(proactive.handle_usage)),
            ],
            concurrency=settings.messaging_concurrency,
        )


def _audio_endpoint(settings: MessagingSettings) -> tuple[str | None, str]:
    """The base URL voice notes and voice replies go to (llm-proxy, or the
    stand-in in dev) and the credential; no base: neither is possible."""
    token = settings.llm_proxy_service_token.get_secret_value()
    if settings.voice_transcription_url and token:
        return settings.voice_transcription_url, token
    if settings.voice_transcription_url:
        # The proxy would refuse every call: voice notes are told they can't
        # be heard rather than failing one by one.
        log.warning("messaging.voice.no_service_token")
        return None, token
    if settings.dev_llm_base_url:
        return settings.dev_llm_base_url, token or "dev"  # takes any key
    return None, token


def voice_notes(settings: MessagingSettings, http: aiohttp.ClientSession) -> VoiceNotes:
    """Voice notes through llm-proxy, or the stand-in in dev, or not at all."""
    base, key = _audio_endpoint(settings)
    transcriber = (
        Transcriber(
            http,
            base,
            token=key,
            model=settings.voice_transcription_model,
            timeout_seconds=settings.voice_transcription_timeout_seconds,
        )
        if base
        else None
    )
    return VoiceNotes(transcriber, max_bytes=settings.voice_max_bytes)


def voice_replies(
    settings: MessagingSettings, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> VoiceReplies | None:
    """Spoken answers to voice notes, where voice notes are heard at all."""
    base, key = _audio_endpoint(settings)
    if base is None:
        return None
    speaker = Speaker(
        http,
        base,
        token=key,
        model=settings.voice_reply_model,
        voice=settings.voice_reply_voice,
        timeout_seconds=settings.voice_reply_timeout_seconds,
    )
    return VoiceReplies(pool, speaker, max_chars=settings.voice_reply_max_chars)


def hosted_media(settings: MessagingSettings, pool: asyncpg.Pool) -> HostedMedia | None:
    """Where WhatsApp voice replies wait for Twilio; None without a signing key
    (gateway-api would refuse every link)."""
    key = settings.media_url_signing_key.get_secret_value()
    if not key:
        return None
    return HostedMedia(
        pool,
        public_base_url=settings.public_base_url,
        signing_key=key,
        ttl_seconds=settings.voice_reply_media_ttl_seconds,
    )


async def main() -> None:
    settings = MessagingSettings()
    configure_logging(settings.service_name, settings.log_level)
    # Every turn allocates many short-lived objects, like a webhook does.
    tune_gc()
    stop = asyncio.Event()
    install_signal_handlers(stop)
    await run(settings, stop)
