"""GET /metrics: Prometheus text for allowed peers only (SPEC §5.8), requests by route template,
latency, open sockets, the DB pool, and one sum over several `serve` processes."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import httpx2
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from order_api.platform.telemetry.metrics import (
    LATENCY_BUCKETS,
    UNMATCHED_ROUTE,
    record_requests,
)
from order_api.users.models import Role
from tests.accounts import Shop, ShopFactory
from tests.streams import LiveShop, LiveShopFactory, next_frame, open_stream
from tests.support import TEST_SECRET_KEY
from tests.test_cli import running_server
from tests.test_errors import assert_problem
from tests.waiting import wait_until

OUTSIDE_PEER = ("203.0.113.9", 1234)
ORDER_ROUTE = "/api/v1/orders/{order_id}"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample as {(name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx2.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


def client_from(shop: Shop, peer: tuple[str, int]) -> httpx2.AsyncClient:
    """A client of the same app whose socket peer is `peer`."""
    transport = httpx2.ASGITransport(app=shop.app, client=peer)
    return httpx2.AsyncClient(transport=transport, base_url="http://testserver")


async def test_an_allowed_peer_reads_prometheus_text_with_every_metric(shop: Shop) -> None:
    response = await shop.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert families >= {
        "order_api_http_requests",
        "order_api_http_request_duration_seconds",
        "order_api_db_pool_connections_in_use",
        "order_api_jobs",
        "order_api_outbox_relayed",
        "order_api_password_checks",
        "order_api_websockets_open",
        "order_api_websocket_messages_sent",
        "order_api_websocket_closes",
        "order_api_stream_messages_dropped",
        "order_api_pubsub_reconnects",
    }


async def test_a_scraper_asking_for_openmetrics_gets_it(shop: Shop) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = await shop.client.get("/metrics", headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_metrics_are_not_in_the_schema(shop: Shop) -> None:
    schema = (await shop.client.get("/api/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


@pytest.mark.parametrize(
    "peer", [OUTSIDE_PEER, ("::ffff:203.0.113.9", 1), ("2001:db8::1", 1), ("testclient", 50000)]
)
async def test_an_outside_peer_gets_the_404_of_an_unknown_path(
    shop: Shop, peer: tuple[str, int]
) -> None:
    async with client_from(shop, peer) as outsider:
        refused = await outsider.get("/metrics", headers={"x-forwarded-for": "127.0.0.1"})
        unknown = await outsider.get("/no-such-path")
    body = assert_problem(refused, 404, "not_found")
    unknown_body = assert_problem(unknown, 404, "not_found")
    ignored = {"request_id", "instance"}
    assert {k: v for k, v in body.items() if k not in ignored} == {
        k: v for k, v in unknown_body.items() if k not in ignored
    }
    assert "order_api" not in refused.text


@pytest.mark.parametrize(
    "peer", [("127.0.0.1", 1), ("::1", 1), ("10.4.5.6", 1), ("::ffff:192.168.1.20", 1)]
)
async def test_loopback_and_private_peers_are_allowed_by_default(
    shop: Shop, peer: tuple[str, int]
) -> None:
    async with client_from(shop, peer) as insider:
        assert (await insider.get("/metrics")).status_code == 200


async def test_the_allowed_networks_are_a_setting(make_shop: ShopFactory) -> None:
    shop = await make_shop(metrics_allowed_networks="203.0.113.0/24, 2001:db8::/32")
    async with client_from(shop, OUTSIDE_PEER) as scraper:
        assert (await scraper.get("/metrics")).status_code == 200
    assert_problem(await shop.client.get("/metrics"), 404, "not_found")

    nobody = await make_shop(metrics_allowed_networks="")
    assert_problem(await nobody.client.get("/metrics"), 404, "not_found")


async def test_requests_count_under_their_route_template_never_the_raw_path(shop: Shop) -> None:
    before = await scrape(shop.client)
    order_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    for order_id in order_ids:
        assert (await shop.client.get(f"/api/v1/orders/{order_id}")).status_code == 401
    assert (await shop.client.get(f"/no/such/{order_ids[0]}")).status_code == 404
    assert (await shop.client.request("BREW", "/api/v1/orders")).status_code == 405
    response = await shop.client.get("/metrics")
    after = parse(response.text)

    def grew(**labels: str) -> float:
        name = "order_api_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew(method="GET", route=ORDER_ROUTE, status="401") == 2
    assert grew(method="GET", route=UNMATCHED_ROUTE, status="404") == 1
    assert grew(method="other", route="/api/v1/orders", status="405") == 1
    assert not any(order_id in response.text for order_id in order_ids)
    assert "BREW" not in response.text
    order_series = [
        labels
        for name, labels in after
        if name == "order_api_http_requests_total"
        and ("route", ORDER_ROUTE) in labels
        and ("status", "401") in labels
    ]
    assert len(order_series) == 1


async def test_latency_is_a_histogram_by_route_template(shop: Shop) -> None:
    name = "order_api_http_request_duration_seconds"
    before = await scrape(shop.client)
    for _ in range(3):
        await shop.client.get(f"/api/v1/orders/{uuid.uuid4()}")
    after = await scrape(shop.client)

    def grew(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert grew(f"{name}_count", route=ORDER_ROUTE) == 3
    assert grew(f"{name}_bucket", route=ORDER_ROUTE, le="+Inf") == 3
    assert grew(f"{name}_sum", route=ORDER_ROUTE) > 0
    bounds = sorted(
        float(dict(labels)["le"])
        for sample, labels in after
        if sample == f"{name}_bucket" and ("route", ORDER_ROUTE) in labels
    )
    assert bounds[0] <= 0.01
    assert bounds[-1] == float("inf")
    counts = [value(after, f"{name}_bucket", route=ORDER_ROUTE, le=_le(bound)) for bound in bounds]
    assert counts == sorted(counts), "buckets are cumulative"


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else str(bound)


async def test_the_open_websockets_gauge_follows_the_sockets(
    make_live_shop: LiveShopFactory,
) -> None:
    shop: LiveShop = await make_live_shop(ws_heartbeat_seconds=0.2)
    staff = await shop.account(Role.STAFF)
    customer = await shop.account(Role.CUSTOMER)
    gauge = "order_api_websockets_open"
    before = await scrape(shop.client)

    async def open_now(stream: str) -> float:
        return value(await scrape(shop.client), gauge, stream=stream) - value(
            before, gauge, stream=stream
        )

    async with AsyncExitStack() as sockets:
        for url in (
            shop.stream_url(staff.access_token),
            shop.stream_url(customer.access_token, customer.id),
        ):
            websocket = await sockets.enter_async_context(open_stream(url))
            assert await next_frame(websocket) == {"type": "heartbeat"}
        assert await open_now("every_order") == 1
        assert await open_now("customer") == 1

    async def all_closed() -> bool:
        return await open_now("every_order") == 0 and await open_now("customer") == 0

    await wait_until(all_closed, "the gauge to drop back when the sockets close")


async def test_the_db_pool_gauge_counts_connections_checked_out(make_shop: ShopFactory) -> None:
    gauge = "order_api_db_pool_connections_in_use"
    # A quiet shop: its outbox relay polls once a minute, so only this test moves its pool.
    shop = await make_shop(outbox_poll_seconds=60)
    assert (await shop.client.get("/health/ready")).status_code == 200
    pool = shop.app.state.engine.sync_engine.pool
    await wait_until(lambda: pool.checkedout() == 0, "the relay's first poll to end")
    # The gauge sums every engine of the process; other tests' engines stay as they are.
    at_rest = value(await scrape(shop.client), gauge)
    async with AsyncExitStack() as held:
        for _ in range(2):
            await held.enter_async_context(shop.app.state.engine.connect())
        assert value(await scrape(shop.client), gauge) == at_rest + 2
    assert value(await scrape(shop.client), gauge) == at_rest


def test_several_serve_processes_answer_one_sum(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    requests = 24
    redis = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix, "SECRET_KEY": TEST_SECRET_KEY}
    with running_server(tmp_path, "--workers", "2", **redis) as server:
        for _ in range(requests):
            # A fresh connection each time, so the kernel spreads them over both processes.
            assert httpx2.get(f"{server.url}/health/ready").status_code == 200

        def served() -> float:
            samples = parse(httpx2.get(f"{server.url}/metrics").text)
            return value(
                samples,
                "order_api_http_requests_total",
                method="GET",
                route="/health/ready",
                status="200",
            )

        # The other process writes its requests' metrics up to WRITE_EVERY_SECONDS later.
        asyncio.run(wait_until(lambda: served() == requests, "both processes' requests counted"))
        for _ in range(8):
            assert served() == requests
        stderr = server.stop()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    started = {line["event"] for line in lines if line["event"].startswith("Started server")}
    assert len(started) == 2
    [directory] = [line["path"] for line in lines if line["event"] == "metrics_directory_created"]
    assert not Path(directory).exists(), "the private metrics directory is removed at exit"


def test_requests_counted_together_are_observed_as_each_one() -> None:
    """The access lines' batch gives the latency histogram what one `observe` a request gives."""
    route = f"/batch-{uuid.uuid4().hex}"
    # On a bound, between bounds, past the last one, zero, and one amount several times.
    amounts = [0.0, 0.005, 0.0051, 0.3, 2.5, 11.0, 0.3, 0.3, 1e-9, 99.0]
    each_registry = CollectorRegistry()
    each = Histogram("latency", "t", ["route"], buckets=LATENCY_BUCKETS, registry=each_registry)
    for amount in amounts:
        each.labels(route).observe(amount)
    record_requests([("GET", route, 200, amount) for amount in amounts])
    observed = without_created(each_registry)
    recorded = parse(generate_latest(REGISTRY).decode())
    histogram = "order_api_http_request_duration_seconds"
    for (name, labels), sample in observed.items():
        assert recorded[(name.replace("latency", histogram), labels)] == sample
    assert value(recorded, f"{histogram}_count", route=route) == len(amounts)
    assert value(recorded, f"{histogram}_bucket", route=route, le="0.005") == 3
    assert value(recorded, f"{histogram}_bucket", route=route, le="10.0") == 8
    assert value(recorded, f"{histogram}_sum", route=route) == pytest.approx(sum(amounts))
    requests = "order_api_http_requests_total"
    assert value(recorded, requests, method="GET", route=route, status="200") == len(amounts)


def without_created(registry: CollectorRegistry) -> Samples:
    """The registry's samples but when each series was made."""
    samples = parse(generate_latest(registry).decode())
    return {key: sample for key, sample in samples.items() if not key[0].endswith("_created")}
