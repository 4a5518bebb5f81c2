import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from yourclaw_common.errors import ServiceUnavailable
from yourclaw_devkit.pytest_plugin import ManualClock
from yourclaw_gateway_api.auth import DEV_ISSUER, Jwks, KnownUsers, TokenUser

ME = "/api/v1/users/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(gateway, token: str) -> httpx.Response:
    return await gateway.client.get(ME, headers=bearer(token))


def assert_rejected(response: httpx.Response, code: str = "INVALID_TOKEN") -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == code
    assert set(response.json()) == {"detail", "code"}
    assert response.headers["www-authenticate"].startswith("Bearer")


class TestAcceptedTokens:
    async def test_es256_token_from_the_jwks_is_accepted(self, api, supabase):
        user_id = uuid.uuid4()

        response = await me(api, supabase.token(sub=str(user_id)))

        assert response.status_code == 200, response.text
        assert response.json()["id"] == str(user_id)

    async def test_rs256_token_from_the_jwks_is_accepted(self, api, supabase):
        response = await me(api, supabase.token(alg="RS256"))

        assert response.status_code == 200, response.text

    async def test_legacy_hs256_token_is_accepted_with_the_secret(self, api, supabase):
        response = await me(api, supabase.token(alg="HS256"))

        assert response.status_code == 200, response.text

    async def test_first_sight_creates_the_user_row(self, api, supabase, clean_db):
        user_id = uuid.uuid4()

        await me(api, supabase.token(sub=str(user_id), email="grace@example.com"))

        row = await clean_db.fetchrow("SELECT email FROM users WHERE id = $1", user_id)
        assert row["email"] == "grace@example.com"

    async def test_a_new_email_in_the_token_updates_the_row(
        self, api, supabase, clean_db
    ):
        user_id = uuid.uuid4()
        await me(api, supabase.token(sub=str(user_id), email="old@example.com"))

        response = await me(
            api, supabase.token(sub=str(user_id), email="new@example.com")
        )

        assert response.json()["email"] == "new@example.com"
        count = await clean_db.fetchval("SELECT count(*) FROM users")
        assert count == 1

    async def test_a_token_without_email_keeps_the_known_email(
        self, api, supabase, clean_db
    ):
        user_id = uuid.uuid4()
        await me(api, supabase.token(sub=str(user_id), email="ada@example.com"))
        # A phone sign-in token has an empty email.
        response = await me(api, supabase.token(sub=str(user_id), email=""))

        assert response.json()["email"] == "ada@example.com"

    async def test_the_jwks_is_fetched_once_for_many_requests(self, api, supabase):
        for _ in range(5):
            assert (await me(api, supabase.token())).status_code == 200

        assert len(supabase.jwks_requests) == 1

    async def test_every_published_key_is_accepted(self, api, supabase):
        # A rotation publishes the next key before signing with it; the re-fetch
        # of a rotated-in key after our last fetch is in TestJwks (it takes time).
        supabase.published.append("es2")

        for kid in ("es", "es2", "rs"):
            response = await me(
                api, supabase.token(kid=kid, alg=supabase.keys[kid].alg)
            )
            assert response.status_code == 200, (kid, response.text)


class TestRejectedTokens:
    async def test_missing_header_is_auth_required(self, api):
        response = await api.client.get(ME)

        assert_rejected(response, "AUTH_REQUIRED")

    async def test_basic_auth_is_auth_required(self, api):
        response = await api.client.get(ME, headers={"Authorization": "Basic YTpi"})

        assert_rejected(response, "AUTH_REQUIRED")

    async def test_garbage_is_invalid(self, api):
        assert_rejected(await me(api, "not-a-jwt"))

    async def test_alg_none_is_rejected(self, api, supabase):
        token = jwt.encode(supabase.claims(), None, algorithm="none")

        assert_rejected(await me(api, token))

    async def test_alg_none_with_a_known_kid_is_rejected(self, api, supabase):
        token = jwt.encode(
            supabase.claims(), None, algorithm="none", headers={"kid": "es-key-1"}
        )

        assert_rejected(await me(api, token))

    async def test_expired_token_is_token_expired(self, api, supabase):
        past = int(time.time()) - 3600
        token = supabase.token(iat=past - 3600, exp=past)

        assert_rejected(await me(api, token), "TOKEN_EXPIRED")

    async def test_expired_hs256_token_is_token_expired(self, api, supabase):
        past = int(time.time()) - 3600
        token = supabase.token(alg="HS256", iat=past - 3600, exp=past)

        assert_rejected(await me(api, token), "TOKEN_EXPIRED")

    # The project's legacy API keys: HS256 with the project secret, no sub.
    @pytest.mark.parametrize("role", ["anon", "service_role"])
    async def test_project_api_key_is_rejected(self, api, supabase, role):
        now = int(time.time())
        key = jwt.encode(
            {
                "iss": "supabase",
                "ref": "abc",
                "role": role,
                "iat": now,
                "exp": now + 10**8,
            },
            supabase.jwt_secret,
            algorithm="HS256",
        )

        assert_rejected(await me(api, key))

    async def test_anon_session_token_is_rejected(self, api, supabase):
        # Issued by our project, but for the `anon` audience and role.
        token = supabase.token(aud="anon", role="anon", sub=None)

        assert_rejected(await me(api, token))

    async def test_service_role_claims_on_a_user_shaped_token_are_rejected(
        self, api, supabase
    ):
        assert_rejected(await me(api, supabase.token(role="service_role")))

    async def test_other_project_is_rejected(self, api, supabase):
        token = supabase.token(iss="https://other-project.supabase.co/auth/v1")

        assert_rejected(await me(api, token))

    async def test_other_project_hs256_is_rejected(self, api, supabase):
        token = supabase.token(
            alg="HS256", key="another-projects-secret-0123456789abcdef"
        )

        assert_rejected(await me(api, token))

    async def test_foreign_key_with_our_kid_is_rejected(self, api, supabase):
        forged = ec.generate_private_key(ec.SECP256R1())

        assert_rejected(await me(api, supabase.token(key=forged)))

    async def test_unknown_kid_is_rejected(self, api, supabase):
        token = supabase.token(headers={"kid": "made-up"})

        assert_rejected(await me(api, token))

    async def test_unknown_kids_refetch_at_most_once_per_interval(self, api, supabase):
        assert (await me(api, supabase.token())).status_code == 200

        for n in range(5):
            assert_rejected(await me(api, supabase.token(headers={"kid": f"bad-{n}"})))

        # The first fetch, plus one for the first unknown kid at most.
        assert len(supabase.jwks_requests) <= 2

    async def test_key_confusion_hs256_with_the_public_key_is_rejected(
        self, api, supabase
    ):
        # The classic attack: sign HS256 with the public key, hoping the server
        # feeds its RSA/EC key to HMAC.
        public_pem = (
            supabase.keys["rs"]
            .private.public_key()
            .public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
        header = {"alg": "HS256", "kid": "rs-key-1", "typ": "JWT"}
        signing_input = b".".join(
            jwt.utils.base64url_encode(json.dumps(part).encode())
            for part in (header, supabase.claims())
        )
        signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
        token = (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()

        assert_rejected(await me(api, token))

    async def test_algorithm_must_match_the_key(self, api, supabase):
        # An RS256 header naming the ES256 key.
        token = supabase.token(alg="RS256", headers={"kid": "es-key-1"})

        assert_rejected(await me(api, token))

    @pytest.mark.parametrize("claim", ["sub", "exp", "iat", "aud", "iss"])
    async def test_missing_claim_is_rejected(self, api, supabase, claim):
        assert_rejected(await me(api, supabase.token(**{claim: None})))

    async def test_non_uuid_subject_is_rejected(self, api, supabase):
        assert_rejected(await me(api, supabase.token(sub="user-42")))

    async def test_token_from_the_future_is_rejected(self, api, supabase):
        later = int(time.time()) + 3600
        token = supabase.token(iat=later, exp=later + 3600)

        assert_rejected(await me(api, token))

    async def test_hs256_is_rejected_without_the_legacy_secret(
        self, start_gateway, supabase, clean_db
    ):
        async with start_gateway(supabase_url=supabase.url) as gw:
            response = await me(gw, supabase.token(alg="HS256"))

        assert_rejected(response)

    async def test_everything_is_rejected_when_nothing_is_configured(
        self, start_gateway, supabase, clean_db
    ):
        async with start_gateway() as gw:
            response = await me(gw, supabase.token())

        assert_rejected(response)

    async def test_rejection_writes_no_user(self, api, supabase, clean_db):
        await me(api, supabase.token(aud="anon"))

        assert await clean_db.fetchval("SELECT count(*) FROM users") == 0


@contextlib.asynccontextmanager
async def jwks_on(supabase, **options) -> AsyncIterator[tuple[Jwks, ManualClock]]:
    """A key set on the test's Supabase, on a clock the test moves."""
    clock = ManualClock()
    async with httpx.AsyncClient() as http:
        url = supabase.url + "/auth/v1/.well-known/jwks.json"
        yield Jwks(http, url, clock=clock, **options), clock


class TestJwks:
    async def test_unknown_kid_refetches_after_the_interval(self, supabase):
        async with jwks_on(supabase, min_refetch=30) as (jwks, clock):
            assert await jwks.key("es-key-1") is not None
            assert await jwks.key("es-key-2") is None
            clock.now += 10
            assert await jwks.key("es-key-2") is None
            supabase.published.append("es2")
            clock.now += 30

            found = await jwks.key("es-key-2")

        assert found is not None
        assert jwks.fetches == 2

    async def test_keys_are_refetched_after_the_ttl(self, supabase):
        async with jwks_on(supabase, ttl=600) as (jwks, clock):
            await jwks.key("es-key-1")
            clock.now += 601

            await jwks.key("es-key-1")

        assert jwks.fetches == 2

    async def test_an_outage_keeps_the_cached_keys(self, supabase):
        async with jwks_on(supabase, ttl=10) as (jwks, clock):
            await jwks.key("es-key-1")
            jwks.url = "http://127.0.0.1:9/unreachable"
            clock.now += 60

            found = await jwks.key("es-key-1")

        assert found is not None

    async def test_an_unknown_kid_during_an_outage_is_unavailable(self):
        async with httpx.AsyncClient() as http:
            jwks = Jwks(http, "http://127.0.0.1:9/unreachable")

            with pytest.raises(ServiceUnavailable) as raised:
                await jwks.key("es-key-1")

        assert raised.value.code == "AUTH_UNAVAILABLE"

    async def test_symmetric_and_foreign_keys_are_ignored(self, supabase):
        transport = httpx.MockTransport(
            lambda request: httpx.Response(
                200,
                json={
                    "keys": [
                        {"kty": "oct", "kid": "hs", "k": "c2VjcmV0", "alg": "HS256"},
                        {**supabase.keys["es"].jwk, "use": "enc"},
                        {**supabase.keys["rs"].jwk, "alg": "RS512", "kid": "rs512"},
                        supabase.keys["rs"].jwk,
                    ]
                },
            )
        )
        async with httpx.AsyncClient(transport=transport) as http:
            jwks = Jwks(http, "http://jwks.test/jwks.json")

            assert await jwks.key("hs") is None
            assert await jwks.key("es-key-1") is None
            assert await jwks.key("rs512") is None
            assert await jwks.key("rs-key-1") is not None

    async def test_an_outage_is_reported_with_a_503(
        self, start_gateway, supabase, clean_db
    ):
        down = "http://127.0.0.1:9"
        async with start_gateway(supabase_url=down) as gw:
            response = await me(gw, supabase.token(iss=f"{down}/auth/v1"))

        assert response.status_code == 503
        assert response.json()["code"] == "AUTH_UNAVAILABLE"


class TestKnownUsers:
    def test_a_user_seen_is_known(self):
        known = KnownUsers()
        user = TokenUser(uuid.uuid4(), "a@example.com")
        known.add(user)

        assert user in known

    def test_a_changed_email_is_not_known(self):
        known = KnownUsers()
        user_id = uuid.uuid4()
        known.add(TokenUser(user_id, "a@example.com"))

        assert TokenUser(user_id, "b@example.com") not in known

    def test_entries_expire(self):
        clock = ManualClock()
        known = KnownUsers(ttl=60, clock=clock)
        user = TokenUser(uuid.uuid4(), None)
        known.add(user)
        clock.now += 61

        assert user not in known

    def test_the_least_recent_is_dropped_when_full(self):
        known = KnownUsers(max_size=2)
        a, b, c = (TokenUser(uuid.uuid4(), None) for _ in range(3))
        known.add(a)
        known.add(b)
        assert a in known  # now the most recent
        known.add(c)

        assert a in known
        assert b not in known
        assert c in known


class TestDevLogin:
    async def test_the_route_is_404_by_default(self, api):
        response = await api.client.post(
            "/api/v1/dev/login", json={"email": "dev@example.com"}
        )

        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"

    async def test_a_dev_token_signs_in_when_enabled(
        self, start_gateway, clean_db, js, dev_login
    ):
        async with start_gateway(**dev_login) as gw:
            login = await gw.client.post(
                "/api/v1/dev/login", json={"email": "Dev@Example.com"}
            )
            response = await me(gw, login.json()["access_token"])

        assert login.status_code == 200, login.text
        assert login.json()["token_type"] == "bearer"
        assert response.status_code == 200, response.text
        assert response.json()["email"] == "dev@example.com"
        assert response.json()["id"] == login.json()["user_id"]

    async def test_the_same_email_is_the_same_user(
        self, start_gateway, clean_db, dev_login
    ):
        async with start_gateway(**dev_login) as gw:
            first = await gw.client.post("/api/v1/dev/login", json={"email": "a@b.co"})
            second = await gw.client.post("/api/v1/dev/login", json={"email": "A@B.CO"})

        assert first.json()["user_id"] == second.json()["user_id"]

    async def test_a_dev_token_is_rejected_when_disabled(
        self, start_gateway, clean_db, dev_login
    ):
        async with start_gateway(**dev_login) as gw:
            login = await gw.client.post("/api/v1/dev/login", json={"email": "a@b.co"})
        # Same secret configured, but dev sign-in off: the issuer is unknown.
        async with start_gateway(dev_login_secret=dev_login["dev_login_secret"]) as gw:
            response = await me(gw, login.json()["access_token"])

        assert_rejected(response)

    async def test_a_dev_token_signed_with_another_key_is_rejected(
        self, start_gateway, clean_db, dev_login
    ):
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": DEV_ISSUER,
                "aud": "authenticated",
                "sub": str(uuid.uuid4()),
                "role": "authenticated",
                "iat": now,
                "exp": now + 60,
            },
            "guessed-dev-secret-0123456789abcdef-012345",
            algorithm="HS256",
        )
        async with start_gateway(**dev_login) as gw:
            response = await me(gw, token)

        assert_rejected(response)

    async def test_a_dev_token_is_not_a_supabase_token(
        self, start_gateway, supabase, clean_db, dev_login
    ):
        # The dev issuer's tokens pass only as dev tokens: same key, Supabase's
        # issuer is not enough.
        token = supabase.token(alg="HS256", key=dev_login["dev_login_secret"])
        async with start_gateway(supabase_url=supabase.url, **dev_login) as gw:
            response = await me(gw, token)

        assert_rejected(response)

    async def test_an_invalid_email_is_422(self, start_gateway, clean_db, dev_login):
        async with start_gateway(**dev_login) as gw:
            response = await gw.client.post(
                "/api/v1/dev/login", json={"email": "not an email"}
            )

        assert response.status_code == 422
        assert response.json()["code"] == "VALIDATION_ERROR"
