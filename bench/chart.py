"""benchmarks.png: one horizontal bar per goal ratio, with that ratio's goal line."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt

from bench.goals import Goal

MET_COLOUR = "#2e7d32"
MISSED_COLOUR = "#c62828"


def draw(goals: list[Goal], path: Path) -> None:
    figures = [figure for goal in goals for figure in goal.figures]
    figure_height = 1.0 + 0.7 * len(figures)
    chart, axes = plt.subplots(figsize=(8, figure_height))
    positions = list(range(len(figures)))
    values = [0.0 if figure.value != figure.value else figure.value for figure in figures]
    colours = [MET_COLOUR if figure.met else MISSED_COLOUR for figure in figures]
    axes.barh(positions, values, color=colours, height=0.6)
    for position, item in zip(positions, figures, strict=True):
        axes.vlines(item.limit, position - 0.4, position + 0.4, colors="black", linestyles="--")
        sign = ">=" if item.at_least else "<="
        axes.annotate(
            f"{item.value:.2f} (goal {sign} {item.limit:g})",
            (max(values[position], item.limit), position),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    axes.set_yticks(positions, [item.label for item in figures])
    axes.invert_yaxis()
    axes.set_xlim(0, max([*values, *(item.limit for item in figures)]) * 1.45)
    axes.set_xlabel("ratio (dashed line: goal; green met, red not met)")
    axes.set_title("order-api vs bare baselines, same run")
    chart.tight_layout()
    chart.savefig(path, dpi=120)
    plt.close(chart)
