"""The four goals, as ratios within one run (SPEC §4 and docs/performance notes §5)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bench import scenarios as names
from bench.results import Summary, paired_ratio, ratio

PRODUCT_MIN_RPS_RATIO = 0.50
PRODUCT_MAX_P99_RATIO = 2.5
ORDER_MIN_RPS_RATIO = 0.50
HEALTH_MIN_RPS_RATIO = 0.90
MIDDLEWARE_MAX_COST = 0.10


@dataclass(frozen=True)
class Figure:
    """One ratio of a goal, with its limit: drawn as one bar of the chart."""

    label: str
    value: float
    limit: float
    at_least: bool

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def describe(self) -> str:
        sign = ">=" if self.at_least else "<="
        return f"{self.label} = {self.value:.2f} (goal {sign} {self.limit:g})"


@dataclass(frozen=True)
class Goal:
    name: str
    figures: list[Figure]

    @property
    def met(self) -> bool:
        return all(figure.met for figure in self.figures)

    @property
    def verdict(self) -> str:
        return "met" if self.met else "NOT met"


def evaluate(summaries: Mapping[str, Summary]) -> list[Goal]:
    def rps(key: str) -> float:
        return summaries[key].requests_per_second

    def at_least(label: str, value: float, limit: float) -> Figure:
        return Figure(label, value, limit, at_least=True)

    def at_most(label: str, value: float, limit: float) -> Figure:
        return Figure(label, value, limit, at_least=False)

    product, bare_product = summaries[names.PRODUCT], summaries[names.BARE_PRODUCT]
    product_rps = ratio(rps(names.PRODUCT), rps(names.BARE_PRODUCT))
    product_p99 = ratio(product.p99_ms, bare_product.p99_ms)
    order_rps = ratio(rps(names.ORDER), rps(names.BARE_ORDER))
    health_rps = ratio(rps(names.HEALTH), rps(names.PLAIN_JSON))
    middleware_cost = 1 - paired_ratio(
        summaries[names.PAIRED_PRODUCT], summaries[names.BARE_STACK_PRODUCT]
    )
    return [
        Goal(
            "GET /api/v1/products/{id} vs bare FastAPI + asyncpg",
            [
                at_least("products/{id} req/s ratio", product_rps, PRODUCT_MIN_RPS_RATIO),
                at_most("products/{id} p99 ratio", product_p99, PRODUCT_MAX_P99_RATIO),
            ],
        ),
        Goal(
            "POST /api/v1/orders vs bare order",
            [at_least("POST /orders req/s ratio", order_rps, ORDER_MIN_RPS_RATIO)],
        ),
        Goal(
            "GET /health/live vs plain FastAPI JSON",
            [at_least("/health/live req/s ratio", health_rps, HEALTH_MIN_RPS_RATIO)],
        ),
        Goal(
            "middleware stack cost on GET /api/v1/products/{id}",
            [
                at_most(
                    "middleware cost (1 - with/without, paired rounds)",
                    middleware_cost,
                    MIDDLEWARE_MAX_COST,
                )
            ],
        ),
    ]
