"""`python -m bench.serve_bare_stack --port P`: bench.apps' app, launched as `order-api serve`
launches one worker (same settings, logging and uvicorn options)."""

from __future__ import annotations

import argparse

import uvicorn

from order_api.cli import settings_or_exit
from order_api.platform.http import uvicorn_options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    settings = settings_or_exit()
    uvicorn.run(
        "bench.apps:create_app_without_middleware",
        factory=True,
        host="127.0.0.1",
        port=arguments.port,
        workers=1,
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    main()
