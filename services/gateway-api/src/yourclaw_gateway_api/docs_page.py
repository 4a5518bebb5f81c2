"""`/docs`: Swagger UI from files this service ships, so it renders offline.

FastAPI's default page loads Swagger UI from a CDN; these come from the
`swagger-ui-bundle-v2` package (Swagger UI's own `dist` files, Apache-2.0) and
are served under `/docs/assets/`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

__all__ = ["DOCS_ASSETS_PATH", "DOCS_PATH", "install_docs"]

DOCS_PATH = "/docs"
DOCS_ASSETS_PATH = "/docs/assets"
_OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"


def install_docs(api: FastAPI) -> None:
    """Serve Swagger UI at /docs for `api.openapi_url`, with same-origin assets
    (create `api` with `docs_url=None`)."""
    api.mount(
        DOCS_ASSETS_PATH,
        StaticFiles(directory=str(swagger_ui_path)),
        name="swagger-ui-assets",
    )

    @api.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=api.openapi_url or "/openapi.json",
            title=f"{api.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=_OAUTH2_REDIRECT_PATH,
        )

    @api.get(_OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
