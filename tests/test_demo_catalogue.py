"""The demo catalogue: `order-api seed-demo`, and the embedded first start."""

from __future__ import annotations

from pathlib import Path

import httpx2

from order_api.products.demo import DEMO_PRODUCTS
from tests.test_cli import run, running_server


def test_seed_demo_fills_an_empty_catalogue_once(tmp_path: Path) -> None:
    first = run(["seed-demo"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"{len(DEMO_PRODUCTS)} demo product(s) created"
    again = run(["seed-demo"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "the catalogue is not empty"


def test_the_first_embedded_start_has_a_catalogue_to_browse(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        listing = httpx2.get(f"{server.url}/api/v1/products", params={"page_size": 100})
        server.stop()
    assert listing.status_code == 200
    on_sale = [product for product in DEMO_PRODUCTS if product.is_active]
    assert listing.json()["total"] == len(on_sale)
    assert {item["name"] for item in listing.json()["items"]} == {p.name for p in on_sale}
