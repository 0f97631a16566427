"""How the report shows learning-rate choices: the tuning records checked against the runs, and the
sensitivity lines (validation accuracy per grid point, the choice, and why).

A tuned entry comes with the `tuning` argument of build_report: its grid was run on the tuning seeds and
judged on validation only (tasks.training.tuning), and the runs hold the chosen point on every seed. An
untuned entry whose config lists several learning rates has its whole grid in the runs; its point is
chosen by tasks.reporting.comparison. Both apply the one rule of tasks.core.selection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tasks.core.errors import ReportError
from tasks.core.selection import (
    RULE,
    STABILITY_WARNING,
    check_tuning_record,
    final_scores,
    selection_stability,
)
from tasks.reporting import comparison

GRID_RULE = f"on all seeds of the experiment: {RULE}"


def check_tuning(tuning: Mapping[str, Any] | None, best_points: Mapping[str, comparison.GridPoint]) -> dict:
    """`tuning` checked against the runs and against the selection rule; ReportError names the entry at fault."""
    if tuning is None:
        return {}
    if not isinstance(tuning, Mapping):
        raise ReportError(f"tuning: expected a dict of entry name → tuning record, found {type(tuning).__name__}")
    for name, record in tuning.items():
        where = f"tuning[{name!r}]"
        if name not in best_points:
            raise ReportError(f"{where}: no runs of entry {name!r}; expected one of {sorted(best_points)}")
        chosen, used = record.get("chosen_learning_rate"), best_points[name].learning_rate
        if isinstance(chosen, (int, float)) and not math.isclose(float(chosen), used, rel_tol=1e-9):
            raise ReportError(
                f"{where}: chosen_learning_rate {chosen:g}, but the runs of {name!r} use {used:g}; "
                "rerun the experiment so that the final runs use the tuned learning rate"
            )
        problem = check_tuning_record(record)
        if problem:
            raise ReportError(f"{where}: {problem}")
    return dict(tuning)


def sensitivity_lines(
    grid: Mapping[str, list[comparison.GridPoint]],
    best_points: Mapping[str, comparison.GridPoint],
    tuning: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One line per entry with more than one learning rate: validation accuracy ± std per rate, the choice, why.

    Each line: label, learning_rates, mean, std (None where no seed completed), diverged_learning_rates
    (one per diverged run), chosen_learning_rate, rule, seeds (what the means are over), tuned.
    """
    lines = []
    for name, points in grid.items():
        if name in tuning:
            record = tuning[name]
            ordered = sorted(record["grid"], key=lambda point: float(point["learning_rate"]))
            values = [[v for v in point["val_accuracies"] if v is not None] for point in ordered]
            diverged = [
                float(point["learning_rate"]) for point in ordered for v in point["val_accuracies"] if v is None
            ]
            lines.append(
                {
                    "label": name,
                    "learning_rates": [float(point["learning_rate"]) for point in ordered],
                    "mean": [point["mean_val_accuracy"] for point in ordered],
                    "std": [point["std_val_accuracy"] if len(v) > 1 else None for point, v in zip(ordered, values)],
                    "diverged_learning_rates": diverged,
                    "chosen_learning_rate": float(record["chosen_learning_rate"]),
                    "rule": str(record["rule"]),
                    "seeds": f"seeds {', '.join(str(seed) for seed in record['tuning_seeds'])}",
                    "tuned": True,
                    # Recomputed from the record's grid, so a record written before stability existed has it too.
                    "stability": selection_stability(final_scores(record)),
                    "extended": list(record.get("extended", [])),
                    "stopped": {
                        float(p["learning_rate"]): p["stopped_at_epoch"] for p in ordered if p.get("stopped_at_epoch")
                    },
                    "full_tuning_choice": record.get("full_tuning_choice", record["chosen_learning_rate"]),
                }
            )
            lines[-1]["tuning_notes"] = tuning_notes(record, lines[-1])
        elif len(points) > 1:
            ordered = sorted(points, key=lambda point: point.learning_rate)
            stats = [comparison.mean_std([run.final_val_accuracy for run in point.completed]) for point in ordered]
            lines.append(
                {
                    "label": name,
                    "learning_rates": [point.learning_rate for point in ordered],
                    "mean": [mean for mean, _ in stats],
                    "std": [std for _, std in stats],
                    "diverged_learning_rates": [
                        point.learning_rate for point in ordered for _ in range(point.diverged)
                    ],
                    "chosen_learning_rate": best_points[name].learning_rate,
                    "rule": GRID_RULE,
                    "seeds": "all seeds of the experiment",
                    "tuned": False,
                }
            )
    return lines


def tuning_notes(record: Mapping[str, Any], line: Mapping[str, Any]) -> list[str]:
    """Plain sentences for a tuned entry: its selection stability (a warning below STABILITY_WARNING),
    whether and how its grid was extended, and what successive halving stopped and whether full tuning
    chooses the same. A record written before these keys existed reads as "no extension, no halving"."""
    seeds = ", ".join(str(seed) for seed in record["tuning_seeds"])
    stability = line["stability"]
    if stability is None:
        notes = ["Selection stability: not computable (fewer than 2 tuning seeds or grid points)."]
    elif stability < STABILITY_WARNING:
        notes = [
            f"Warning: selection stability {stability:.2f}, below {STABILITY_WARNING:g}: resampling tuning seeds "
            f"{seeds} with replacement picks this point only {stability:.0%} of the time; the choice is not settled."
        ]
    else:
        notes = [
            f"Selection stability {stability:.2f}: resampling tuning seeds {seeds} with replacement picks "
            f"this point {stability:.0%} of the time."
        ]
    cap, extended = int(record.get("extend_cap", 0) or 0), [float(rate) for rate in record.get("extended", [])]
    # From the grid, not the record's at_edge, so that an older record's edge choice is flagged too.
    rates, chosen = line["learning_rates"], line["chosen_learning_rate"]
    at_edge = any(math.isclose(chosen, rate, rel_tol=1e-9) for rate in (min(rates), max(rates)))
    if extended:
        added = ", ".join(f"{rate:g}" for rate in extended)
        notes.append(f"Grid extended beyond its edge by {added} ({len(extended)} of at most {cap}).")
    elif cap and not at_edge:
        notes.append(f"Grid not extended: the choice lies inside the written grid (up to {cap} allowed).")
    elif not cap:
        notes.append("Grid extension off (tuning.extend is 0).")
    if at_edge:
        notes.append("The choice still lies at an edge of the grid: the best rate may lie outside it.")
    halving = record.get("halving")
    if halving:
        stopped = line.get("stopped", {})
        notes.append(
            f"Successive halving (rungs at epochs {', '.join(str(e) for e in halving['rungs'])}, keep "
            f"{halving['keep']:g}) stopped {len(stopped)} of {len(line['learning_rates'])} points early"
            + (" (shown at their validation accuracy where they stopped)." if stopped else ".")
        )
        full = line.get("full_tuning_choice")
        if full is None:
            notes.append("Full tuning (no halving) was not run, so whether it would choose differently is unknown.")
        elif math.isclose(float(full), line["chosen_learning_rate"], rel_tol=1e-9):
            notes.append("Full tuning (no halving) chooses the same point.")
        else:
            notes.append(f"Full tuning (no halving) chooses {float(full):g} instead.")
    return notes
