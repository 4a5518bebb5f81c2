"""`GET /api/v1/media/<id>.ogg`: a spoken reply served to whoever holds the
link messaging signed (Twilio fetching a WhatsApp voice message's MediaUrl)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from yourclaw_common.media_links import media_url

KEY = "media-signing-key-for-tests-0123456789abcdef"
AUDIO = b"OggS\x00\x02 a spoken reply"


@pytest_asyncio.fixture(loop_scope="session")
async def served(start_gateway, clean_db, js) -> AsyncIterator[Any]:
    async with start_gateway(media_url_signing_key=KEY) as gw:
        yield gw


async def keep(pool, *, expires_in: float = 600) -> uuid.UUID:
    """A spoken reply as messaging stores it."""
    user_id, media_id = uuid.uuid4(), uuid.uuid4()
    await pool.execute("INSERT INTO users (id) VALUES ($1)", user_id)
    await pool.execute(
        "INSERT INTO voice_reply_media (id, user_id, content, content_type, "
        "expires_at) VALUES ($1, $2, $3, 'audio/ogg', "
        "now() + make_interval(secs => $4))",
        media_id,
        user_id,
        AUDIO,
        expires_in,
    )
    return media_id


class TestMediaLink:
    async def test_a_signed_link_serves_the_audio_without_sign_in(
        self, served, clean_db
    ):
        media_id = await keep(clean_db)
        url = media_url(served.public_url, KEY, media_id, int(time.time()) + 300)

        response = await served.client.get(url)

        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "audio/ogg"
        assert response.content == AUDIO

    @pytest.mark.parametrize(
        "forge",
        [
            lambda url: url.replace("sig=", "sig=0"),
            lambda url: url[:-2] + ("00" if not url.endswith("00") else "11"),
            lambda url: url.replace("exp=", "exp=9"),  # a later expiry, same sig
            lambda url: url.replace("sig=", "sig=\u00e9"),
        ],
    )
    async def test_a_forged_link_is_403(self, served, clean_db, forge):
        media_id = await keep(clean_db)
        url = media_url(served.public_url, KEY, media_id, int(time.time()) + 300)

        response = await served.client.get(forge(url))

        assert response.status_code == 403
        assert response.json() == {
            "detail": "this media link was not signed by us",
            "code": "INVALID_SIGNATURE",
        }

    async def test_a_link_signed_with_another_key_is_403(self, served, clean_db):
        media_id = await keep(clean_db)
        url = media_url(served.public_url, "x" * 40, media_id, int(time.time()) + 60)

        response = await served.client.get(url)

        assert response.status_code == 403

    async def test_an_expired_link_is_404(self, served, clean_db):
        media_id = await keep(clean_db)
        url = media_url(served.public_url, KEY, media_id, int(time.time()) - 1)

        response = await served.client.get(url)

        assert response.status_code == 404
        assert response.json()["code"] == "MEDIA_NOT_FOUND"

    async def test_media_past_its_expiry_is_404_even_with_a_fresh_link(
        self, served, clean_db
    ):
        media_id = await keep(clean_db, expires_in=-1)
        url = media_url(served.public_url, KEY, media_id, int(time.time()) + 300)

        response = await served.client.get(url)

        assert response.status_code == 404
        assert response.json()["code"] == "MEDIA_NOT_FOUND"

    async def test_without_a_key_every_link_is_refused(
        self, start_gateway, clean_db, js
    ):
        media_id = await keep(clean_db)
        async with start_gateway() as gw:
            # What signing with the empty key would give: never accepted.
            url = media_url(gw.public_url, "", media_id, int(time.time()) + 300)

            response = await gw.client.get(url)

        assert response.status_code == 403

    @pytest.mark.parametrize("query", ["", "?exp=1", "?sig=ab", "?exp=soon&sig=ab"])
    async def test_a_link_missing_its_signature_or_expiry_is_422(
        self, served, clean_db, query
    ):
        media_id = await keep(clean_db)

        response = await served.client.get(f"/api/v1/media/{media_id}.ogg{query}")

        assert response.status_code == 422
        assert set(response.json()) == {"detail", "code"}

    async def test_an_unknown_id_is_404(self, served):
        url = media_url(served.public_url, KEY, uuid.uuid4(), int(time.time()) + 60)

        response = await served.client.get(url)

        assert response.status_code == 404
        not_a_uuid = await served.client.get("/api/v1/media/banana.ogg?exp=1&sig=ab")
        assert not_a_uuid.status_code == 404
