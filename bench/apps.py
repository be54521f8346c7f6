"""order-api without its middleware stack: the reference for the middleware-cost goal."""

from __future__ import annotations

from fastapi import FastAPI

from order_api.app import create_app
from order_api.config import load_settings


def create_app_without_middleware() -> FastAPI:
    """The real app, with `user_middleware` emptied before Starlette builds the stack lazily
    at the first request: routes, dependencies and lifespan stay exactly the service's."""
    app = create_app(load_settings())
    app.user_middleware.clear()
    return app
