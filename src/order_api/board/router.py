"""Serves the board page and its two assets, read once from the package at import."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from fastapi import APIRouter, Response

from order_api.platform.errors import NotFound
from order_api.platform.http import BOARD_CSP

router = APIRouter(prefix="/board", include_in_schema=False)

# Revalidate on every load: a new release must never run against an old cached script.
NO_CACHE = {"Cache-Control": "no-cache"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


def _read(name: str, media_type: str) -> Asset:
    return Asset(files("order_api.board").joinpath("static", name).read_bytes(), media_type)


PAGE = _read("board.html", "text/html")
ASSETS = {
    "board.js": _read("board.js", "text/javascript"),
    "board.css": _read("board.css", "text/css"),
}


def _answer(asset: Asset, extra_headers: dict[str, str] | None = None) -> Response:
    # Starlette adds `; charset=utf-8` to text/* media types.
    headers = {**NO_CACHE, **(extra_headers or {})}
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("")
async def board_page() -> Response:
    return _answer(PAGE, {"Content-Security-Policy": BOARD_CSP})


@router.get("/{name}")
async def board_asset(name: str) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound("The board has no file with this name.")
    return _answer(asset)
