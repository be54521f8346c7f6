"""The board page and its assets over plain HTTP: types, caching, same-origin, nothing inline."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx2
import pytest

from tests.test_errors import assert_problem

# Static files: the database back-end makes no difference to them.
pytestmark = pytest.mark.only_backend("sqlite")


class PageScan(HTMLParser):
    """Collects what a strict Content-Security-Policy cares about: references and inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.references += [value for name, value in attrs if name in {"src", "href"} and value]
        self.inline += [
            f"{tag} {name}=" for name, _ in attrs if name == "style" or name[:2] == "on"
        ]
        if tag == "style" or (tag == "script" and not names.get("src")):
            self.inline.append(f"<{tag}> without src")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script body")


async def test_page_is_html_with_same_origin_assets_only(client: httpx2.AsyncClient) -> None:
    response = await client.get("/board")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    scan = PageScan()
    scan.feed(response.text)
    assert scan.inline == []
    assert sorted(scan.references) == ["/board/board.css", "/board/board.js"]
    for reference in scan.references:
        assert (await client.get(reference)).status_code == 200


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("board.js", "text/javascript; charset=utf-8"), ("board.css", "text/css; charset=utf-8")],
)
async def test_assets_have_their_media_types(
    client: httpx2.AsyncClient, name: str, media_type: str
) -> None:
    response = await client.get(f"/board/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == "no-cache"
    assert response.content


async def test_script_never_writes_markup_or_stores_tokens(client: httpx2.AsyncClient) -> None:
    script = (await client.get("/board/board.js")).text
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert forbidden not in script
    assert "localStorage" not in script
    assert "sessionStorage" not in script


@pytest.mark.parametrize(
    "path",
    [
        "/board/secrets.txt",
        "/board/board.html",
        "/board/router.py",
        "/board/..",
        "/board/../pyproject.toml",
        "/board/%2E%2E%2Fpyproject.toml",
        "/board/static/board.js",
    ],
)
async def test_anything_else_under_board_is_404_problem(
    client: httpx2.AsyncClient, path: str
) -> None:
    assert_problem(await client.get(path), 404, "not_found")


async def test_the_board_stays_out_of_the_api_schema(client: httpx2.AsyncClient) -> None:
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/board")]
