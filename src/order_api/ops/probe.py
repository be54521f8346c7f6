"""Container health checks without curl: `python -m order_api.ops.probe URL` or `--heartbeat PATH`.

Standard library only, so a check every few seconds costs milliseconds, not the app's imports.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_SECONDS = 3.0


def answers_ok(url: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    """True when `url` answers 200 within `timeout`."""
    if not url.startswith(("http://", "https://")):
        return False
    # Straight to the process: an HTTP(S)_PROXY in a container's environment must not intervene.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return False


def heartbeat_is_fresh(path: Path, max_age_seconds: float) -> bool:
    """True when `path` was touched within `max_age_seconds`."""
    try:
        modified = path.stat().st_mtime
    except OSError:
        return False
    return time.time() - modified <= max_age_seconds


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m order_api.ops.probe",
        description="Exit 0 when the URL answers 200, or the heartbeat file is fresh; else 1.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("url", nargs="?", help="an http(s) URL that must answer 200")
    target.add_argument("--heartbeat", type=Path, help="a file the worker touches every 5 s")
    parser.add_argument(
        "--max-age", type=float, default=30.0, help="heartbeat age limit in seconds (default 30)"
    )
    options = parser.parse_args(arguments)
    if options.heartbeat is not None:
        healthy = heartbeat_is_fresh(options.heartbeat, options.max_age)
    else:
        healthy = answers_ok(options.url)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
