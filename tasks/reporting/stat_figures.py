"""The figures of "Which optimizer is better?": pairwise matrix, forest plot, performance profile.

Like tasks.reporting.figures, each takes numbers already computed (tasks.reporting.statistics and
tasks.reporting.targets) and only draws them, on the Agg backend, written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from tasks.reporting.figures import DIVERGED_COLOR, save
from tasks.reporting.targets import profile_curve

TAU_TICKS = (1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100, 1000)
VERDICT_MARKS = {"beats": "*", "equivalent": "=", "undecided": "?"}  # tasks.reporting.verdicts' kinds


def pairwise_matrix(path: Path, names: Sequence[str], pairs: Sequence[Mapping[str, Any]]) -> Path:
    """Mean paired difference row − column in points, marked by verdict: * beats, = equivalent, ? undecided."""
    index = {name: position for position, name in enumerate(names)}
    size = len(names)
    values = np.full((size, size), np.nan)
    labels = [["" for _ in names] for _ in names]
    for pair in pairs:
        if pair["mean_difference"] is None:
            continue
        row, column = index[pair["a"]], index[pair["b"]]
        difference = 100 * pair["mean_difference"]
        mark = VERDICT_MARKS[pair["verdict"]["kind"]] + ("" if pair["significant"] is not None else "\n(n<3)")
        for r, c, sign in ((row, column, 1), (column, row, -1)):
            values[r, c] = sign * difference
            labels[r][c] = f"{sign * difference:+.2f}{mark}"
    figure = Figure(figsize=(max(5.5, 0.9 * size + 3), max(4.5, 0.8 * size + 2)))
    axis = figure.subplots()
    limit = max(float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0, 0.01)
    image = axis.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-limit, vmax=limit)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="row − column (points of test accuracy)")
    for r in range(size):
        for c in range(size):
            text = "—" if r == c else labels[r][c] or "n/a"
            dark = np.isfinite(values[r, c]) and abs(values[r, c]) > 0.6 * limit
            axis.text(c, r, text, ha="center", va="center", fontsize="small", color="white" if dark else "black")
    ticks = np.arange(size)
    axis.set_xticks(ticks, names, rotation=30, ha="right")
    axis.set_yticks(ticks, names)
    axis.set_title("Mean paired difference in test accuracy\n* beats   = equivalent within the margin   ? undecided")
    return save(figure, path)


def forest_plot(path: Path, names: Sequence[str], optimizers: Mapping[str, Mapping[str, Any]]) -> Path:
    """Each optimizer's mean test accuracy with its 95% t interval; a bare point where there is none."""
    figure = Figure(figsize=(8, max(3.0, 0.55 * len(names) + 1.5)))
    axis = figure.subplots()
    positions = np.arange(len(names))[::-1]
    for position, name in zip(positions, names):
        result = optimizers[name]
        label = f"n={result['n_seeds']}"
        if result["mean"] is None:
            axis.text(
                0.5,
                position,
                f"{name}: no test accuracy",
                color=DIVERGED_COLOR,
                va="center",
                transform=axis.get_yaxis_transform(),
            )
            continue
        if result["ci_low"] is not None:
            axis.plot([result["ci_low"], result["ci_high"]], [position, position], color="C0", linewidth=2.5)
            axis.plot(result["mean"], position, "o", color="C0")
        else:
            axis.plot(result["mean"], position, "o", markerfacecolor="white", color="C0")
            label += ", no interval (< 3 seeds)"
        right = result["ci_high"] if result["ci_high"] is not None else result["mean"]
        axis.annotate(
            label, (right, position), xytext=(8, 0), textcoords="offset points", va="center", fontsize="small"
        )
    axis.set_yticks(positions, names)
    axis.set_ylim(-0.8, len(names) - 0.2)
    low, high = axis.get_xlim()
    axis.set_xlim(low, high + 0.45 * (high - low))  # room for the labels right of each interval
    with_test = any(result.get("se_test") is not None for result in optimizers.values())
    sources = "seeds and test images" if with_test else "seeds only, test images held fixed"
    axis.set_xlabel(f"test accuracy (mean over seeds, 95% t interval; noise of {sources})")
    axis.set_title("Test accuracy per optimizer at its chosen learning rate")
    axis.grid(axis="x", alpha=0.3)
    return save(figure, path)


def performance_profile(path: Path, profiles: Sequence[Mapping[str, Any]], names: Sequence[str]) -> Path:
    """ρ(τ) per optimizer, one panel per target, τ on a log axis (see tasks.reporting.targets)."""
    figure = Figure(figsize=(5.5 * len(profiles), 4.5))
    axes = np.atleast_1d(figure.subplots(1, len(profiles), squeeze=False)[0])
    for axis, profile in zip(axes, profiles):
        finite = [r for ratios in profile["ratios"].values() for r in ratios if r is not None]
        top = max(2.0, 1.2 * max(finite)) if finite else 2.0
        taus = np.geomspace(1.0, top, 400)
        for number, name in enumerate(names):
            ratios = profile["ratios"].get(name, [])
            axis.step(
                taus,
                profile_curve(ratios, taus),
                where="post",
                color=f"C{number % 10}",
                label=f"{name} ({sum(r is not None for r in ratios)}/{len(ratios)} reached)",
            )
        axis.set_xscale("log")
        axis.set_xticks([tick for tick in TAU_TICKS if tick <= top], [f"{tick:g}" for tick in TAU_TICKS if tick <= top])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_ylim(-0.03, 1.03)
        axis.set_xlabel("τ (time to target / fastest on the same seed), log scale")
        axis.set_ylabel("fraction of seeds within τ")
        axis.set_title(f"Performance profile: validation accuracy ≥ {profile['target']:g}")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize="small", loc="lower right")
    return save(figure, path)
