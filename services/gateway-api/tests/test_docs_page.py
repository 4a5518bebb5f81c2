"""/docs renders without internet: Swagger UI and its assets come from us."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit


class _Assets(HTMLParser):
    """Every URL the page loads by itself: scripts, stylesheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img", "iframe") and found.get("src"):
            self.urls.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"] or "")


class TestDocsPage:
    async def test_references_only_same_origin_assets_and_they_are_served(self, api):
        page = await api.client.get("/docs")

        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        parser = _Assets()
        parser.feed(page.text)
        assert len(parser.urls) >= 3  # the bundle, its stylesheet, the icon
        base = str(api.client.base_url)
        for url in parser.urls:
            absolute = urljoin(base + "/docs", url)
            assert urlsplit(absolute).netloc == urlsplit(base).netloc, url
            asset = await api.client.get(urlsplit(absolute).path)
            assert asset.status_code == 200, url
            assert len(asset.content) > 500, url
        # Nothing else on the page points elsewhere (the initialiser script included).
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", page.text), [
            m.group(0) for m in re.finditer(r"(https?:)?//[^\s'\"]+", page.text)
        ]

    async def test_the_bundle_is_swagger_ui_and_reads_our_document(self, api):
        page = (await api.client.get("/docs")).text
        bundle = await api.client.get("/docs/assets/swagger-ui-bundle.js")
        stylesheet = await api.client.get("/docs/assets/swagger-ui.css")

        assert "SwaggerUIBundle" in bundle.text
        assert bundle.headers["content-type"].startswith(
            ("text/javascript", "application/javascript")
        )
        assert stylesheet.headers["content-type"].startswith("text/css")
        assert "url: '/openapi.json'" in page
        assert (await api.client.get("/openapi.json")).status_code == 200

    async def test_docs_routes_are_not_in_the_api_document(self, api):
        paths = (await api.client.get("/openapi.json")).json()["paths"]

        assert not [p for p in paths if p.startswith("/docs")]
