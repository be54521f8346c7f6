"""Warm-up, then rounds of every scenario: rounds outermost, so noise hits them all alike."""

from __future__ import annotations

import time
from collections.abc import Mapping

from bench.load import LoadContext, RunResult, run_load
from bench.options import Options
from bench.process_cpu import tree_cpu_seconds
from bench.scenarios import Scenario, in_round_order
from bench.servers import Server


def describe(run: RunResult) -> str:
    return (
        f"{run.requests_per_second:9,.0f} req/s  p50 {run.p50_ms:7.2f} ms  "
        f"p99 {run.p99_ms:7.2f} ms  CPU {run.cpu_us_per_request:6,.0f} µs/req"
    )


# A server still answering a run's last requests (wrk has gone, the requests have not) is idle
# when it spends under this share of a core; it is given at most DRAIN_LIMIT_SECONDS for it.
IDLE_CPU_SHARE = 0.1
IDLE_CHECK_SECONDS = 0.2
DRAIN_LIMIT_SECONDS = 20.0


def wait_until_idle(server: Server) -> None:
    """Let the requests a run left behind finish before the next run starts: after a slow
    scenario (a second per answer) they would otherwise be counted against the next one."""
    deadline = time.monotonic() + DRAIN_LIMIT_SECONDS
    before = tree_cpu_seconds(server.process.pid)
    while time.monotonic() < deadline:
        time.sleep(IDLE_CHECK_SECONDS)
        now = tree_cpu_seconds(server.process.pid)
        if now - before < IDLE_CPU_SHARE * IDLE_CHECK_SECONDS:
            return
        before = now


def measure(
    scenarios: list[Scenario],
    servers: Mapping[str, Server],
    options: Options,
    context: LoadContext,
    run_tag: str,
) -> tuple[dict[str, list[RunResult]], list[str]]:
    """Every scenario's runs by key, and a line per failed run (non-2xx or socket errors)."""

    def load(scenario: Scenario, seconds: float, tag: str) -> RunResult:
        server = servers[scenario.server]
        run = run_load(scenario, server, seconds, context, f"{run_tag}-{tag}")
        wait_until_idle(server)
        return run

    if options.warmup_seconds > 0:
        print(f"warm-up: {options.warmup_seconds:g} s per scenario", flush=True)
        for scenario in scenarios:
            warm = load(scenario, options.warmup_seconds, f"warm-{scenario.key}")
            if warm.problems:
                print(f"  warm-up of {scenario.title}: {', '.join(warm.problems)}", flush=True)
    runs: dict[str, list[RunResult]] = {scenario.key: [] for scenario in scenarios}
    failures: list[str] = []
    for round_number in range(1, options.runs + 1):
        print(f"round {round_number}/{options.runs}", flush=True)
        for scenario in in_round_order(scenarios, round_number):
            run = load(scenario, options.duration_seconds, f"{round_number}-{scenario.key}")
            runs[scenario.key].append(run)
            print(f"  {scenario.title:<60} {describe(run)}", flush=True)
            if run.problems:
                failure = f"{scenario.title}, round {round_number}: {', '.join(run.problems)}"
                failures.append(failure)
                print(f"  FAILED RUN: {failure}", flush=True)
    return runs, failures
