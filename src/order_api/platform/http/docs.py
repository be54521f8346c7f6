"""Swagger UI served by the service itself: the page works offline and renders OpenAPI 3.1."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from order_api.platform.http.headers import inline_script_hashes

OPENAPI_URL = "/api/openapi.json"
DOCS_URL = "/api/docs"
DOCS_STATIC_URL = f"{DOCS_URL}/static"
OAUTH2_REDIRECT_URL = f"{DOCS_URL}/oauth2-redirect"
# fastapi-offline ships Swagger UI 5.x (renders OpenAPI 3.1); we use its files, not its wrapper.
SWAGGER_ASSETS = Path(str(files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)


# Both pages are fixed text: render them once, and allow exactly their inline scripts by hash.
DOCS_PAGE = bytes(
    get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title="order-api — API docs",
        swagger_js_url=f"{DOCS_STATIC_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_STATIC_URL}/favicon.png",
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
    ).body
)
OAUTH2_REDIRECT_PAGE = bytes(get_swagger_ui_oauth2_redirect_html().body)


def page_csp(page: bytes) -> str:
    """Swagger UI's own files, its inline init script, fetches of the schema and "Try it out"."""
    return (
        f"default-src 'none'; script-src 'self' {inline_script_hashes(page)}; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


DOCS_CSP = page_csp(DOCS_PAGE)
OAUTH2_REDIRECT_CSP = page_csp(OAUTH2_REDIRECT_PAGE)


@router.get(DOCS_URL)
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(DOCS_PAGE, headers={"Content-Security-Policy": DOCS_CSP})


@router.get(OAUTH2_REDIRECT_URL)
async def swagger_oauth2_redirect() -> HTMLResponse:
    return HTMLResponse(
        OAUTH2_REDIRECT_PAGE, headers={"Content-Security-Policy": OAUTH2_REDIRECT_CSP}
    )


class WholeFileAssets:
    """Static assets without Range support: Starlette answers bad ranges in text/plain.

    They revalidate on every load (ETag, Last-Modified), like the board's, so an upgrade of the
    package never runs against a cached old bundle.
    """

    def __init__(self, directory: Path) -> None:
        self.files = StaticFiles(directory=directory)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            ignored = (b"range", b"if-range")
            scope = {**scope, "headers": [h for h in scope["headers"] if h[0] not in ignored]}

        async def send_revalidating(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("Cache-Control", "no-cache")
            await send(message)

        await self.files(scope, receive, send_revalidating)


def install_api_docs(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(DOCS_STATIC_URL, WholeFileAssets(SWAGGER_ASSETS), name="swagger-assets")
