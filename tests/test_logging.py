"""One structured access line per request, with the request id bound and query values redacted."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import httpx2
import pytest
import structlog

from order_api.observability import configure_logging, redact_query


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        record.msg
        for record in caplog.records
        if record.name == "order_api.access" and isinstance(record.msg, dict)
    ]


async def test_access_line_has_route_template_status_duration_and_request_id(
    client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await client.get("/health/live?token=very-secret-value&page=2", headers={"x-request-id": "r-1"})
    [line] = access_lines(caplog)
    assert line["method"] == "GET"
    assert line["route"] == "/health/live"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["request_id"] == "r-1"
    assert line["query"] == "token=[redacted]&page=[redacted]"
    served = [str(record.msg) for record in caplog.records if not record.name.startswith("httpx")]
    assert not any("very-secret-value" in message for message in served)


async def test_unmatched_route_is_logged_without_template(
    client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await client.get("/no/such/route")
    [line] = access_lines(caplog)
    assert line["route"] is None
    assert line["status"] == 404


async def test_500_logs_the_trace_once_with_the_request_id(
    client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await client.get("/__test__/boom", headers={"x-request-id": "t-500"})
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert isinstance(errors[0].msg, dict)
    assert errors[0].msg["request_id"] == "t-500"
    assert errors[0].exc_info is not None
    [line] = access_lines(caplog)
    assert line["status"] == 500


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
