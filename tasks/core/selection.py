"""Which grid point wins: the one selection rule, used by learning-rate tuning and by the report.

A grid point is one learning rate of an entry, with the final validation accuracy of each of its seeds
(None for a seed that diverged). The winner has the fewest diverged seeds, then the highest mean final
validation accuracy over its completed seeds, then the smaller learning rate. The test set never plays
a part: choosing on it would leak the test set into model selection.

A tuning record (`tuning/<experiment>/<entry>-<grid hash>.json`) is data read back from disk, so
`check_tuning_record` re-applies the rule to the record's own grid before its choice is believed: the
halving rungs (`halve`), the final choice among the points that trained all epochs, and the edge extension
(a choice left at an edge while the cap allowed another point is not believed).

Selection stability (`selection_stability`): the share of resamplings of the tuning seeds (with replacement;
every one of the n^n, equally weighted, for up to 6 seeds, else 4000 drawn with a fixed generator) on which
the rule still picks the same point. Below STABILITY_WARNING the report warns.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.core.config import grid_point

RULE = (
    "the grid point with the fewest diverged runs, then the highest mean final validation accuracy, then the "
    "smaller learning rate; the test set is not looked at"
)
TUNING_RULE = f"on the tuning seeds: {RULE}"
TUNING_KEYS = ("tuning_seeds", "grid", "chosen_learning_rate", "rule")
STABILITY_WARNING = 0.8
EXACT_RESAMPLES_UP_TO = 6  # seeds: 6^6 = 46,656 resamplings, enumerated
DRAWN_RESAMPLES = 4000
GRID_KEYS = ("learning_rate", "val_accuracies", "mean_val_accuracy", "std_val_accuracy")


@dataclass(frozen=True)
class GridScore:
    """One grid point as the rule sees it: its learning rate and each seed's final validation accuracy."""

    learning_rate: float
    val_accuracies: tuple[float | None, ...]

    @property
    def completed(self) -> list[float]:
        return [value for value in self.val_accuracies if value is not None]

    @property
    def diverged(self) -> int:
        return len(self.val_accuracies) - len(self.completed)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.completed) if self.completed else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.completed) if len(self.completed) > 1 else None


def rank_key(point: GridScore) -> tuple[int, float, float]:
    """Smaller is better: (diverged seeds, −mean final validation accuracy, learning rate)."""
    mean = point.mean
    return point.diverged, -(mean if mean is not None else -math.inf), point.learning_rate


def select(points: Sequence[GridScore]) -> int:
    """The index of the winning point of a non-empty grid (see the module docstring)."""
    if not points:
        raise ValueError("no grid points to choose from")
    return min(range(len(points)), key=lambda index: rank_key(points[index]))


def halve(points: Sequence[GridScore], keep: float) -> list[int]:
    """Successive halving's cut at one rung: the indices (in grid order) of the best ceil(keep × n) points, at
    least one, ranked by the one rule on their validation accuracy at that rung."""
    count = max(1, math.ceil(keep * len(points) - 1e-9))
    ranked = sorted(range(len(points)), key=lambda index: rank_key(points[index]))
    return sorted(ranked[:count])


def beyond_edge(rates: Sequence[float], upper: bool) -> float:
    """The next learning rate beyond the top (`upper`) or bottom edge of a sorted grid, at the edge's own log
    spacing (the ratio of its two outermost points), rounded like every computed grid point."""
    if len(rates) < 2:
        raise ValueError("a grid needs two points to have a spacing")
    if upper:
        return grid_point(rates[-1] * (rates[-1] / rates[-2]))
    return grid_point(rates[0] / (rates[1] / rates[0]))


def reachable_rates(rates: Sequence[float], cap: int) -> list[float]:
    """Every rate edge extension of a grid can add with at most `cap` points (in either direction)."""
    found = []
    for upper in (False, True):
        grid = sorted(rates)
        for _ in range(cap):
            point = beyond_edge(grid, upper)
            grid = sorted([*grid, point])
            found.append(point)
    return found


def at_edge(rates: Sequence[float], chosen: float) -> bool | None:
    """True at the top edge of the grid, False at the bottom one, None inside."""
    ordered = sorted(rates)
    if chosen == ordered[-1]:
        return True
    if chosen == ordered[0]:
        return False
    return None


def selection_stability(points: Sequence[GridScore]) -> float | None:
    """How often the rule picks the same point when the seeds are resampled with replacement (module
    docstring); None for fewer than 2 points or 2 seeds."""
    if len(points) < 2 or len({len(point.val_accuracies) for point in points}) != 1:
        return None
    seeds = len(points[0].val_accuracies)
    if seeds < 2:
        return None
    chosen = select(points)
    if seeds <= EXACT_RESAMPLES_UP_TO:
        samples = itertools.product(range(seeds), repeat=seeds)
    else:
        samples = np.random.default_rng(0).integers(0, seeds, size=(DRAWN_RESAMPLES, seeds)).tolist()
    same = total = 0
    for sample in samples:
        resampled = [GridScore(p.learning_rate, tuple(p.val_accuracies[i] for i in sample)) for p in points]
        same += select(resampled) == chosen
        total += 1
    return same / total


def final_scores(record: Mapping[str, Any]) -> list[GridScore]:
    """The grid points of a (checked) tuning record that trained all epochs, as the rule sees them."""
    return [
        GridScore(float(point["learning_rate"]), tuple(point["val_accuracies"]))
        for point in record["grid"]
        if point.get("stopped_at_epoch") is None
    ]


def check_tuning_record(
    record: Any, grid: Sequence[float] | None = None, extend: int = 0, halving: Mapping[str, Any] | None = None
) -> str | None:
    """Why a tuning record cannot be believed, or None when it can.

    It must be well formed and cover exactly the grid `grid` (learning rates; None: any) plus the points it
    says it added (`extended`, at most `extend`, each one beyond an edge). With `halving` ({rungs, keep}) its
    rungs must cut as `halve` does. Its choice must be the one the rule makes on the record's own validation
    accuracies of the points that trained all epochs, and it may sit at an edge only once the cap is reached.
    """
    if not isinstance(record, Mapping):
        return f"expected a JSON object, found {type(record).__name__}"
    missing = [key for key in TUNING_KEYS if key not in record]
    if missing:
        return f"missing keys {missing}; expected {list(TUNING_KEYS)}"
    points = record["grid"]
    if not isinstance(points, list) or not points:
        return "its grid is empty or not a list"
    scores = []
    for index, point in enumerate(points):
        absent = [key for key in GRID_KEYS if not isinstance(point, Mapping) or key not in point]
        if absent:
            return f"grid[{index}]: missing {absent}; expected keys {list(GRID_KEYS)}"
        accuracies = point["val_accuracies"]
        if not isinstance(accuracies, list) or not all(_accuracy_or_none(value) for value in accuracies):
            return f"grid[{index}].val_accuracies: expected a list of accuracies in [0, 1] or null, found {accuracies}"
        if not _number(point["learning_rate"]):
            return f"grid[{index}].learning_rate: expected a number, found {point['learning_rate']!r}"
        scores.append(GridScore(float(point["learning_rate"]), tuple(accuracies)))
    rates = sorted(score.learning_rate for score in scores)
    added = record.get("extended", [])
    if not isinstance(added, list) or not all(_number(rate) for rate in added):
        return f"extended: expected a list of learning rates, found {added!r}"
    if grid is not None:
        if len(added) > extend:
            return f"extended the grid by {len(added)} points, but the config allows {extend}"
        walk = sorted(float(rate) for rate in grid)
        for rate in added:
            if rate not in (beyond_edge(walk, False), beyond_edge(walk, True)):
                return f"extended: {rate!r} is not the next point beyond an edge of {walk}"
            walk = sorted([*walk, float(rate)])
        if rates != walk:
            return f"covers the learning rates {rates}, not the grid {walk}"
    problem = _halving_problem(record, halving) if grid is not None else None
    if problem:
        return problem
    finals = [score for score, point in zip(scores, points) if point.get("stopped_at_epoch") is None]
    if not finals:
        return "no grid point trained all epochs"
    chosen = record["chosen_learning_rate"]
    winner = finals[select(finals)].learning_rate
    if not _number(chosen) or float(chosen) != winner:
        return f"chose {chosen!r}, but the rule ({RULE}) picks {winner:g} from the record's own validation accuracies"
    if grid is not None and len(added) < extend and at_edge(rates, winner) is not None:
        return f"chose {winner:g} at an edge of its grid with {extend - len(added)} extension(s) left; extend it"
    return None


def _halving_problem(record: Mapping[str, Any], halving: Mapping[str, Any] | None) -> str | None:
    """Why the record's rungs are not the cuts `halve` makes (or it halved when it should not have)."""
    rungs = record.get("rungs", [])
    if halving is None:
        stopped = [p["learning_rate"] for p in record["grid"] if p.get("stopped_at_epoch") is not None]
        return f"points {stopped} stopped early, but the config does not halve" if stopped or rungs else None
    if not isinstance(rungs, list) or [rung.get("epoch") for rung in rungs] != list(halving["rungs"]):
        return f"rungs: expected cuts at epochs {list(halving['rungs'])}, found {rungs!r}"
    # Each rung races exactly the points the previous one kept (the first: the whole grid); a point stops at
    # the rung that cut it, and the points that trained all epochs are the last rung's kept ones.
    alive = sorted(float(point["learning_rate"]) for point in record["grid"])
    stops = {float(p["learning_rate"]): p.get("stopped_at_epoch") for p in record["grid"]}
    for rung in rungs:
        accuracies = rung.get("val_accuracies", {})
        try:
            scores = [GridScore(float(rate), tuple(values)) for rate, values in sorted(accuracies.items(), key=_rate)]
        except (TypeError, ValueError, AttributeError):
            return f"rungs: epoch {rung.get('epoch')}: expected learning rate → accuracies, found {accuracies!r}"
        if [score.learning_rate for score in scores] != alive:
            raced = [score.learning_rate for score in scores]
            return f"rungs: epoch {rung['epoch']} raced {raced}, but the points still in the race were {alive}"
        kept = [scores[index].learning_rate for index in halve(scores, halving["keep"])] if scores else []
        if kept != [float(rate) for rate in rung.get("kept", [])]:
            return f"rungs: epoch {rung['epoch']} kept {rung.get('kept')}, but halving keeps {kept}"
        cut = [rate for rate in alive if rate not in kept and stops.get(rate) != rung["epoch"]]
        if cut:
            return f"grid: points {cut} were cut at epoch {rung['epoch']}, but their stopped_at_epoch says otherwise"
        alive = kept
    full = sorted(rate for rate, stop in stops.items() if stop is None)
    if full != alive:
        return f"grid: the points that trained all epochs are {full}, but the last rung kept {alive}"
    return None


def _rate(item: tuple[str, Any]) -> float:
    return float(item[0])


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _accuracy_or_none(value: Any) -> bool:
    return value is None or (_number(value) and 0 <= value <= 1)
