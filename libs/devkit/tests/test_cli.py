from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from twilio.request_validator import RequestValidator
from yourclaw_common.crypto import SecretBox, SecretBoxError
from yourclaw_devkit.cli import (
    WHATSAPP_WEBHOOK_PATH,
    PhoneTakenError,
    dev_user_id,
    inbound_whatsapp_form,
    main,
    normalize_phone,
    register_dev_user,
    sign_webhook,
)
from yourclaw_devkit.defaults import DEV_TWILIO_ACCOUNT_SID as SID
from yourclaw_devkit.defaults import DEV_TWILIO_AUTH_TOKEN as TOKEN
from yourclaw_devkit.serving import running_app

PUBLIC_BASE_URL = "https://yourclaw.example.test"
PHONE = "+15551234567"
MESSAGES_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


def form_for(body: str = "hello", **extra: Any) -> dict[str, str]:
    return inbound_whatsapp_form(
        phone=PHONE, body=body, to="whatsapp:+14155238886", account_sid=SID, **extra
    )


class TestNormalizePhone:
    @pytest.mark.parametrize(
        "raw", ["+15551234567", "whatsapp:+15551234567", "+1 (555) 123-4567"]
    )
    def test_accepts_common_spellings(self, raw):
        assert normalize_phone(raw) == "+15551234567"

    @pytest.mark.parametrize("raw", ["15551234567", "+0123", "hello", ""])
    def test_rejects_non_e164(self, raw):
        with pytest.raises(ValueError, match=r"E\.164"):
            normalize_phone(raw)


class TestInboundWhatsappForm:
    def test_has_twilio_fields(self):
        form = form_for("hi there")

        assert form["MessageSid"].startswith("SM")
        assert len(form["MessageSid"]) == 34
        assert form["SmsMessageSid"] == form["SmsSid"] == form["MessageSid"]
        assert form["From"] == "whatsapp:+15551234567"
        assert form["To"] == "whatsapp:+14155238886"
        assert form["WaId"] == "15551234567"
        assert form["Body"] == "hi there"
        assert form["NumMedia"] == "0"
        assert form["AccountSid"] == SID
        assert form["ApiVersion"] == "2010-04-01"
        assert form["ProfileName"]

    def test_given_sid_and_media(self):
        form = form_for(message_sid="SMfixed", media_urls=["https://e.x/cat.png"])

        assert form["MessageSid"] == "SMfixed"
        assert form["NumMedia"] == "1"
        assert form["MediaUrl0"] == "https://e.x/cat.png"
        assert form["MediaContentType0"] == "image/png"


class TestSignWebhook:
    def test_signature_validates_with_request_validator(self):
        form = form_for()

        url, signature = sign_webhook(PUBLIC_BASE_URL + "/", form, TOKEN)

        assert url == PUBLIC_BASE_URL + WHATSAPP_WEBHOOK_PATH
        assert RequestValidator(TOKEN).validate(url, form, signature)
        # Twilio may sign with or without the default port; the validator tries both.
        assert RequestValidator(TOKEN).validate(
            "https://yourclaw.example.test:443" + WHATSAPP_WEBHOOK_PATH, form, signature
        )

    def test_tampered_request_does_not_validate(self):
        form = form_for()
        url, signature = sign_webhook(PUBLIC_BASE_URL, form, TOKEN)
        validator = RequestValidator(TOKEN)

        assert not validator.validate(url, {**form, "Body": "changed"}, signature)
        assert not validator.validate(url.replace("whatsapp", "sms"), form, signature)
        assert not RequestValidator("other-token").validate(url, form, signature)


class TestDevUserId:
    def test_is_stable_per_phone(self):
        assert dev_user_id(PHONE) == dev_user_id(PHONE)
        assert dev_user_id(PHONE) != dev_user_id("+15557654321")
        assert dev_user_id(PHONE).version == 5


async def counts(conn: Any, user_id: uuid.UUID) -> dict[str, int]:
    out = {}
    for table in ("user_phones", "subscriptions", "assistants"):
        out[table] = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE user_id = $1", user_id
        )
    out["users"] = await conn.fetchval(
        "SELECT count(*) FROM users WHERE id = $1", user_id
    )
    return out


class TestRegisterDevUser:
    @pytest.fixture
    def box(self, encryption_key):
        return SecretBox(encryption_key)

    @pytest.fixture
    def register(self, db_conn, box):
        """register_dev_user for PHONE; endpoint http://a:1 and token tok-1
        unless given."""

        async def run(**options):
            options = {"endpoint": "http://a:1", "token": "tok-1", **options}
            return await register_dev_user(db_conn, phone=PHONE, box=box, **options)

        return run

    async def test_creates_ready_rows(self, db_conn, register):
        user = await register(
            email="dev@example.com", endpoint="http://127.0.0.1:8900/"
        )

        assert user.user_id == dev_user_id(PHONE)
        assert await counts(db_conn, user.user_id) == {
            "user_phones": 1,
            "subscriptions": 1,
            "assistants": 1,
            "users": 1,
        }
        sub = await db_conn.fetchrow(
            "SELECT * FROM subscriptions WHERE user_id = $1", user.user_id
        )
        assert sub["status"] == "ACTIVE"
        assert sub["stripe_customer_id"].startswith("cus_dev_")
        assistant = await db_conn.fetchrow(
            "SELECT * FROM assistants WHERE user_id = $1", user.user_id
        )
        assert assistant["status"] == "READY"
        assert assistant["base_url"] == "http://127.0.0.1:8900"
        assert assistant["id"] == user.assistant_id
        assert "tok-1" not in assistant["gateway_token_encrypted"]
        email = await db_conn.fetchval(
            "SELECT email FROM users WHERE id = $1", user.user_id
        )
        assert email == "dev@example.com"

    async def test_running_twice_updates_the_same_rows(self, db_conn, box, register):
        first = await register(email="dev@example.com")
        await db_conn.execute(
            "UPDATE assistants SET status = 'ERROR', last_error = 'x' WHERE user_id = $1",
            first.user_id,
        )

        second = await register(endpoint="http://b:2", token="tok-2")

        assert second == first
        assert (await counts(db_conn, first.user_id))["assistants"] == 1
        assistant = await db_conn.fetchrow(
            "SELECT * FROM assistants WHERE user_id = $1", first.user_id
        )
        assert (assistant["status"], assistant["last_error"]) == ("READY", None)
        assert assistant["base_url"] == "http://b:2"
        token = box.decrypt(
            assistant["gateway_token_encrypted"], owner=str(first.user_id)
        )
        assert token == "tok-2"
        email = await db_conn.fetchval(
            "SELECT email FROM users WHERE id = $1", first.user_id
        )
        assert email == "dev@example.com"  # kept when --email is not given

    async def test_token_decrypts_only_for_its_owner(self, db_conn, box, register):
        user = await register()
        ciphertext = await db_conn.fetchval(
            "SELECT gateway_token_encrypted FROM assistants WHERE user_id = $1",
            user.user_id,
        )

        assert box.decrypt(ciphertext, owner=str(user.user_id)) == "tok-1"
        with pytest.raises(SecretBoxError):
            box.decrypt(ciphertext, owner=str(uuid.uuid4()))

    async def test_phone_of_another_user_is_refused(self, db_conn, register):
        other = uuid.uuid4()
        await db_conn.execute("INSERT INTO users (id) VALUES ($1)", other)
        await db_conn.execute(
            "INSERT INTO user_phones (user_id, phone_e164) VALUES ($1, $2)",
            other,
            PHONE,
        )

        with pytest.raises(PhoneTakenError, match=str(other)):
            await register()


class TestRegisterCommand:
    async def test_prints_only_the_user_id_and_is_idempotent(
        self, clean_db, database_url, encryption_key, monkeypatch, capsys
    ):
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("ENCRYPTION_KEY", encryption_key)
        argv = ["register", "--phone", PHONE, "--token", "very-secret-token"]

        assert await asyncio.to_thread(main, argv) == 0
        first = capsys.readouterr()
        assert await asyncio.to_thread(main, [*argv, "--endpoint", "http://x:9"]) == 0
        second = capsys.readouterr()

        user_id = dev_user_id(PHONE)
        assert first.out.strip() == second.out.strip() == str(user_id)
        for output in (first, second):
            assert "very-secret-token" not in output.out + output.err
        async with clean_db.acquire() as conn:
            assert await counts(conn, user_id) == {
                "user_phones": 1,
                "subscriptions": 1,
                "assistants": 1,
                "users": 1,
            }
            base_url = await conn.fetchval(
                "SELECT base_url FROM assistants WHERE user_id = $1", user_id
            )
        assert base_url == "http://x:9"

    async def test_endpoint_defaults_to_dev_assistant_url(
        self, clean_db, database_url, encryption_key, monkeypatch
    ):
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("ENCRYPTION_KEY", encryption_key)
        monkeypatch.setenv("DEV_ASSISTANT_URL", "http://127.0.0.1:8911/")

        assert await asyncio.to_thread(main, ["register", "--phone", PHONE]) == 0

        async with clean_db.acquire() as conn:
            base_url = await conn.fetchval(
                "SELECT base_url FROM assistants WHERE user_id = $1", dev_user_id(PHONE)
            )
        assert base_url == "http://127.0.0.1:8911"

    async def test_needs_an_encryption_key(self, database_url, monkeypatch, capsys):
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("ENCRYPTION_KEY", "")

        assert await asyncio.to_thread(main, ["register", "--phone", PHONE]) == 1
        assert "ENCRYPTION_KEY" in capsys.readouterr().err


def fake_gateway(devsim_url: str, *, reply: bool = True) -> tuple[FastAPI, list[str]]:
    """A gateway-api stand-in: checks the signature as the real one must, dedupes on
    MessageSid, and answers through the Twilio stand-in."""
    app = FastAPI()
    statuses: list[str] = []
    seen: set[str] = set()

    @app.post(WHATSAPP_WEBHOOK_PATH)
    async def webhook(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        url = PUBLIC_BASE_URL + WHATSAPP_WEBHOOK_PATH
        signature = request.headers.get("x-twilio-signature", "")
        if not RequestValidator(TOKEN).validate(url, form, signature):
            statuses.append("forged")
            return JSONResponse(
                {"detail": "bad signature", "code": "BAD_SIGNATURE"}, 403
            )
        statuses.append(form["MessageSid"])
        if reply and form["MessageSid"] not in seen:
            seen.add(form["MessageSid"])
            parts = 2 if "two parts" in form["Body"] else 1
            async with httpx.AsyncClient(base_url=devsim_url) as client:
                for part in range(1, parts + 1):
                    response = await client.post(
                        MESSAGES_PATH,
                        data={
                            "To": form["From"],
                            "From": form["To"],
                            "Body": f"part {part}: {form['Body']}",
                        },
                        auth=(SID, TOKEN),
                    )
                    response.raise_for_status()
        return Response("<Response></Response>", media_type="text/xml")

    return app, statuses


@pytest.fixture
def cli_env(monkeypatch, devsim_url):
    monkeypatch.setenv("TWILIO_API_BASE", devsim_url)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("TWILIO_WHATSAPP_NUMBER", "whatsapp:+14155238886")
    monkeypatch.setenv("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
    return monkeypatch


@pytest.fixture
def cli_via_gateway(devsim, devsim_url, cli_env):
    """Run the CLI against `fake_gateway` (which answers through devsim unless
    `reply=False`); the exit code and what the gateway saw."""

    async def run(argv: list[str], *, reply: bool = True) -> tuple[int, list[str]]:
        app, statuses = fake_gateway(devsim_url, reply=reply)
        async with running_app(app) as gateway_url:
            cli_env.setenv("API_URL", gateway_url)
            code = await asyncio.to_thread(main, argv)
        return code, statuses

    return run


class TestSendCommand:
    async def test_signed_webhook_gets_replies_printed(self, cli_via_gateway, capsys):
        code, statuses = await cli_via_gateway(
            ["send", "--from", PHONE, "--timeout", "10", "two parts please"]
        )

        out = capsys.readouterr().out
        assert code == 0
        assert "HTTP 200" in out
        assert "<- part 1: two parts please" in out
        assert "<- part 2: two parts please" in out
        assert len(statuses) == 1
        assert statuses[0].startswith("SM")

    async def test_times_posts_the_same_request(self, cli_via_gateway, capsys):
        code, statuses = await cli_via_gateway(
            [
                "wa",
                "--from",
                PHONE,
                "--sid",
                "SM" + "1" * 32,
                "--times",
                "3",
                "--timeout",
                "10",
                "once",
            ]
        )

        out = capsys.readouterr().out
        assert code == 0
        assert statuses == ["SM" + "1" * 32] * 3
        assert out.count("<- part 1: once") == 1

    async def test_bad_signature_is_refused_and_exits_non_zero(
        self, cli_via_gateway, capsys
    ):
        code, statuses = await cli_via_gateway(
            ["send", "--from", PHONE, "--bad-signature", "hello"]
        )

        assert code != 0
        assert statuses == ["forged"]
        assert "HTTP 403" in capsys.readouterr().out

    async def test_no_reply_exits_non_zero(self, cli_via_gateway, capsys):
        code, _ = await cli_via_gateway(
            ["send", "--from", PHONE, "--timeout", "0.5", "anyone?"], reply=False
        )

        assert code == 1
        assert "no reply" in capsys.readouterr().out


class TestMessagesCommand:
    async def test_prints_what_the_stand_in_recorded(self, devsim, cli_env, capsys):
        for to, body in ((PHONE, "for me"), ("+15557654321", "not for me")):
            response = await devsim.post(
                MESSAGES_PATH,
                data={
                    "To": f"whatsapp:{to}",
                    "From": "whatsapp:+14155238886",
                    "Body": body,
                },
                auth=(SID, TOKEN),
            )
            response.raise_for_status()

        assert await asyncio.to_thread(main, ["messages", "--phone", PHONE]) == 0
        mine = capsys.readouterr().out
        assert await asyncio.to_thread(main, ["messages"]) == 0
        everything = capsys.readouterr().out

        assert "for me" in mine
        assert "not for me" not in mine
        assert "for me" in everything
        assert "not for me" in everything
