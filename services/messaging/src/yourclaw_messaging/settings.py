from __future__ import annotations

from pydantic import Field, SecretStr
from yourclaw_common.channels_policy import EVERYWHERE, AllowedCountriesSetting
from yourclaw_common.settings import CommonSettings, PhoneNumberSetting


class MessagingSettings(CommonSettings):
    service_name: str = "messaging"

    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    # The shared sender, as Twilio spells it: "whatsapp:+14155238886".
    twilio_whatsapp_number: str = "whatsapp:+14155238886"
    # Our SMS number (E.164, no prefix); empty: SMS is off (no SMS consumer, no
    # SMS sends). docs/channels.md, "SMS".
    twilio_sms_number: PhoneNumberSetting = ""
    twilio_api_base: str = "https://api.twilio.com"
    # Numbers whose country lets WhatsApp carry a general-purpose assistant
    # (the same variable gateway-api reads): elsewhere a WhatsApp message is
    # answered with where to go instead, and nothing we send first goes there.
    whatsapp_allowed_countries: AllowedCountriesSetting = EVERYWHERE
    # gateway-api's status webhook as Twilio reaches it
    # (<PUBLIC_BASE_URL>/api/v1/webhooks/twilio/status); empty: no status callbacks.
    twilio_status_callback_url: str = ""
    # Approved WhatsApp templates (Content API sids, HX…), for messages outside the
    # 24-hour window. READY takes no variables; NOTIFICATION takes {{1}}: the text.
    twilio_template_assistant_ready: str = ""
    twilio_template_notification: str = ""
    # Twilio queues at most ~80 messages/s per WhatsApp sender: a token bucket
    # per sender in Postgres, shared by every replica, keeps us under it.
    twilio_send_rate_per_second: float = Field(default=80.0, gt=0)
    # Immediate retries of a send Twilio refused with 429 (20429) or a 5xx, with
    # backoff; after that the turn is redelivered later by JetStream.
    twilio_send_retries: int = Field(default=3, ge=0)

    # The Telegram bot's token (docs/channels.md); empty turns the channel off.
    telegram_bot_token: SecretStr = SecretStr("")
    # The Bot API; a stand-in in dev and tests.
    telegram_api_base: str = "https://api.telegram.org"

    # Per user, counted across every replica in Postgres. 0 turns a limit off.
    rate_limit_msg_per_min: int = Field(default=5, ge=0)
    rate_limit_msg_per_day: int = Field(default=100, ge=0)
    # Tokens (prompt + completion) a user may spend per UTC day; 0 = unlimited.
    rate_limit_tokens_per_day: int = Field(default=0, ge=0)

    # What llm-proxy lets a user spend on platform keys a month (USD), as /usage
    # and /status show it (the same variable the proxy enforces).
    llm_monthly_allowance_usd: float = Field(default=8.0, ge=0)

    # Largest inbound image fetched from Twilio and handed to the assistant.
    media_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1)

    # Voice notes: an audio attachment is transcribed by an OpenAI-compatible
    # `/v1/audio/transcriptions` and reaches the assistant as the user's text.
    # llm-proxy as messaging reaches it (it meters the minutes to the user);
    # empty: DEV_LLM_BASE_URL (the stand-in, in dev); neither: a voice note is
    # answered that it can't be heard here.
    voice_transcription_url: str = ""
    dev_llm_base_url: str | None = None
    # messaging's credential at llm-proxy (the same value in both services).
    llm_proxy_service_token: SecretStr = SecretStr("")
    voice_transcription_model: str = "whisper-1"
    voice_transcription_timeout_seconds: float = Field(default=60.0, gt=0)
    # Largest voice note fetched (WhatsApp allows 16 MB of audio; the proxy
    # takes up to LLM_PROXY_MAX_BODY_BYTES).
    voice_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1)

    # Voice replies (docs/channels.md): a user who turned them on (`/voice on`,
    # the dashboard) gets the answer to a voice note spoken too, by an
    # OpenAI-compatible /v1/audio/speech at the same place as transcriptions
    # (llm-proxy: metered to the user). Longer answers stay text only.
    voice_reply_model: str = "tts-1"
    voice_reply_voice: str = "alloy"
    voice_reply_max_chars: int = Field(default=1500, ge=1, le=4096)
    voice_reply_timeout_seconds: float = Field(default=60.0, gt=0)
    # WhatsApp: Twilio fetches the audio from gateway-api (PUBLIC_BASE_URL, as
    # Twilio reaches it) by a link signed with MEDIA_URL_SIGNING_KEY (the same
    # value in gateway-api), valid this long. No key: WhatsApp answers text only.
    public_base_url: str = "http://127.0.0.1:8000"
    media_url_signing_key: SecretStr = SecretStr("")
    voice_reply_media_ttl_seconds: int = Field(default=3600, ge=60)

    # Browser tasks can take minutes; the JetStream message is kept alive meanwhile.
    assistant_timeout_seconds: float = Field(default=600.0, gt=0)
    # Deliveries of a turn whose assistant is (re)starting (connection refused,
    # 502/503/504) before the user gets the apology; JetStream redelivers with
    # backoff (1, 2, 4 … s: 6 deliveries wait about a minute). Below the
    # consumer's max_deliver (10).
    assistant_not_ready_deliveries: int = Field(default=6, ge=1, le=9)
    # How long a turn waits for the provisioner to wake a sleeping assistant
    # (`assistant.wake.request`); a wake that fails or takes longer makes the
    # turn wait like a starting assistant's (redelivered, then the apology).
    # Keep above the provisioner's ASSISTANT_WAKE_WAIT_SECONDS +
    # HOST_COMMAND_TIMEOUT_SECONDS.
    assistant_wake_timeout_seconds: float = Field(default=45.0, gt=0)
    # A send whose outcome is unknown (the worker died, or the connection broke,
    # after asking Twilio) waits this long for Twilio's status callback, which
    # names our message id, before it is sent again. Needs
    # TWILIO_STATUS_CALLBACK_URL; without it, such a send is sent again at once.
    twilio_send_confirm_seconds: float = Field(default=60.0, ge=0)
    # Where people sign up; used in the reply to unknown numbers.
    app_url: str = "http://127.0.0.1:3000"
    messaging_concurrency: int = Field(default=16, ge=1)
