"""order-api: a production-ready FastAPI service for a small shop's orders."""

from importlib.metadata import version

__version__ = version("order-api")
