"""The `order-api` command as an operator runs it: real processes, a real uvicorn on a free port."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from order_api.cli import cli
from order_api.jobs import outbox
from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.platform.db import create_engine, create_sessions
from order_api.platform.telemetry import configure_logging
from tests.support import TEST_DB_POOL_SIZE, TEST_SECRET_KEY, make_settings

ORDER_API = str(Path(sys.executable).parent / "order-api")
STARTUP_WAIT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in SETTING_NAMES}
    pool = str(TEST_DB_POOL_SIZE)
    env.update({"DATA_DIR": str(tmp_path / "data"), "LOG_FORMAT": "json", "DB_POOL_SIZE": pool})
    env.update(values)
    return env


SETTING_NAMES = {
    "environment",
    "debug",
    "data_dir",
    "database_url",
    "redis_url",
    "secret_key",
    "allowed_origins",
    "log_level",
    "log_format",
}


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORDER_API, *args],
        cwd=tmp_path,
        env=command_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


COMMANDS = {
    "serve": ["--host", "--port", "--workers"],
    "migrate": [],
    "openapi": [],
    "worker": ["--concurrency"],
    "stack": ["--port", "--api-processes", "--worker-processes", "--smtp-port", "--mail-dir"],
    "jobs": [],
    "jobs retry-failed": [],
    "create-admin": ["--email", "--password"],
    "seed-demo": [],
}


def invoke(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answers: str | None = None,
    **env: str,
) -> Result:
    """A command in this process (no interpreter start-up), with `run`'s working directory and
    settings: for what needs no process of its own, such as help and refusals at start."""
    monkeypatch.chdir(tmp_path)
    cleared: dict[str, str | None] = {name.upper(): None for name in SETTING_NAMES}
    # Wide enough that no option name in the help is cut short.
    settings = {**cleared, "DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", **env}
    try:
        return CliRunner().invoke(cli, args, input=answers, env=settings, prog_name="order-api")
    finally:
        # The command's log handler wrote to the runner's stream, which is closed now.
        configure_logging("INFO", "json")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    result = invoke([*command.split(), "--help"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.stderr
    assert f"Usage: order-api {command}" in result.stdout
    for option in COMMANDS[command]:
        assert option in result.stdout
    assert not (tmp_path / "data").exists()


def test_the_installed_command_lists_every_command(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"^│ (\w[\w-]*)\s", result.stdout, flags=re.MULTILINE)
    assert {command.split()[0] for command in COMMANDS} <= set(listed)


def test_worker_needs_redis(tmp_path: Path) -> None:
    result = run(["worker"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "order-api: the worker needs REDIS_URL; embedded mode runs jobs inside `serve`"
    )


def test_worker_without_a_reachable_queue_is_one_line(tmp_path: Path) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    result = run(["worker"], tmp_path, REDIS_URL=unreachable, SECRET_KEY=TEST_SECRET_KEY)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("order-api: the worker cannot start:")


async def test_jobs_retry_failed_requeues_failed_rows(tmp_path: Path) -> None:
    assert run(["migrate"], tmp_path).returncode == 0
    database = tmp_path / "data" / "order_api.sqlite3"
    settings = make_settings(f"sqlite:///{database}", tmp_path / "data")
    engine = create_engine(settings)
    try:
        async with create_sessions(engine, settings)() as session:
            failed = await outbox.enqueue(session, "email", {"template": "welcome"})
            await session.flush()
            await session.execute(
                update(OutboxMessage).values(status=OutboxStatus.FAILED, attempts=8)
            )
            await session.commit()
        result = run(["jobs", "retry-failed"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "1 failed job(s) queued again"
        async with create_sessions(engine, settings)() as session:
            row = await session.get(OutboxMessage, failed)
        assert row is not None
        assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SECRET_KEY": "changethis"}, "SECRET_KEY"),
        ({"SECRET_KEY": "short-key"}, "SECRET_KEY"),
        ({}, "SECRET_KEY"),
        ({"SECRET_KEY": "k" * 48, "DEBUG": "true"}, "DEBUG"),
        ({"SECRET_KEY": "k" * 48, "ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS"),
    ],
)
def test_production_refuses_an_unsafe_setting_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    result = invoke(["serve"], tmp_path, monkeypatch, ENVIRONMENT="production", **env)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("order-api: refusing to start:")
    assert named in line


def test_production_refuses_to_start_before_opening_the_port(tmp_path: Path) -> None:
    port = free_port()
    result = run(["serve", "--port", str(port)], tmp_path, ENVIRONMENT="production")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("order-api: refusing to start:")
    assert "SECRET_KEY" in line
    assert "Traceback" not in result.stderr
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_invalid_setting_is_one_line(tmp_path: Path) -> None:
    result = run(["migrate"], tmp_path, DB_POOL_SIZE="lots")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "order-api: refusing to start: invalid setting: DB_POOL_SIZE: "
        "Input should be a valid integer, unable to parse string as an integer"
    )


def test_migrate_creates_the_embedded_database(tmp_path: Path) -> None:
    result = run(["migrate"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "order_api.sqlite3").exists()
    assert "migrations_applied" in result.stderr


def test_migrate_against_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = run(
        ["migrate"],
        tmp_path,
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        SECRET_KEY=TEST_SECRET_KEY,
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("order-api: cannot migrate the database:")


def test_openapi_prints_the_schema(tmp_path: Path) -> None:
    result = run(["openapi"], tmp_path, SECRET_KEY=TEST_SECRET_KEY)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["openapi"].startswith("3.1")
    assert "/health/live" in schema["paths"]


class RunningServer:
    """A real `order-api serve`; its stderr is read as it comes (a full pipe would stall it)."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.stdout = ""
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def processes_started(self) -> int:
        return sum("Started server process" in line for line in list(self.stderr_lines))

    def stop(self) -> str:
        """SIGTERM, wait, and hand back stderr (the logs); stdout is kept on `self.stdout`."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def log_tail(self) -> str:
        """The last 40 lines of its log: the only clue once the process is gone."""
        return "".join(self.stderr_lines[-40:])

    def wait_with_tail(self) -> str:
        """Wait for it to end and hand back `log_tail`."""
        self.wait()
        return self.log_tail()

    def wait(self) -> str:
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # The last lines say which stop step hung.
            message = f"the server did not stop within 60 s; its log ends:\n{self.log_tail()}"
            raise AssertionError(message) from None
        self._reader.join(timeout=60)
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()
        return "".join(self.stderr_lines)


def start_server(tmp_path: Path, *options: str, **env: str) -> RunningServer:
    """Started, and answering: with `--workers N`, only once all N processes have started."""
    return start_server_with(tmp_path, options, command_env(tmp_path, **env))


def start_server_with(
    tmp_path: Path, options: Sequence[str], environ: Mapping[str, str]
) -> RunningServer:
    """`start_server` with the whole environment given; a port taken meanwhile means another."""
    for _ in range(3):
        port = free_port()
        server = RunningServer(launch([*options, "--port", str(port)], environ, tmp_path), port)
        if wait_started(server, options):
            return server
        log = server.wait_with_tail()
        if "address already in use" not in log:
            break
    raise AssertionError(f"the server exited at start-up; its log ends:\n{log}")


def launch(options: Sequence[str], environ: Mapping[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ORDER_API, "serve", *options],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A group of its own: a failed test kills every `--workers` child, not just the parent.
        start_new_session=True,
    )


def wait_started(server: RunningServer, options: Sequence[str]) -> bool:
    """True once it answers with all its processes, False if it exited; raises after the wait."""
    workers = int(options[options.index("--workers") + 1]) if "--workers" in options else 1
    deadline = time.monotonic() + STARTUP_WAIT_SECONDS
    while server.process.poll() is None:
        try:
            live = httpx2.get(f"{server.url}/health/live", timeout=1).status_code == 200
        except httpx2.TransportError:
            live = False
        if live and server.processes_started() >= workers:
            return True
        if time.monotonic() > deadline:
            os.killpg(server.process.pid, signal.SIGKILL)
            message = f"not started within {STARTUP_WAIT_SECONDS} s; its log ends:\n"
            raise AssertionError(message + server.wait_with_tail())
        time.sleep(0.2)
    return False


def running_server(
    tmp_path: Path, *options: str, **env: str
) -> AbstractContextManager[RunningServer]:
    """`start_server`, killed at the end if the test did not stop it (a failed assertion)."""
    return killed_at_exit(start_server(tmp_path, *options, **env))


@contextmanager
def killed_at_exit(server: RunningServer) -> Iterator[RunningServer]:
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path) as server:
        yield server


def test_serve_runs_the_embedded_service(embedded_server: RunningServer, tmp_path: Path) -> None:
    url = embedded_server.url
    live = httpx2.get(f"{url}/health/live", headers={"x-request-id": "live-1"})
    assert live.status_code == 200
    assert live.headers["x-request-id"] == "live-1"
    assert "server" not in live.headers
    assert httpx2.get(f"{url}/health/ready").json()["checks"]["database"]["status"] == "ok"
    assert httpx2.get(f"{url}/api/docs").status_code == 200
    head = httpx2.head(f"{url}/health/ready")
    assert head.status_code == 200
    assert head.content == b""
    assert httpx2.get(f"{url}/api/openapi.json").json()["openapi"].startswith("3.1")
    missing = httpx2.get(f"{url}/missing?token=top-secret-token")
    assert missing.headers["content-type"] == "application/problem+json"

    stderr = embedded_server.stop()
    # uvicorn stops gracefully, then re-raises the signal so the exit status says why it ended.
    assert embedded_server.process.returncode in {0, -signal.SIGTERM}
    assert "Application shutdown complete." in stderr
    assert "top-secret-token" not in stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "order_api.access"]
    assert {line["path"] for line in access} >= {"/health/live", "/api/docs", "/missing"}
    assert any(line["request_id"] == "live-1" for line in access)
    assert not any(line.get("logger") == "uvicorn.access" for line in lines)
    assert (tmp_path / "data" / "secret_key").exists()


def test_several_worker_processes_need_redis(tmp_path: Path) -> None:
    result = run(["serve", "--workers", "2"], tmp_path)
    assert result.returncode == 2
    assert "--workers above 1 needs REDIS_URL" in result.stderr


def test_serve_with_several_worker_processes(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    redis = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix, "SECRET_KEY": TEST_SECRET_KEY}
    with running_server(tmp_path, "--workers", "2", **redis) as server:
        for attempt in range(20):
            request_id = f"w-{attempt}"
            response = httpx2.get(
                f"{server.url}/health/ready", headers={"x-request-id": request_id}
            )
            assert response.status_code == 200
            assert response.headers["x-request-id"] == request_id
        stderr = server.stop()
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    workers = {event for event in events if event.startswith("Started server process")}
    assert len(workers) == 2
