"""`order-api stack`: the production topology as local processes, without containers.

N API processes on consecutive ports, M workers and a mail catcher, on the PostgreSQL and Redis
the settings name. Each child's output comes out prefixed with its name; a child that exits is
started again after a growing delay (as `restart: unless-stopped` would); SIGINT or SIGTERM stops
them all, gracefully, then by force after the grace. Written by hand: honcho and its kin neither
restart a dead child nor give one the stop grace the API and the worker need.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from order_api.ops.mail_catcher import start_mail_catcher
from order_api.platform.telemetry import mark_this_process_dead

logger = structlog.get_logger("order_api.ops.stack")

FIRST_RESTART_DELAY_SECONDS = 1.0
LONGEST_RESTART_DELAY_SECONDS = 30.0
# A child that ran this long before exiting is restarted after the first delay again.
STEADY_RUN_SECONDS = 30.0
# Beyond the children's own stop grace: interpreter exit, files, sockets.
STOP_MARGIN_SECONDS = 10.0
OUTPUT_LINE_LIMIT = 1024 * 1024
# Closing the terminal (SIGHUP) stops the stack as gracefully as Ctrl-C does.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class StackPlan:
    host: str
    first_port: int
    api_processes: int
    worker_processes: int
    worker_concurrency: int
    # Where the mail catcher listens and writes; None: the children use the SMTP settings as set.
    mail_catcher: tuple[str, int] | None
    mail_directory: Path
    stop_grace_seconds: float

    def api_urls(self) -> list[str]:
        return [f"http://{self.host}:{self.first_port + i}" for i in range(self.api_processes)]

    def children(self) -> list[Child]:
        ports = range(self.first_port, self.first_port + self.api_processes)
        apis = [
            Child(
                f"api-{i + 1}", order_api_command("serve", "--host", self.host, "--port", str(port))
            )
            for i, port in enumerate(ports)
        ]
        worker = order_api_command("worker", "--concurrency", str(self.worker_concurrency))
        workers = [
            Child(f"worker-{number}", worker, own_heartbeat_file(number))
            for number in range(1, self.worker_processes + 1)
        ]
        return apis + workers

    def child_environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self.mail_catcher is not None:
            host, port = self.mail_catcher
            environment |= {"SMTP_HOST": host, "SMTP_PORT": str(port), "SMTP_TLS": "none"}
            # Blank, not removed: a `.env` with a real relay's login would fill them in again.
            environment |= {"SMTP_USERNAME": "", "SMTP_PASSWORD": ""}
        return environment


def own_heartbeat_file(worker_number: int) -> dict[str, str]:
    """Worker N > 1 beats into `<file>.<N>`: one shared file would hide a dead worker."""
    shared = os.environ.get("WORKER_HEARTBEAT_FILE", "").strip()
    if not shared or worker_number == 1:
        return {}
    return {"WORKER_HEARTBEAT_FILE": f"{shared}.{worker_number}"}


def ending_with_this_process() -> Callable[[], None] | None:
    """On Linux, a child gets SIGTERM when the stack dies, even by SIGKILL: no orphan keeps a port.

    Runs in the child between fork and exec, so it only calls prctl and getppid.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the stack died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


def order_api_command(*arguments: str) -> list[str]:
    """`order-api …` with this interpreter, whether or not the script is on PATH."""
    return [sys.executable, "-m", "order_api", *arguments]


@dataclass(frozen=True)
class Child:
    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)


def send_signal(process: asyncio.subprocess.Process, signum: int) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


@dataclass
class Stack:
    plan: StackPlan
    output: IO[bytes]
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    forced: asyncio.Event = field(default_factory=asyncio.Event)
    output_broken: bool = False

    async def run(self, children: list[Child]) -> None:
        """Until SIGINT or SIGTERM; a second signal kills the children at once."""
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.on_stop_signal)
        catcher = mail = None
        if self.plan.mail_catcher is not None:
            host, port = self.plan.mail_catcher
            catcher = await start_mail_catcher(host, port, self.plan.mail_directory)
            mail = {"smtp": f"{host}:{port}", "directory": str(self.plan.mail_directory)}
        logger.info(
            "stack_starting",
            api=self.plan.api_urls(),
            workers=self.plan.worker_processes,
            mail_catcher=mail,
        )
        supervising = [asyncio.create_task(self.keep_running(child)) for child in children]
        try:
            await asyncio.gather(*supervising)
        except Exception:
            # A fault of the supervisor's own still stops every child the usual way.
            self.stopping.set()
            await asyncio.gather(*supervising, return_exceptions=True)
            raise
        finally:
            if catcher is not None:
                catcher.close()
                await catcher.wait_closed()
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
        logger.info("stack_stopped")

    def on_stop_signal(self) -> None:
        if self.stopping.is_set():
            self.forced.set()
            return
        logger.info("stack_stopping", grace_seconds=self.plan.stop_grace_seconds)
        self.stopping.set()

    async def keep_running(self, child: Child) -> None:
        """Start `child`, and start it again whenever it exits, until the stack stops."""
        delay = FIRST_RESTART_DELAY_SECONDS
        environment = self.plan.child_environment() | child.environment
        while not self.stopping.is_set():
            started = asyncio.get_running_loop().time()
            code = await self.run_once(child, environment)
            if self.stopping.is_set():
                logger.info("stack_process_stopped", name=child.name, code=code)
                return
            if asyncio.get_running_loop().time() - started >= STEADY_RUN_SECONDS:
                delay = FIRST_RESTART_DELAY_SECONDS
            logger.warning("stack_process_exited", name=child.name, code=code, restart_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, LONGEST_RESTART_DELAY_SECONDS)

    async def run_once(self, child: Child, environment: dict[str, str]) -> int:
        process = await asyncio.create_subprocess_exec(
            *child.command,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=OUTPUT_LINE_LIMIT,
            preexec_fn=ending_with_this_process(),
        )
        logger.info("stack_process_started", name=child.name, pid=process.pid)
        copying = asyncio.create_task(self.copy_output(child.name, process))
        waiting = asyncio.create_task(process.wait())
        stop_requested = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([waiting, stop_requested], return_when=asyncio.FIRST_COMPLETED)
        stop_requested.cancel()
        if not waiting.done():
            await self.stop(child.name, process, waiting)
        await copying
        # A killed child cannot drop its own live gauges from the shared metrics directory.
        mark_this_process_dead(process.pid)
        return await waiting

    async def stop(
        self, name: str, process: asyncio.subprocess.Process, waiting: asyncio.Task[int]
    ) -> None:
        send_signal(process, signal.SIGTERM)
        forced = asyncio.create_task(self.forced.wait())
        grace = self.plan.stop_grace_seconds + STOP_MARGIN_SECONDS
        await asyncio.wait([waiting, forced], timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if not waiting.done():
            logger.warning("stack_process_killed", name=name)
            send_signal(process, signal.SIGKILL)
            await waiting

    async def copy_output(self, name: str, process: asyncio.subprocess.Process) -> None:
        """Each line of the child's output, prefixed with its name, as `docker compose` does."""
        assert process.stdout is not None
        prefix = f"{name:<9}| ".encode()
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # over the reader's limit: asyncio has dropped it
                line = b"(a line over 1 MiB was left out)\n"
            if not line:
                return
            if self.output_broken:
                continue  # still read: a child blocked on a full pipe would hang, not die
            try:
                self.output.write(prefix + line)
                self.output.flush()
            except OSError:
                self.output_broken = True
                logger.warning("stack_output_lost", name=name)
