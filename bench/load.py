"""One wrk run against one server, with the server's CPU time measured around it."""

from __future__ import annotations

import json
import math
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.process_cpu import tree_cpu_seconds
from bench.scenarios import Customer, FixedGet, PlaceOrder, ProductById, Scenario
from bench.servers import Server
from bench.tools import CLIENT_CORE, pinned

WRK_SCRIPTS = Path(__file__).resolve().parent / "wrk"
RESULT_MARKER = "BENCH_RESULT "
# At saturation latency is about connections / throughput: wrk's default 2 s would turn every
# scenario under 32 req/s into timeout errors and cut its p99 at 2 s. Slower still is an error.
WRK_TIMEOUT_SECONDS = 10
WRK_GRACE_SECONDS = 30.0


class LoadFailed(Exception):
    """wrk did not run or printed no result line."""


@dataclass(frozen=True)
class LoadContext:
    wrk: str
    ids_file: Path
    tokens: Mapping[Customer, str]
    connections: int
    pin: bool


@dataclass(frozen=True)
class RunResult:
    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    cpu_seconds: float
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def p50_ms(self) -> float:
        return self.p50_us / 1000

    @property
    def p99_ms(self) -> float:
        return self.p99_us / 1000

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds * 1e6 / self.requests if self.requests else 0.0

    @property
    def problems(self) -> list[str]:
        """Socket errors and non-2xx answers: a run with any of them is a failed run."""
        found = [f"{count} {kind} errors" for kind, count in self.errors.items() if count]
        found += [
            f"{count} x HTTP {status}"
            for status, count in sorted(self.statuses.items())
            if not status.startswith("2")
        ]
        return found


def script_and_arguments(
    scenario: Scenario, context: LoadContext, key_prefix: str
) -> tuple[str, list[str], list[str]]:
    """(Lua script, wrk options before the URL, script arguments) for the scenario's load."""
    load = scenario.load
    if isinstance(load, FixedGet):
        headers = []
        if load.customer is not None:
            headers = ["-H", f"Authorization: Bearer {context.tokens[load.customer]}"]
        return "fixed_get.lua", headers, []
    if isinstance(load, ProductById):
        return "product_by_id.lua", [], [str(context.ids_file), load.prefix]
    token = context.tokens[load.customer]
    arguments = [str(context.ids_file), load.path, token, key_prefix, str(load.lines)]
    return "place_order.lua", [], arguments


def url_path(scenario: Scenario) -> str:
    load = scenario.load
    return load.path if isinstance(load, FixedGet | PlaceOrder) else "/"


def run_load(
    scenario: Scenario, server: Server, seconds: float, context: LoadContext, key_prefix: str
) -> RunResult:
    """wrk for `seconds` (whole seconds for wrk; a fraction ends it with SIGINT, which wrk
    treats as the end of the run)."""
    script, options, arguments = script_and_arguments(scenario, context, key_prefix)
    command = [
        context.wrk,
        "-t1",
        f"-c{context.connections}",
        f"-d{math.ceil(seconds)}s",
        f"--timeout={WRK_TIMEOUT_SECONDS}s",
        "--latency",
        "-s",
        str(WRK_SCRIPTS / script),
        *options,
        server.url + url_path(scenario),
        "--",
        *arguments,
    ]
    cpu_before = tree_cpu_seconds(server.process.pid)
    process = subprocess.Popen(  # noqa: S603 - our wrk, our arguments
        pinned(command, CLIENT_CORE, context.pin),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wrk stops itself after whole seconds; a fraction of a second is cut short by us.
    limit = seconds + WRK_GRACE_SECONDS if float(seconds).is_integer() else seconds
    try:
        stdout, stderr = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=WRK_GRACE_SECONDS)
    cpu_seconds = tree_cpu_seconds(server.process.pid) - cpu_before
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if not lines:
        raise LoadFailed(f"wrk printed no result for {scenario.title}: {stderr.strip()[-300:]}")
    figures = json.loads(lines[-1][len(RESULT_MARKER) :])
    return RunResult(
        requests=int(figures["requests"]),
        duration_us=int(figures["duration_us"]),
        p50_us=int(figures["p50_us"]),
        p99_us=int(figures["p99_us"]),
        cpu_seconds=cpu_seconds,
        errors={kind: int(count) for kind, count in figures["errors"].items()},
        statuses={status: int(count) for status, count in figures["statuses"].items()},
    )
