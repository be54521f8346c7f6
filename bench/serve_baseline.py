"""`python -m bench.serve_baseline MODULE --port P`: a baseline app served as order-api serves.

Same uvicorn options as `order-api serve` (platform.http.server), one process, so
the baselines and the service differ only in the app.
"""

from __future__ import annotations

import argparse

import uvicorn

from order_api.config import load_settings
from order_api.platform.http import uvicorn_options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("module", help="for example bench.baselines.plain_json")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    options = uvicorn_options(load_settings())
    uvicorn.run(f"{arguments.module}:app", host="127.0.0.1", port=arguments.port, **options)


if __name__ == "__main__":
    main()
