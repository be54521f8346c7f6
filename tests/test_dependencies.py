"""Every dependency of every route is a coroutine: FastAPI runs a plain `def` dependency in a
worker thread, a hand-off that cost ~100 µs a request and stalled reads under load."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute

from order_api.app import create_app
from order_api.auth.dependencies import bearer_token
from tests.support import make_settings


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute | APIWebSocketRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI 0.165's included routers
        if included is not None:
            yield from api_routes(included.routes)
        elif isinstance(route, APIRoute | APIWebSocketRoute):
            yield route


def dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from dependants(sub)


def is_coroutine(call: Callable[..., Any]) -> bool:
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else call.__call__  # type: ignore[operator]
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_no_route_depends_on_a_plain_function(tmp_path: Path) -> None:
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path}/app.db", tmp_path))
    calls = {
        sub.call
        for route in api_routes(app.routes)
        for sub in dependants(route.dependant)
        if sub.call is not None
    }
    assert bearer_token in calls  # a callable instance is walked too
    threaded = sorted(
        getattr(call, "__qualname__", repr(call)) for call in calls if not is_coroutine(call)
    )
    assert threaded == []


def test_the_check_tells_a_plain_function() -> None:
    def plain() -> None: ...

    async def awaited() -> None: ...

    assert not is_coroutine(plain)
    assert is_coroutine(awaited)
