"""Job metrics as an operator runs them: `order-api serve` and `order-api worker` share one
PROMETHEUS_MULTIPROC_DIR, so the API's /metrics shows the jobs the worker ran, after it exits too.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx2
import pytest

from tests.accounts import PASSWORD
from tests.jobs.conftest import FAST_JOBS
from tests.jobs.test_worker import Workers
from tests.operations.test_metrics import Samples, parse, value
from tests.processes import empty_database, production_env
from tests.smtp_server import SmtpServer
from tests.test_cli import command_env, run, running_server
from tests.waiting import wait_until

JOBS = "order_api_jobs_total"


def scrape(url: str) -> Samples:
    response = httpx2.get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


async def test_the_api_reports_the_jobs_a_worker_ran_and_keeps_them_after_it_exits(
    tmp_path: Path,
    postgres_database: str,
    redis_url: str,
    redis_prefix: str,
    smtp: SmtpServer,
) -> None:
    metrics_directory = tmp_path / "metrics"
    metrics_directory.mkdir()
    jobs = {
        name.upper(): str(setting) for name, setting in {**smtp.settings(), **FAST_JOBS}.items()
    }
    env = production_env(
        postgres_database,
        redis_url,
        redis_prefix,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_directory),
        **jobs,
    )
    migrated = run(["migrate"], tmp_path, **env)
    assert migrated.returncode == 0, migrated.stderr
    workers = Workers(command_env(tmp_path, **env), tmp_path)
    try:
        with running_server(tmp_path, **env) as server:
            worker = workers.start()
            account = {"email": "ada@example.com", "password": PASSWORD, "full_name": "Ada"}
            registered = httpx2.post(f"{server.url}/api/v1/users", json=account)
            assert registered.status_code == 201, registered.text

            def welcome_counted() -> bool:
                return value(scrape(server.url), JOBS, kind="email", outcome="succeeded") == 1

            await wait_until(welcome_counted, "the worker's e-mail job in the API's /metrics")
            assert smtp.inbox.count() == 1
            assert smtp.inbox.messages[0]["To"] == account["email"]

            live_gauges = metrics_directory / f"gauge_livesum_{worker.pid}.db"
            assert live_gauges.exists()
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=60)
            assert worker.returncode == 0, stderr
            # Its counters are kept; its live gauges (the DB pool in use) are dropped.
            samples = scrape(server.url)
            assert value(samples, JOBS, kind="email", outcome="succeeded") == 1
            assert value(samples, JOBS, kind="email", outcome="failed") == 0
            assert (metrics_directory / f"counter_{worker.pid}.db").exists()
            assert not live_gauges.exists()
            server.stop()
    finally:
        workers.stop_all()
        await empty_database(postgres_database, tmp_path)


@pytest.mark.parametrize("command", ["worker", "serve", "migrate"])
def test_a_missing_metrics_directory_is_one_line_not_a_traceback(
    tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "no-such-directory"
    result = run([command], tmp_path, PROMETHEUS_MULTIPROC_DIR=str(missing))
    assert result.returncode == 2
    assert result.stderr == (
        f"order-api: refusing to start: PROMETHEUS_MULTIPROC_DIR={missing} "
        "is not an existing directory\n"
    )
    assert not missing.exists()
