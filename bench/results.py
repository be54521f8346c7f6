"""Per-scenario medians over the runs, and ratios against a baseline."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import median

from bench.load import RunResult
from bench.scenarios import Scenario


@dataclass(frozen=True)
class Summary:
    scenario: Scenario
    runs: list[RunResult]

    def _median(self, figure: Callable[[RunResult], float]) -> float:
        return median(figure(run) for run in self.runs) if self.runs else math.nan

    @property
    def requests_per_second(self) -> float:
        return self._median(lambda run: run.requests_per_second)

    @property
    def p50_ms(self) -> float:
        return self._median(lambda run: run.p50_ms)

    @property
    def p99_ms(self) -> float:
        return self._median(lambda run: run.p99_ms)

    @property
    def cpu_us_per_request(self) -> float:
        return self._median(lambda run: run.cpu_us_per_request)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def round_ratios(numerator: Summary, denominator: Summary) -> list[float]:
    """Each round's req/s ratio of the two scenarios' runs."""
    return [
        ratio(top.requests_per_second, bottom.requests_per_second)
        for top, bottom in zip(numerator.runs, denominator.runs, strict=True)
    ]


def paired_ratio(numerator: Summary, denominator: Summary) -> float:
    """The median over rounds of one round's req/s ratio: for two scenarios run back to back,
    so each ratio compares runs under the same conditions, and one noisy round moves none."""
    ratios = round_ratios(numerator, denominator)
    return median(ratios) if ratios else math.nan
