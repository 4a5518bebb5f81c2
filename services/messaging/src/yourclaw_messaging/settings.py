from __future__ import annotations

from pydantic import Field, SecretStr
from yourclaw_common.settings import CommonSettings


class MessagingSettings(CommonSettings):
    service_name: str = "messaging"

    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    # The shared sender, as Twilio spells it: "whatsapp:+14155238886".
    twilio_whatsapp_number: str = "whatsapp:+14155238886"
    twilio_api_base: str = "https://api.twilio.com"

    # Browser tasks can take minutes; the JetStream message is kept alive meanwhile.
    assistant_timeout_seconds: float = Field(default=600.0, gt=0)
    # Where people sign up; used in the reply to unknown numbers.
    app_url: str = "http://127.0.0.1:3000"
    messaging_concurrency: int = Field(default=16, ge=1)
