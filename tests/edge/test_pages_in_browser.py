"""The Swagger page and the board under their real CSP in headless Chromium: zero violations.

One back-end (the embedded server); the policy does not depend on the database.
"""

from __future__ import annotations

from typing import Any

import httpx2
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from order_api.platform.http import BOARD_CSP
from tests.board.test_board_page import connection, sign_in, wait_for
from tests.processes import ADMIN
from tests.test_cli import RunningServer

# A script the page itself did not ship: CSP must refuse it, and the log must show the refusal.
INJECT_INLINE_SCRIPT = """
const script = document.createElement('script');
script.textContent = 'window.injected = true';
document.body.appendChild(script);
"""


def csp_violations(driver: Chrome) -> list[str]:
    """Console entries at any level that report a Content-Security-Policy refusal."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry["message"] for entry in entries if "Content Security Policy" in entry["message"]]


def severe_errors(driver: Chrome, entries: list[dict[str, Any]]) -> list[str]:
    return [
        entry["message"]
        for entry in entries
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]


def assert_policy_is_enforced(driver: Chrome) -> None:
    driver.execute_script(INJECT_INLINE_SCRIPT)
    assert driver.execute_script("return window.injected === undefined")
    assert any("inline script" in message for message in csp_violations(driver))


def test_docs_and_board_render_with_no_csp_violation(
    browser: Chrome, server: RunningServer, api: httpx2.Client
) -> None:
    docs = api.get("/api/docs")
    assert "server" not in docs.headers
    assert "x-powered-by" not in docs.headers

    browser.get(f"{server.url}/api/docs")
    wait_for(
        browser,
        lambda driver: driver.find_elements(By.CSS_SELECTOR, ".opblock-tag"),
        "Swagger UI to render the operations",
    )
    title = browser.find_element(By.CSS_SELECTOR, ".information-container .title").text
    assert "order-api" in title
    entries: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    assert [entry["message"] for entry in entries if "Content Security" in entry["message"]] == []
    assert severe_errors(browser, entries) == []
    assert_policy_is_enforced(browser)

    assert api.get("/board").headers["content-security-policy"] == BOARD_CSP
    browser.get(f"{server.url}/board")
    sign_in(browser, *ADMIN)
    # The live state needs the same-origin ws:// socket, which `connect-src 'self'` must allow.
    wait_for(browser, lambda driver: connection(driver) == "live", "the stream to go live")
    entries = browser.get_log("browser")  # type: ignore[no-untyped-call]
    assert [entry["message"] for entry in entries if "Content Security" in entry["message"]] == []
    assert severe_errors(browser, entries) == []
    assert_policy_is_enforced(browser)
