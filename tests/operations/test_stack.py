"""`order-api stack`'s supervision and mail catcher, with real child processes and real SMTP.

The children here are small Python programs that exit, or ignore SIGTERM, on purpose: the
supervision rules are the same for them as for the API and worker processes the stack starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from order_api.ops.mail_catcher import MailCatcherUnavailable, start_mail_catcher
from order_api.ops.stack import Child, Stack, StackPlan
from tests.mailbox import plain_text, written
from tests.test_cli import free_port, invoke
from tests.waiting import wait_until


def plan(tmp_path: Path) -> StackPlan:
    return StackPlan(
        host="127.0.0.1",
        first_port=free_port(),
        api_processes=2,
        worker_processes=1,
        worker_concurrency=4,
        mail_catcher=None,
        mail_directory=tmp_path / "mail",
        # Long: in these tests only a second stop request may cut a child's grace short.
        stop_grace_seconds=60,
    )


def program(source: str) -> list[str]:
    return [sys.executable, "-c", source]


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_child_that_exits_is_started_again_after_a_growing_delay(tmp_path: Path) -> None:
    output = io.BytesIO()
    stack = Stack(plan(tmp_path), output)
    flaky = Child("flaky", program("print('up'); raise SystemExit(3)"))
    with capture_logs() as logs:
        running = asyncio.create_task(stack.run([flaky]))
        await wait_until(lambda: len(events(logs, "stack_process_exited")) >= 2, "two exits")
        stack.on_stop_signal()
        await running
    exits = events(logs, "stack_process_exited")
    assert [(e["name"], e["code"]) for e in exits[:2]] == [("flaky", 3), ("flaky", 3)]
    assert [e["restart_in"] for e in exits[:2]] == [1.0, 2.0]
    assert len(events(logs, "stack_process_started")) >= 2
    assert output.getvalue().startswith(b"flaky    | up\n")
    assert events(logs, "stack_stopped")


async def test_a_stop_waits_for_each_child_and_a_second_stop_kills_the_rest(
    tmp_path: Path,
) -> None:
    output = io.BytesIO()
    stack = Stack(plan(tmp_path), output)
    polite = Child("polite", program("import time; print('ready', flush=True); time.sleep(60)"))
    stubborn = Child(
        "stubborn",
        program(
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)"
        ),
    )
    with capture_logs() as logs:
        running = asyncio.create_task(stack.run([polite, stubborn]))
        await wait_until(lambda: output.getvalue().count(b"ready") == 2, "both children up")
        stack.on_stop_signal()
        await wait_until(lambda: bool(events(logs, "stack_process_stopped")), "the polite child")
        assert not running.done()  # the stubborn one still has its grace
        stack.on_stop_signal()
        await running
    stopped = {e["name"]: e["code"] for e in events(logs, "stack_process_stopped")}
    assert stopped == {"polite": -15, "stubborn": -9}
    assert [e["name"] for e in events(logs, "stack_process_killed")] == ["stubborn"]
    assert not events(logs, "stack_process_exited")  # nothing was restarted during the stop


async def test_the_mail_catcher_keeps_each_message_it_accepts(tmp_path: Path) -> None:
    port = free_port()
    catcher = await start_mail_catcher("127.0.0.1", port, tmp_path / "mail")
    try:
        for number in (1, 2):
            message = EmailMessage()
            message["From"], message["To"] = "shop@example.com", "ada@example.com"
            message["Subject"] = f"Order {number}"
            message.set_content(f"Order {number} is on its way.")
            with capture_logs() as logs:
                await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
            assert events(logs, "mail_caught")[0]["subject"] == f"Order {number}"
        with pytest.raises(MailCatcherUnavailable, match=f"cannot listen on 127.0.0.1:{port}"):
            await start_mail_catcher("127.0.0.1", port, tmp_path / "other")
    finally:
        catcher.close()
        await catcher.wait_closed()
    caught = written(tmp_path / "mail")
    assert [m["Subject"] for m in caught] == ["Order 1", "Order 2"]
    assert plain_text(caught[1]).strip() == "Order 2 is on its way."


def test_the_stack_needs_postgresql_and_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke(["stack"], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert result.stderr == "order-api: the stack needs DATABASE_URL=postgresql://… and REDIS_URL\n"
    redis_only = invoke(
        ["stack"], tmp_path, monkeypatch, REDIS_URL="redis://127.0.0.1:1/0", SECRET_KEY="k" * 48
    )
    assert (redis_only.exit_code, redis_only.stderr) == (2, result.stderr)


def test_the_api_ports_must_fit_below_65536(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "SECRET_KEY": "k" * 48,
    }
    result = invoke(["stack", "--port", "65535"], tmp_path, monkeypatch, **settings)
    assert result.exit_code == 2
    assert result.stderr == "order-api: 2 API ports from 65535 pass 65535\n"


SUPERVISOR = """
import asyncio, sys
from pathlib import Path
from order_api.ops.stack import Child, Stack, StackPlan
plan = StackPlan("127.0.0.1", 8000, 1, 1, 1, None, Path("mail"), 60)
sleeper = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(999)"]
asyncio.run(Stack(plan, sys.stdout.buffer).run([Child("sleeper", sleeper)]))
"""


def is_running(pid: int) -> bool:
    """Alive and not a zombie (a container's PID 1 may never reap an orphan)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


async def supervised_sleeper() -> tuple[asyncio.subprocess.Process, int]:
    """A stack process supervising one sleeping child; returns both, once the child is up."""
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUPERVISOR, stdout=asyncio.subprocess.PIPE
    )
    assert supervisor.stdout is not None
    async with asyncio.timeout(60):
        while not (line := (await supervisor.stdout.readline()).decode()).startswith("sleeper"):
            assert line, "the stack ended before its child spoke"
    return supervisor, int(line.partition("| ")[2])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_children_do_not_outlive_a_killed_stack() -> None:
    supervisor, child = await supervised_sleeper()
    assert is_running(child)
    supervisor.kill()
    await supervisor.wait()
    try:
        await wait_until(lambda: not is_running(child), "the orphaned child to stop")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


async def test_closing_the_terminal_stops_the_stack_gracefully() -> None:
    supervisor, child = await supervised_sleeper()
    supervisor.send_signal(signal.SIGHUP)
    assert await asyncio.wait_for(supervisor.wait(), 60) == 0
    assert not is_running(child)


async def test_children_run_on_when_the_stack_output_breaks(tmp_path: Path) -> None:
    reading, writing = os.pipe()
    os.close(reading)
    # More than the pipe and the reader's buffer hold: unread, the child would block forever.
    chatty = Child("chatty", program("for _ in range(50_000): print('x' * 100)"))
    with os.fdopen(writing, "wb", buffering=0) as broken, capture_logs() as logs:
        stack = Stack(plan(tmp_path), broken)
        running = asyncio.create_task(stack.run([chatty]))
        await wait_until(lambda: bool(events(logs, "stack_process_exited")), "the child's end")
        stack.on_stop_signal()
        await running
    assert [e["name"] for e in events(logs, "stack_output_lost")] == ["chatty"]
    assert events(logs, "stack_process_exited")[0]["code"] == 0


def test_children_get_the_catcher_and_a_heartbeat_file_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_USERNAME", "relay-user")
    monkeypatch.setenv("SMTP_PASSWORD", "relay-secret")
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", "/run/order-api/worker.heartbeat")
    stack_plan = replace(plan(tmp_path), worker_processes=2, mail_catcher=("127.0.0.1", 2525))
    environment = stack_plan.child_environment()
    smtp = {name: environment[name] for name in environment if name.startswith("SMTP_")}
    # Blank, so a `.env` in the working directory cannot put the relay's login back.
    assert smtp == {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "2525",
        "SMTP_TLS": "none",
        "SMTP_USERNAME": "",
        "SMTP_PASSWORD": "",
    }
    children = {child.name: child for child in stack_plan.children()}
    assert list(children) == ["api-1", "api-2", "worker-1", "worker-2"]
    assert children["worker-1"].environment == {}
    assert children["worker-2"].environment == {
        "WORKER_HEARTBEAT_FILE": "/run/order-api/worker.heartbeat.2"
    }
    assert children["api-2"].command[-1] == str(stack_plan.first_port + 1)
