"""The bench's middleware figure: the pair runs back to back, alternating, and is taken round by
round (the smoke bench in test_bench.py runs the whole harness; this checks the arithmetic)."""

from __future__ import annotations

import pytest

from bench.load import RunResult
from bench.report import middleware_pairs
from bench.results import Summary, paired_ratio
from bench.scenarios import (
    BARE_STACK_PRODUCT,
    PAIRED_PRODUCT,
    PRODUCT,
    ServerName,
    all_scenarios,
    in_round_order,
)


def keys_in_round(round_number: int) -> list[str]:
    return [scenario.key for scenario in in_round_order(all_scenarios(), round_number)]


def test_the_middleware_pair_runs_back_to_back_in_alternating_order() -> None:
    first, second = keys_in_round(1), keys_in_round(2)
    start = first.index(PAIRED_PRODUCT)
    assert first[start : start + 2] == [PAIRED_PRODUCT, BARE_STACK_PRODUCT]
    assert second[start : start + 2] == [BARE_STACK_PRODUCT, PAIRED_PRODUCT]
    assert keys_in_round(3) == first
    # Nothing else moves.
    pair = (PAIRED_PRODUCT, BARE_STACK_PRODUCT)
    assert [key for key in second if key not in pair] == [key for key in first if key not in pair]


def test_the_pair_has_its_own_process_that_serves_nothing_else() -> None:
    served_by = {scenario.key: scenario.server for scenario in all_scenarios()}
    assert served_by[PAIRED_PRODUCT] is ServerName.PAIRED
    assert [key for key, server in served_by.items() if server is ServerName.PAIRED] == [
        PAIRED_PRODUCT
    ]
    assert [key for key, server in served_by.items() if server is ServerName.BARE_STACK] == [
        BARE_STACK_PRODUCT
    ]
    assert served_by[PRODUCT] is ServerName.SERVICE


def runs(*requests_per_second: int) -> list[RunResult]:
    return [RunResult(count, 1_000_000, 1000, 2000, 1.0) for count in requests_per_second]


def test_the_middleware_figure_is_the_median_of_the_rounds_ratios() -> None:
    scenarios = {scenario.key: scenario for scenario in all_scenarios()}
    # Round 2 is noisy for the app without middleware: its ratio alone says 0.40.
    with_stack = Summary(scenarios[PAIRED_PRODUCT], runs(900, 600, 880))
    without = Summary(scenarios[BARE_STACK_PRODUCT], runs(1000, 1500, 960))
    serving_all = Summary(scenarios[PRODUCT], runs(800, 750, 768))
    assert paired_ratio(with_stack, without) == pytest.approx(0.9)
    assert with_stack.requests_per_second / without.requests_per_second == pytest.approx(0.88)
    summaries = {PAIRED_PRODUCT: with_stack, BARE_STACK_PRODUCT: without, PRODUCT: serving_all}
    [line, _] = middleware_pairs(summaries)
    assert "by round: 0.900 / 0.400 / 0.917." in line
    assert "without middleware: 0.800 (" in line
