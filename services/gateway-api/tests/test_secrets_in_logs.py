"""No secret reaches a log line: run every path that handles one with logging at
DEBUG, then look for each secret in everything that was logged."""

import time

from yourclaw_common.crypto import SecretBox

ANTHROPIC_KEY = "sk-ant-api03-" + "Q9w8E7r6T5" * 9 + "lOgAA"
OPENAI_KEY = "sk-proj-" + "M1n2B3v4C5" * 12 + "lOgK"
GOOGLE_KEY = "AQ.Ab8RN6" + "z0X9c8V7b6" * 5 + "lOgG"
REJECTED_KEY = "sk-ant-admin01-" + "R4j3c7e9d2" * 5
GATEWAY_TOKEN = "oc-gateway-token-" + "G7h8J9k0L1" * 4
NOTIFY_SECRET = "notify-secret-" + "N0t1fY2s3C" * 4


def fragments(secret: str) -> list[str]:
    """The secret and the parts of it that would still give it away."""
    parts = [secret]
    if secret.count(".") == 2:  # a JWT: its signature alone is enough
        parts.append(secret.rsplit(".", 1)[1])
    elif len(secret) > 16:
        parts.append(secret[4:-4])
    return parts


class TestNoSecretInLogs:
    async def test_a_full_session_logs_no_secret(
        self,
        start_gateway,
        supabase,
        sign_in,
        db,
        clean_db,
        js,
        json_logs,
        dev_login,
        encryption_key,
        twilio,
        nats_client,
    ):
        caller = sign_in()
        box = SecretBox(encryption_key)
        await db.assistant(
            clean_db,
            caller.id,
            "READY",
            gateway_token_encrypted=box.encrypt(GATEWAY_TOKEN, owner=str(caller.id)),
            notify_secret_encrypted=box.encrypt(NOTIFY_SECRET, owner=str(caller.id)),
        )
        await db.subscription(clean_db, caller.id)
        past = int(time.time()) - 7200
        expired = supabase.user_token(caller.id, iat=past, exp=past + 60)
        legacy = supabase.token(alg="HS256")
        forged = supabase.token(alg="HS256", key="x" * 40)
        anon = supabase.token(alg="HS256", role="anon", aud="anon", sub=None)
        secrets = [
            ANTHROPIC_KEY,
            OPENAI_KEY,
            GOOGLE_KEY,
            REJECTED_KEY,
            GATEWAY_TOKEN,
            NOTIFY_SECRET,
            caller.token,
            expired,
            legacy,
            forged,
            anon,
            supabase.jwt_secret,
            dev_login["dev_login_secret"],
            encryption_key,
            twilio.token,
        ]

        async with start_gateway(
            supabase_url=supabase.url,
            supabase_jwt_secret=supabase.jwt_secret,
            **dev_login,
        ) as gw:
            client = gw.client
            login = await client.post("/api/v1/dev/login", json={"email": "d@e.co"})
            dev_token = login.json()["access_token"]
            secrets.append(dev_token)
            for token in (
                caller.token,
                legacy,
                dev_token,
                expired,
                forged,
                anon,
                "x.y.z",
            ):
                await client.get(
                    "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
                )
            for provider, key in (
                ("ANTHROPIC", ANTHROPIC_KEY),
                ("OPENAI", OPENAI_KEY),
                ("GOOGLE", GOOGLE_KEY),
                ("ANTHROPIC", REJECTED_KEY),
                ("OPENAI", ANTHROPIC_KEY),
            ):
                await client.post(
                    "/api/v1/api-keys",
                    json={"provider": provider, "key": key},
                    headers=caller.headers,
                )
            # A body that is not JSON, with a key in it.
            await client.post(
                "/api/v1/api-keys",
                content=f'{{"provider": "OPENAI", "key": "{OPENAI_KEY}"',
                headers={**caller.headers, "content-type": "application/json"},
            )
            await client.get("/api/v1/api-keys", headers=caller.headers)
            await client.get("/api/v1/assistants", headers=caller.headers)
            await client.delete("/api/v1/api-keys/GOOGLE", headers=caller.headers)
            await client.post("/api/v1/checkout", headers=caller.headers)  # no billing
            await client.patch(
                "/api/v1/assistants",
                json={"model": "openai/gpt-4o"},
                headers=caller.headers,
            )
            await gw.post_twilio(twilio.inbound_params())
            await gw.post_twilio(twilio.inbound_params(), signature="forged")
            # The outbox relay publishes the reprovision requests meanwhile.
            await nats_client.flush()

        logged = "\n".join(str(line) for line in json_logs())
        assert "gateway.request" in logged  # the capture works
        assert "api_keys_changed" in str(
            await clean_db.fetch("SELECT payload FROM outbox")
        )
        for secret in secrets:
            for fragment in fragments(secret):
                assert fragment not in logged, f"a secret was logged: {fragment[:12]}…"
