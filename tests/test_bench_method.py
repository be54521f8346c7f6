"""The bench's middleware figure: the pair runs back to back, alternating, and is taken round by
round (the smoke bench in test_bench.py runs the whole harness; this checks the arithmetic)."""

from __future__ import annotations

import pytest

from bench.load import RunResult
from bench.report import middleware_pairs
from bench.results import Summary, paired_ratio
from bench.scenarios import BARE_STACK_PRODUCT, PRODUCT, all_scenarios, in_round_order


def keys_in_round(round_number: int) -> list[str]:
    return [scenario.key for scenario in in_round_order(all_scenarios(), round_number)]


def test_the_middleware_pair_runs_back_to_back_in_alternating_order() -> None:
    first, second = keys_in_round(1), keys_in_round(2)
    start = first.index(PRODUCT)
    assert first[start : start + 2] == [PRODUCT, BARE_STACK_PRODUCT]
    assert second[start : start + 2] == [BARE_STACK_PRODUCT, PRODUCT]
    assert keys_in_round(3) == first
    # Nothing else moves.
    assert [key for key in second if key not in (PRODUCT, BARE_STACK_PRODUCT)] == [
        key for key in first if key not in (PRODUCT, BARE_STACK_PRODUCT)
    ]


def runs(*requests_per_second: int) -> list[RunResult]:
    return [RunResult(count, 1_000_000, 1000, 2000, 1.0) for count in requests_per_second]


def test_the_middleware_figure_is_the_median_of_the_rounds_ratios() -> None:
    scenarios = {scenario.key: scenario for scenario in all_scenarios()}
    # Round 2 is noisy for the app without middleware: its ratio alone says 0.40.
    with_stack = Summary(scenarios[PRODUCT], runs(900, 600, 880))
    without = Summary(scenarios[BARE_STACK_PRODUCT], runs(1000, 1500, 960))
    assert paired_ratio(with_stack, without) == pytest.approx(0.9)
    assert with_stack.requests_per_second / without.requests_per_second == pytest.approx(0.88)
    [line, _] = middleware_pairs({PRODUCT: with_stack, BARE_STACK_PRODUCT: without})
    assert "0.900 / 0.400 / 0.917" in line
    assert "ratio of the two medians is 0.880" in line
