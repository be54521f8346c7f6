"""Bad clients against a real `order-api serve`: each is refused with a problem, counted in
/metrics, and the service keeps answering everyone else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2

from order_api.platform.telemetry.metrics import UNMATCHED_ROUTE
from tests.operations.test_metrics import parse, value
from tests.test_cli import running_server

TEN_MEGABYTES = 10 * 1024 * 1024
CHUNK = b"x" * 65536
USERS = "/api/v1/users"


def ten_megabytes() -> Iterator[bytes]:
    for _ in range(TEN_MEGABYTES // len(CHUNK)):
        yield CHUNK


def requests_counted(url: str, route: str, status: int) -> float:
    samples = parse(httpx2.get(f"{url}/metrics").text)
    return value(
        samples, "order_api_http_requests_total", method="POST", route=route, status=str(status)
    )


def test_bad_clients_are_refused_counted_and_harmless(tmp_path: Path) -> None:
    origin = "https://shop.example"
    with running_server(tmp_path, ALLOWED_ORIGINS=origin) as server:
        url = server.url
        # A 10 MB body with no length announced: cut off at MAX_BODY_SIZE with a 413 problem.
        try:
            response = httpx2.post(
                f"{url}{USERS}",
                content=ten_megabytes(),
                headers={"content-type": "application/json"},
                timeout=30,
            )
        except httpx2.TransportError:
            response = None  # the server may close before the client finished writing
        if response is not None:
            assert response.status_code == 413
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "payload_too_large"
        assert requests_counted(url, USERS, 413) == 1

        # A preflight from an origin that is not listed.
        preflight = httpx2.options(
            f"{url}{USERS}",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 403
        assert preflight.json()["code"] == "cors_refused"
        assert "access-control-allow-origin" not in preflight.headers

        # Unharmed: the listed origin and a plain client are served as usual.
        granted = httpx2.get(f"{url}/api/v1/products", headers={"Origin": origin})
        assert granted.status_code == 200
        assert granted.headers["access-control-allow-origin"] == origin
        assert httpx2.get(f"{url}/health/ready").status_code == 200
        samples = parse(httpx2.get(f"{url}/metrics").text)
        server.stop()
    # Answered before routing, like the per-address 429: no route template to name.
    refused = value(
        samples,
        "order_api_http_requests_total",
        method="OPTIONS",
        route=UNMATCHED_ROUTE,
        status="403",
    )
    assert refused == 1
