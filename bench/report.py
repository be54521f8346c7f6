"""benchmarks.md: the figures of one run, written from scratch each time."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bench import scenarios as names
from bench.goals import Goal
from bench.load import WRK_TIMEOUT_SECONDS
from bench.options import Options
from bench.results import Summary, paired_ratio, ratio, round_ratios
from bench.scenarios import Group, ServerName

TWO_PROCESS_SUFFIX = f"-{ServerName.SERVICE_TWO_PROCESSES.value}"
SIZE_ROWS = (
    ("GET /api/v1/products", "page_size", tuple(f"products-page-{size}" for size in (1, 20, 100))),
    ("GET /api/v1/orders", "page_size", tuple(f"orders-page-{size}" for size in (1, 20, 100))),
    ("POST /api/v1/orders", "lines", (names.ORDER, "order-5-lines", "order-20-lines")),
)
SIZES = (1, 20, 100)
LINE_COUNTS = (1, 5, 20)


@dataclass(frozen=True)
class RunInfo:
    command: str
    date: str
    machine: Mapping[str, str]
    versions: Mapping[str, str]
    pinned: bool
    options: Options
    chart_name: str


def number(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def key_value_table(title: str, values: Mapping[str, str]) -> list[str]:
    rows = [f"| {name} | {value} |" for name, value in values.items()]
    return [f"| {title} | |", "|---|---|", *rows, ""]


def method(info: RunInfo) -> list[str]:
    options = info.options
    pinning = (
        "each 1-process server pinned with `taskset -c 0`, wrk with `taskset -c 1`; the "
        "2-process order-api is not pinned (its two workers may use both cores); PostgreSQL "
        "and Redis unpinned"
        if info.pinned
        else "no CPU pinning (fewer than 2 CPUs or no taskset)"
    )
    return [
        "## Method",
        "",
        f"- wrk 4.1 `-t1 -c{options.connections} --latency --timeout {WRK_TIMEOUT_SECONDS}s` "
        "(at saturation latency is about connections / throughput), one Lua script per kind "
        "of scenario (bench/wrk/); random product ids from a file of the 10,000 seeded ids; "
        "every POST has a fresh `Idempotency-Key` and the buyer's bearer token.",
        f"- {pinning}.",
        f"- {options.warmup_seconds:g} s warm-up per scenario, then {options.runs} round(s) of "
        f"{options.duration_seconds:g} s runs; rounds are outermost, so noise hits every "
        "scenario alike. Figures are medians over the rounds; every run is listed at the end.",
        "- The middleware cost compares two processes that differ only by the middleware: "
        "`order-api serve` and the same app without its middleware, each serving only the "
        "product reads of this pair, run back to back in every round in alternating order "
        "(ABBA); the cost is 1 minus the median of the rounds' req/s ratios.",
        "- CPU µs/request: utime + stime of the server's whole process tree (from /proc) over "
        "the run, divided by the requests.",
        "- order-api runs with production settings: PostgreSQL and Redis, `ENVIRONMENT="
        "production`, rate limiting on with every limit at 1000000000/minute (checked on every "
        "request, never triggering), JSON access log at INFO written to a file. No worker "
        "process runs: each order's outbox rows are handed to the Redis job queue once by the "
        "API process's relay (part of the order's cost) and stay there "
        "(`JOB_LEASE_SECONDS=3600`, so none is handed over again during the run).",
        "- Baselines are bare FastAPI apps served with order-api's own uvicorn options, one "
        "process; the bare order replays the service's captured SQL (bench/order_statements.py).",
        "- Any non-2xx answer or socket error makes a run failed (listed under Every run).",
        "",
    ]


def main_table(summaries: Mapping[str, Summary]) -> list[str]:
    lines = [
        "| scenario | req/s | p50 ms | p99 ms | CPU µs/req | baseline | req/s ratio | p99 ratio "
        "| all runs (req/s) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for summary in summaries.values():
        scenario = summary.scenario
        baseline_name, rps_ratio, p99_ratio = "—", "—", "—"
        if scenario.baseline is not None:
            baseline = summaries[scenario.baseline]
            baseline_name = baseline.scenario.title
            if scenario.group is Group.SCALING:
                baseline_name += " (1 process)"
            rps_ratio = number(ratio(summary.requests_per_second, baseline.requests_per_second), 2)
            p99_ratio = number(ratio(summary.p99_ms, baseline.p99_ms), 2)
        runs = " / ".join(number(run.requests_per_second) for run in summary.runs)
        lines.append(
            f"| {scenario.title} | {number(summary.requests_per_second)} "
            f"| {number(summary.p50_ms, 2)} | {number(summary.p99_ms, 2)} "
            f"| {number(summary.cpu_us_per_request)} | {baseline_name} | {rps_ratio} "
            f"| {p99_ratio} | {runs} |"
        )
    return [*lines, ""]


def goals_table(goals: list[Goal]) -> list[str]:
    lines = ["| goal | figures | result |", "|---|---|---|"]
    for goal in goals:
        figures = "; ".join(figure.describe() for figure in goal.figures)
        lines.append(f"| {goal.name} | {figures} | {goal.verdict} |")
    return [*lines, ""]


def scaling_table(summaries: Mapping[str, Summary]) -> list[str]:
    lines = [
        "| endpoint | 1 process req/s | 2 processes req/s | speed-up | CPU µs/req (1 / 2) "
        "| baseline (1 process, unchanged) | 2 processes vs baseline |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for summary in summaries.values():
        if summary.scenario.group is not Group.SCALING:
            continue
        single = summaries[summary.scenario.key.removesuffix(TWO_PROCESS_SUFFIX)]
        baseline_cell, baseline_ratio = "—", "—"
        if summary.scenario.baseline is not None:
            baseline = summaries[summary.scenario.baseline]
            baseline_cell = f"{baseline.scenario.title}: {number(baseline.requests_per_second)}"
            baseline_ratio = number(
                ratio(summary.requests_per_second, baseline.requests_per_second), 2
            )
        endpoint = single.scenario.title.split(": ", 1)[1]
        lines.append(
            f"| {endpoint} | {number(single.requests_per_second)} "
            f"| {number(summary.requests_per_second)} "
            f"| {number(ratio(summary.requests_per_second, single.requests_per_second), 2)} "
            f"| {number(single.cpu_us_per_request)} / {number(summary.cpu_us_per_request)} "
            f"| {baseline_cell} | {baseline_ratio} |"
        )
    return [*lines, ""]


def size_table(summaries: Mapping[str, Summary]) -> list[str]:
    lines = ["| endpoint | size | req/s | CPU µs/req |", "|---|---|---:|---:|"]
    for endpoint, unit, keys in SIZE_ROWS:
        sizes = LINE_COUNTS if unit == "lines" else SIZES
        for size, key in zip(sizes, keys, strict=True):
            summary = summaries[key]
            lines.append(
                f"| {endpoint} | {unit} {size} | {number(summary.requests_per_second)} "
                f"| {number(summary.cpu_us_per_request)} |"
            )
    return [*lines, ""]


def every_run_table(summaries: Mapping[str, Summary]) -> list[str]:
    lines = [
        "| scenario | round | requests | req/s | p50 ms | p99 ms | CPU µs/req | problems |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for summary in summaries.values():
        for round_number, run in enumerate(summary.runs, start=1):
            problems = ", ".join(run.problems) or "none"
            lines.append(
                f"| {summary.scenario.title} | {round_number} | {run.requests} "
                f"| {number(run.requests_per_second)} | {number(run.p50_ms, 2)} "
                f"| {number(run.p99_ms, 2)} | {number(run.cpu_us_per_request)} | {problems} |"
            )
    return [*lines, ""]


def middleware_pairs(summaries: Mapping[str, Summary]) -> list[str]:
    """Each round's pair behind the middleware figure, and for comparison the process that
    serves every other order-api scenario against the same app without middleware."""
    with_stack, without = summaries[names.PAIRED_PRODUCT], summaries[names.BARE_STACK_PRODUCT]
    pairs = " / ".join(f"{pair:.3f}" for pair in round_ratios(with_stack, without))
    serving_all = paired_ratio(summaries[names.PRODUCT], without)
    return [
        f"Middleware pair, with/without req/s by round: {pairs}. The order-api process that "
        f"serves every other scenario, against the same runs without middleware: "
        f"{serving_all:.3f} (median of the rounds' ratios; not back to back, and a longer "
        "history).",
        "",
    ]


def render(info: RunInfo, summaries: Mapping[str, Summary], goals: list[Goal]) -> str:
    lines = [
        "# order-api benchmarks",
        "",
        f"Generated by `make bench` (`{info.command}`) on {info.date}; do not edit by hand, "
        "run the command again. Compare figures only within one run: the ratios are the point.",
        "",
        "## Machine",
        "",
        *key_value_table("machine", info.machine),
        "## Versions",
        "",
        *key_value_table("component", info.versions),
        *method(info),
        "## Goals",
        "",
        *goals_table(goals),
        *middleware_pairs(summaries),
        f"![Goal ratios: bars with their goal lines]({info.chart_name})",
        "",
        "## Every scenario (medians)",
        "",
        *main_table(summaries),
        "## Scaling: order-api with 2 API processes",
        "",
        "The baselines stay one process: the column compares 2 order-api processes with them.",
        "",
        *scaling_table(summaries),
        "## Cost vs size (order-api, 1 process)",
        "",
        *size_table(summaries),
        "## Every run",
        "",
        *every_run_table(summaries),
    ]
    return "\n".join(lines)
