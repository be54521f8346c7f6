"""One structured access line per request, with the request id bound and query values redacted."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import structlog

from order_api.platform.telemetry.logs import (
    WRITE_EVERY_SECONDS,
    begin_request,
    configure_logging,
    end_request,
    redact_query,
    write_ended_requests,
)
from tests.support import AppFactory
from tests.waiting import wait_until


@pytest.fixture
def json_log(client: httpx2.AsyncClient) -> Iterator[io.StringIO]:
    """What the app writes as JSON logs (as in production), from here on: the client's app is
    built first, since building an app configures the logs."""
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    yield stream
    configure_logging("INFO", "json")


async def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The access lines so far, those still queued written first (as a scrape does)."""
    write_ended_requests()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "order_api.access"]


async def test_access_line_has_route_template_status_duration_and_request_id(
    client: httpx2.AsyncClient, json_log: io.StringIO
) -> None:
    await client.get("/health/live?token=very-secret-value&page=2", headers={"x-request-id": "r-1"})
    [line] = await access_lines(json_log)
    assert line["method"] == "GET"
    assert line["route"] == "/health/live"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["request_id"] == "r-1"
    assert line["query"] == "token=[redacted]&page=[redacted]"
    assert "very-secret-value" not in json_log.getvalue()


async def test_any_path_and_query_make_a_valid_json_line(
    client: httpx2.AsyncClient, json_log: io.StringIO
) -> None:
    """The line is written as text: quotes, backslashes, control and non-ASCII characters in what
    the client sent still give one line of JSON with the path as it was."""
    await client.get("/no/%22quoted%22%5Cback%09slash/%C3%A9/%E2%80%A8", params={'na"me\\': "v"})
    [line] = await access_lines(json_log)
    assert line["path"] == '/no/"quoted"\\back\tslash/é/\u2028'  # as ASGI decodes it
    assert line["query"] == "na%22me%5C=[redacted]"  # names as sent, encoded
    assert line["status"] == 404


async def test_unmatched_route_is_logged_without_template(
    client: httpx2.AsyncClient, json_log: io.StringIO
) -> None:
    await client.get("/no/such/route")
    [line] = await access_lines(json_log)
    assert line["route"] is None
    assert line["status"] == 404


async def test_500_logs_the_trace_once_with_the_request_id(
    client: httpx2.AsyncClient, json_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await client.get("/__test__/boom", headers={"x-request-id": "t-500"})
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert isinstance(errors[0].msg, dict)
    assert errors[0].msg["request_id"] == "t-500"
    assert errors[0].exc_info is not None
    [line] = await access_lines(json_log)
    assert line["status"] == 500


async def test_a_head_request_that_fails_is_logged_with_its_route(
    client: httpx2.AsyncClient, json_log: io.StringIO
) -> None:
    response = await client.head("/__test__/boom")
    assert response.status_code == 500
    assert response.content == b""
    [line] = await access_lines(json_log)
    assert (line["method"], line["route"], line["status"]) == ("HEAD", "/__test__/boom", 500)


async def test_json_tracebacks_carry_no_local_values(client: httpx2.AsyncClient) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        await client.get("/__test__/boom", headers={"authorization": "Bearer SUPERSECRETJWT"})
    finally:
        configure_logging("INFO", "json")
    [error] = [json.loads(line) for line in stream.getvalue().splitlines() if '"error"' in line]
    assert error["event"] == "unhandled_error"
    assert error["exception"][0]["exc_type"] == "BoomError"
    assert "SUPERSECRETJWT" not in stream.getvalue()


def test_redact_query_keeps_names_only() -> None:
    assert redact_query(b"") == ""
    assert redact_query(b"token=abc&flag&x=1=2") == "token=[redacted]&flag=[redacted]&x=[redacted]"


@pytest.mark.parametrize(("log_format", "looks_like_json"), [("json", True), ("console", False)])
def test_log_format_setting(log_format: str, looks_like_json: bool) -> None:
    stream = io.StringIO()
    try:
        configure_logging("INFO", log_format, stream=stream)
        structlog.get_logger("order_api.test").info("hello", answer=42)
        logging.getLogger("some.library").warning("from the standard library")
    finally:
        configure_logging("INFO", "json")
    first, second = stream.getvalue().splitlines()
    if looks_like_json:
        assert json.loads(first)["answer"] == 42
        assert json.loads(second)["event"] == "from the standard library"
    else:
        assert "hello" in first
        assert "answer" in first
        assert "from the standard library" in second


@pytest.mark.parametrize(("level", "written"), [("INFO", True), ("WARNING", False)])
async def test_json_access_lines_are_written_straight_to_the_log_stream(
    make_client: AppFactory, level: str, written: bool
) -> None:
    client = await make_client()
    stream = io.StringIO()
    try:
        configure_logging(level, "json", stream=stream)
        structlog.get_logger("order_api.test").info("before")
        await client.get("/api/v1/products?q=tea&page=2", headers={"x-request-id": "json-1"})
    finally:
        configure_logging("INFO", "json")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "order_api.access"]
    if not written:
        assert access == []
        return
    [line] = access
    assert line["route"] == "/api/v1/products"
    assert line["query"] == "q=[redacted]&page=[redacted]"
    assert (line["method"], line["status"], line["request_id"]) == ("GET", 200, "json-1")
    assert line["level"] == "info"
    assert line["event"] == "request"
    # The shape structlog gives every other JSON line: the same keys, the same time format.
    assert set(lines[0]) - {"event"} <= set(line)
    assert line["timestamp"].endswith("Z")
    assert line["timestamp"] >= lines[0]["timestamp"]  # ISO 8601 in UTC sorts as text


def ended(request_id: str, path: str) -> None:
    """A request as the edge ends it, through the same two calls."""
    token = begin_request(request_id)
    scope = {"method": "GET", "path": path, "query_string": b"", "route": None}
    end_request(scope, token, 404, 0.002)


async def test_ended_requests_are_written_together_shortly_after_the_first() -> None:
    stream = io.StringIO()
    try:
        configure_logging("INFO", "json", stream=stream)
        for number in range(3):
            ended(f"batch-{number}", f"/batch/{number}")
        await asyncio.sleep(0)
        assert stream.getvalue() == ""  # nothing yet: a write waits WRITE_EVERY_SECONDS
        await wait_until(lambda: stream.getvalue() != "", "the queued lines to be written")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        configure_logging("INFO", "json")
    assert [(line["request_id"], line["path"]) for line in lines] == [
        (f"batch-{number}", f"/batch/{number}") for number in range(3)
    ]
    assert {line["status"] for line in lines} == {404}
    assert {line["duration_ms"] for line in lines} == {2.0}


def test_lines_left_by_a_loop_that_stopped_are_written_by_the_next() -> None:
    stream = io.StringIO()

    async def end_and_stop(request_id: str) -> None:
        ended(request_id, "/stopped")
        asyncio.get_running_loop().stop()  # the write this end scheduled never runs

    try:
        configure_logging("INFO", "json", stream=stream)
        stopped = asyncio.new_event_loop()
        stopped.run_until_complete(end_and_stop("left-behind"))
        stopped.close()
        assert stream.getvalue() == ""

        async def end_and_wait(request_id: str) -> None:
            ended(request_id, "/next")
            await asyncio.sleep(WRITE_EVERY_SECONDS)  # its write was due first: it has run

        asyncio.run(end_and_wait("next-loop"))
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        configure_logging("INFO", "json")
    assert [line["request_id"] for line in lines] == ["left-behind", "next-loop"]


async def test_new_request_ids_are_unique_32_hex_characters(client: httpx2.AsyncClient) -> None:
    ids = [(await client.get("/health/live")).headers["x-request-id"] for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(request_id) == 32 and int(request_id, 16) >= 0 for request_id in ids)
    assert len({request_id[:16] for request_id in ids}) == 1  # this process's prefix
