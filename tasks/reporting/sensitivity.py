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
from tasks.core.selection import RULE, STABILITY_WARNING, check_tuning_record, final_scores, selection_stability
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
            lines[-1]["notes"] = tuning_notes(lines[-1], record)
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
                    "notes": [],
                }
            )
    return lines


def tuning_notes(line: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """Plain sentences on how far a tuned entry's choice can be trusted: its stability, its grid's edges,
    the points halving stopped, and whether full tuning would have chosen the same rate."""
    notes = []
    stability = line["stability"]
    if stability is None:
        notes.append("selection stability: not computable (fewer than 2 grid points or tuning seeds)")
    else:
        text = f"selection stability {stability:.2f}: the same rate wins in {stability:.0%} of resamplings"
        text += " of the tuning seeds"
        if stability < STABILITY_WARNING:
            text += f"; below {STABILITY_WARNING:.1f}, so another draw of tuning seeds could well choose another rate"
        notes.append(text)
    if line["extended"]:
        notes.append("grid extended beyond its edge with " + ", ".join(f"{float(rate):g}" for rate in line["extended"]))
    elif record.get("at_edge"):
        notes.append("the choice lies at an edge of its grid and was not extended (tuning.extend is 0 or used up)")
    else:
        notes.append("the choice lies inside its grid")
    if line["stopped"]:
        stops = ", ".join(f"{rate:g} after epoch {epoch}" for rate, epoch in sorted(line["stopped"].items()))
        notes.append(f"successive halving stopped {stops}")
        full = line["full_tuning_choice"]
        if full is None:
            notes.append("full tuning was not run, so whether it would choose differently is not known")
        elif float(full) == line["chosen_learning_rate"]:
            notes.append("full tuning chooses the same rate")
        else:
            notes.append(f"full tuning would choose {float(full):g} instead")
    return notes
