"""Warm-up, then rounds of every scenario: rounds outermost, so noise hits them all alike."""

from __future__ import annotations

from collections.abc import Mapping

from bench.load import LoadContext, RunResult, run_load
from bench.options import Options
from bench.scenarios import Scenario
from bench.servers import Server


def describe(run: RunResult) -> str:
    return (
        f"{run.requests_per_second:9,.0f} req/s  p50 {run.p50_ms:7.2f} ms  "
        f"p99 {run.p99_ms:7.2f} ms  CPU {run.cpu_us_per_request:6,.0f} µs/req"
    )


def measure(
    scenarios: list[Scenario],
    servers: Mapping[str, Server],
    options: Options,
    context: LoadContext,
    run_tag: str,
) -> tuple[dict[str, list[RunResult]], list[str]]:
    """Every scenario's runs by key, and a line per failed run (non-2xx or socket errors)."""

    def load(scenario: Scenario, seconds: float, tag: str) -> RunResult:
        return run_load(scenario, servers[scenario.server], seconds, context, f"{run_tag}-{tag}")

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
        for scenario in scenarios:
            run = load(scenario, options.duration_seconds, f"{round_number}-{scenario.key}")
            runs[scenario.key].append(run)
            print(f"  {scenario.title:<60} {describe(run)}", flush=True)
            if run.problems:
                failure = f"{scenario.title}, round {round_number}: {', '.join(run.problems)}"
                failures.append(failure)
                print(f"  FAILED RUN: {failure}", flush=True)
    return runs, failures
