"""The staff board in a real Chromium against a real embedded `order-api serve`.

Orders are placed and moved through the API while the page stays open: the rows must follow
without a reload, and a stopped server must show as "reconnecting…".
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from selenium.webdriver import Chrome, ChromeOptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.processes import ADMIN, migrate_and_create_admin
from tests.support import IN_CI
from tests.test_cli import RunningServer, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,800",
)
BROWSER_WAIT_SECONDS = 20
CUSTOMER = ("ada@example.com", "correct horse battery staple")
OTHER_CUSTOMER = ("grace@example.com", "another horse battery staple")


def require_browser() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        reason = f"the board test needs {' and '.join(missing)} (scripts/install-test-tools.sh)"
        if IN_CI:
            pytest.fail(f"CI=true requires a browser: {reason}")
        pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chrome]:
    require_browser()
    options = ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never looks for, or downloads, a driver.
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """Embedded mode (SQLite under tmp DATA_DIR, in-process pub-sub) with a known admin."""
    migrate_and_create_admin(tmp_path, {})
    with running_server(tmp_path) as running:
        yield running


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=BROWSER_WAIT_SECONDS) as client:
        yield client


def log_in(api: httpx2.Client, email: str, password: str) -> dict[str, str]:
    response = api.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def register(api: httpx2.Client, email: str, password: str, full_name: str) -> dict[str, str]:
    body = {"email": email, "password": password, "full_name": full_name}
    response = api.post("/api/v1/users", json=body)
    assert response.status_code == 201, response.text
    return log_in(api, email, password)


def create_product(api: httpx2.Client, staff: dict[str, str], name: str, price: int) -> str:
    body = {"name": name, "price_cents": price, "stock": 50}
    response = api.post("/api/v1/products", json=body, headers=staff)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def place_order(api: httpx2.Client, customer: dict[str, str], lines: list[tuple[str, int]]) -> str:
    items = [{"product_id": product, "quantity": quantity} for product, quantity in lines]
    body = {"items": items, "payment_method_id": "pm_card_visa"}
    response = api.post("/api/v1/orders", json=body, headers=customer)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def move(api: httpx2.Client, staff: dict[str, str], order_id: str, *statuses: str) -> None:
    for status in statuses:
        response = api.post(
            f"/api/v1/orders/{order_id}/status", json={"status": status}, headers=staff
        )
        assert response.status_code == 200, response.text


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> None:
    WebDriverWait(driver, BROWSER_WAIT_SECONDS).until(condition, f"gave up waiting: {what}")


def connection(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "connection").text)


def sign_in(driver: WebDriver, email: str, password: str) -> None:
    for field, value in (("email", email), ("password", password)):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    driver.find_element(By.ID, "sign-in").click()


def row_status(driver: WebDriver, order_id: str) -> str | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-order-id="{order_id}"]')
    return str(rows[0].find_element(By.CLASS_NAME, "badge").text) if rows else None


def page_errors(driver: Chrome) -> list[str]:
    """Console errors, less the favicon request every page without one makes."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        entry["message"]
        for entry in entries
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]


def save_screenshot(driver: WebDriver, tmp_path: Path) -> None:
    shot = tmp_path / "board.png"
    assert driver.save_screenshot(str(shot))
    if wanted := os.environ.get("BOARD_SCREENSHOT"):
        shutil.copyfile(shot, wanted)


def test_board_follows_orders_live_and_shows_a_lost_server(
    browser: Chrome, server: RunningServer, api: httpx2.Client, tmp_path: Path
) -> None:
    staff = log_in(api, *ADMIN)
    beans = create_product(api, staff, "Espresso beans, 1 kg", 2490)
    dripper = create_product(api, staff, "Ceramic pour-over dripper", 3200)
    filters = create_product(api, staff, "Paper filters, 100", 450)
    customer = register(api, *CUSTOMER, "Ada Lovelace")
    other = register(api, *OTHER_CUSTOMER, "Grace Hopper")
    move(api, staff, place_order(api, customer, [(beans, 2), (filters, 1)]), "PAID", "SHIPPED")
    move(api, staff, place_order(api, other, [(dripper, 1)]), "PAID", "SHIPPED", "DELIVERED")
    move(api, staff, place_order(api, customer, [(filters, 3)]), "CANCELLED")
    move(api, staff, place_order(api, other, [(beans, 3), (dripper, 1)]), "PAID")
    place_order(api, customer, [(beans, 1)])

    browser.get(f"{server.url}/board")
    sign_in(browser, *CUSTOMER)
    wait_for(
        browser,
        lambda driver: "for staff" in driver.find_element(By.ID, "notice").text,
        "the staff-only message for a customer",
    )
    assert connection(browser) == "signed out"

    sign_in(browser, *ADMIN)
    wait_for(browser, lambda driver: connection(driver) == "live", "the stream to go live")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#orders tr")) == 5
    browser.execute_script("window.boardMarker = 'the same page'")

    placed = place_order(api, customer, [(dripper, 1), (filters, 2)])
    wait_for(browser, lambda driver: row_status(driver, placed) == "PENDING", "the new row")
    move(api, staff, placed, "PAID")
    wait_for(browser, lambda driver: row_status(driver, placed) == "PAID", "the row to show PAID")

    assert browser.execute_script("return window.boardMarker") == "the same page"
    navigations = "return performance.getEntriesByType('navigation').length"
    assert browser.execute_script(navigations) == 1
    assert page_errors(browser) == []
    save_screenshot(browser, tmp_path)

    server.stop()
    wait_for(
        browser,
        lambda driver: connection(driver) == "reconnecting…",
        "the indicator to show the lost server",
    )
