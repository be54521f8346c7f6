"""The command line of `python -m bench` (`make bench BENCH_OPTIONS=...`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SMOKE_DURATION_SECONDS = 2.0
SMOKE_RUNS = 1
SMOKE_WARMUP_SECONDS = 0.5
# PostgreSQL connections per server process: order-api's default (DB_POOL_SIZE) and asyncpg's,
# so the comparison is fair; the smoke run (a test of the harness) keeps eight servers to ~20.
POOL_SIZE = 10
SMOKE_POOL_SIZE = 2


@dataclass(frozen=True)
class Options:
    smoke: bool
    duration_seconds: float
    runs: int
    warmup_seconds: float
    connections: int
    output_dir: Path
    pool_size: int = POOL_SIZE


def parse_options(arguments: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark order-api against bare FastAPI baselines; write the report.",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2 s runs, 1 run per scenario, 0.5 s warm-up; any failed request exits non-zero",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("docs"),
        help="where benchmarks.md and benchmarks.png are written",
    )
    parsed = parser.parse_args(arguments)
    if parsed.smoke:
        return Options(
            smoke=True,
            duration_seconds=SMOKE_DURATION_SECONDS,
            runs=SMOKE_RUNS,
            warmup_seconds=SMOKE_WARMUP_SECONDS,
            connections=parsed.connections,
            output_dir=parsed.output_dir,
            pool_size=SMOKE_POOL_SIZE,
        )
    if parsed.duration <= 0 or parsed.runs < 1 or parsed.warmup < 0 or parsed.connections < 1:
        parser.error("--duration and --connections must be positive, --runs at least 1")
    return Options(
        smoke=False,
        duration_seconds=parsed.duration,
        runs=parsed.runs,
        warmup_seconds=parsed.warmup,
        connections=parsed.connections,
        output_dir=parsed.output_dir,
    )
