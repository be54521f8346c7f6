"""No log line carries a token, even at DEBUG, and a client's bad frame is no server error."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path

import httpx2
import pytest

from tests.streams import LiveShop, frames_until_closed, open_stream, refusal_code
from tests.test_cli import ORDER_API, STARTUP_WAIT_SECONDS, command_env, free_port

TOKEN = "eyJhbGciOiJIUzI1NiJ9.SECRET-PAYLOAD-42.SIGNATURE"


def test_debug_logs_of_a_real_server_carry_no_token(tmp_path: Path) -> None:
    # DEBUG is chatty (aiosqlite logs every call): stderr goes to a file, never a full pipe.
    port, log = free_port(), tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [ORDER_API, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=command_env(tmp_path, LOG_LEVEL="DEBUG"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_for_liveness(f"http://127.0.0.1:{port}/health/live")
            url = f"ws://127.0.0.1:{port}/api/v1/orders/ws?token={TOKEN}"
            assert asyncio.run(refusal_code(url)) == 4401
        finally:
            process.terminate()
            process.wait(timeout=60)
    logged = log.read_text()
    assert "SECRET-PAYLOAD-42" not in logged
    # The socket was logged, its query redacted.
    assert "token=[redacted]" in logged


def wait_for_liveness(url: str) -> None:
    deadline = time.monotonic() + STARTUP_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {url}")


async def test_invalid_utf8_from_a_client_is_a_warning_not_an_error(
    live_shop: LiveShop, caplog: pytest.LogCaptureFixture
) -> None:
    customer = await live_shop.account()
    async with open_stream(live_shop.stream_url(customer.access_token, customer.id)) as websocket:
        await websocket.send(b"\xff\xfe\xfd", text=True)
        _, code = await frames_until_closed(websocket)
    assert code == 1007
    uvicorn_records = [r for r in caplog.records if r.name == "uvicorn.error"]
    assert any("Invalid UTF-8" in r.getMessage() for r in uvicorn_records)
    assert not [r for r in uvicorn_records if r.levelno >= logging.ERROR]
