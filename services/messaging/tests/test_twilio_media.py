"""Inbound media is fetched with the account's credentials from Twilio only:
a MediaUrl on any other host is refused without a request, and the redirect to
Twilio's storage is followed without the credentials.

Two loopback servers: "Twilio" at TWILIO_API_BASE (127.0.0.1) and a foreign
host (127.0.0.2), each recording the requests it got and their headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from yourclaw_devkit.serving import running_app
from yourclaw_messaging.errors import MediaRejected
from yourclaw_messaging.twilio import TwilioClient

SID = "AC" + "0" * 32
AUDIO = b"OggS voice note bytes"


@dataclass
class Host:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def authorizations(self) -> list[str | None]:
        return [r["headers"].get("authorization") for r in self.requests]


def _app(host: Host, routes: dict[str, Any]) -> Starlette:
    async def serve(request: Request) -> Response:
        host.requests.append(
            {"path": request.url.path, "headers": dict(request.headers)}
        )
        answer = routes.get(request.url.path)
        if answer is None:
            return Response(status_code=404)
        return answer

    return Starlette(routes=[Route("/{path:path}", serve, methods=["GET"])])


@dataclass
class Hosts:
    twilio: Host
    foreign: Host
    routes: dict[str, Any]
    foreign_routes: dict[str, Any]


@pytest_asyncio.fixture(loop_scope="session")
async def hosts() -> AsyncIterator[Hosts]:
    routes: dict[str, Any] = {}
    foreign_routes: dict[str, Any] = {}
    twilio, foreign = Host(""), Host("")
    async with (
        running_app(_app(twilio, routes)) as twilio_url,
        running_app(_app(foreign, foreign_routes), host="127.0.0.2") as foreign_url,
    ):
        twilio.url, foreign.url = twilio_url, foreign_url
        yield Hosts(twilio, foreign, routes, foreign_routes)


@pytest_asyncio.fixture(loop_scope="session")
async def client(hosts: Hosts) -> AsyncIterator[TwilioClient]:
    async with aiohttp.ClientSession() as http:
        yield TwilioClient(
            http, api_base=hosts.twilio.url, account_sid=SID, auth_token="secret-tok"
        )


class TestTrustedHosts:
    @pytest.mark.parametrize(
        "url",
        [
            f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages/MM1/Media/ME1",
            "https://api.twilio.com:443/x",
            "https://API.Twilio.com/x",
            "https://api.dublin.ie1.twilio.com/x",
            "https://api.sydney.au1.twilio.com/x",
            "https://api.us1.twilio.com/x",
        ],
    )
    def test_twilio_api_hosts_over_https(self, client, url):
        assert client.trusted(url)

    @pytest.mark.parametrize(
        "url",
        [
            "http://api.twilio.com/x",  # not over TLS
            "https://api.twilio.com:8443/x",
            "https://api.twilio.com.evil.test/x",
            "https://evil.test/api.twilio.com/x",
            "https://evil.test/?next=https://api.twilio.com/x",
            "https://user:pw@api.twilio.com/x",
            "https://evil.test@api.twilio.com/x",
            "https://evil.test\\@api.twilio.com/x",
            "https://api.twilio.com\\.evil.test/x",
            "https://mms.twiliocdn.com/x",  # storage: reached without credentials
            "https://twilio.com/x",
            "https://notapi.twilio.com/x",
            "ftp://api.twilio.com/x",
            "/2010-04-01/Accounts/x",
            "https://[::1/x",
            "",
        ],
    )
    def test_anything_else_is_not(self, client, url):
        assert not client.trusted(url)

    def test_the_configured_api_base_exactly(self, client, hosts):
        assert client.trusted(f"{hosts.twilio.url}/media")
        port = int(hosts.twilio.url.rsplit(":", 1)[1])
        assert not client.trusted(f"http://127.0.0.1:{port + 1}/media")
        assert not client.trusted(f"https://127.0.0.1:{port}/media")
        assert not client.trusted(f"{hosts.foreign.url}/media")


class TestFetchMedia:
    async def test_media_on_a_foreign_host_is_refused_without_a_request(
        self, client, hosts
    ):
        hosts.foreign_routes["/media"] = Response(AUDIO, media_type="audio/ogg")

        with pytest.raises(MediaRejected):
            await client.fetch_media(f"{hosts.foreign.url}/media", max_bytes=1000)

        assert hosts.foreign.requests == []

    async def test_the_redirect_to_storage_is_followed_without_credentials(
        self, client, hosts
    ):
        hosts.routes["/Media/ME1"] = RedirectResponse(
            f"{hosts.foreign.url}/signed/ME1?sig=abc", status_code=307
        )
        hosts.foreign_routes["/signed/ME1"] = Response(
            AUDIO, media_type="audio/ogg; codecs=opus"
        )

        data, content_type = await client.fetch_media(
            f"{hosts.twilio.url}/Media/ME1", max_bytes=1000
        )

        assert (data, content_type) == (AUDIO, "audio/ogg")
        assert hosts.twilio.authorizations[-1].startswith("Basic ")
        assert hosts.foreign.authorizations == [None]
        assert "secret" not in str(hosts.foreign.requests)

    async def test_a_redirect_within_twilio_keeps_them(self, client, hosts):
        hosts.routes["/Media/ME2"] = RedirectResponse("/Media/ME2/raw", 302)
        hosts.routes["/Media/ME2/raw"] = Response(AUDIO, media_type="audio/mpeg")

        data, content_type = await client.fetch_media(
            f"{hosts.twilio.url}/Media/ME2", max_bytes=1000
        )

        assert (data, content_type) == (AUDIO, "audio/mpeg")
        assert all(a and a.startswith("Basic ") for a in hosts.twilio.authorizations)

    async def test_media_over_the_cap_is_rejected(self, client, hosts):
        hosts.routes["/Media/big"] = Response(b"x" * 5000, media_type="audio/ogg")

        with pytest.raises(MediaRejected):
            await client.fetch_media(f"{hosts.twilio.url}/Media/big", max_bytes=4999)

    async def test_endless_redirects_are_rejected(self, client, hosts):
        hosts.routes["/loop"] = RedirectResponse("/loop", 302)

        with pytest.raises(MediaRejected):
            await client.fetch_media(f"{hosts.twilio.url}/loop", max_bytes=1000)
