"""Which grid point wins: the one selection rule, used by learning-rate tuning and by the report.

A grid point is one learning rate of an entry, with the final validation accuracy of each of its seeds
(None for a seed that diverged). The winner has the fewest diverged seeds, then the highest mean final
validation accuracy over its completed seeds, then the smaller learning rate. The test set never plays
a part: choosing on it would leak the test set into model selection.

A tuning record (`tuning/<experiment>/<entry>-<grid hash>.json`) is data read back from disk, so
`check_tuning_record` re-applies the rule to the record's own grid before its choice is believed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RULE = (
    "the grid point with the fewest diverged runs, then the highest mean final validation accuracy, then the "
    "smaller learning rate; the test set is not looked at"
)
TUNING_RULE = f"on the tuning seeds: {RULE}"
TUNING_KEYS = ("tuning_seeds", "grid", "chosen_learning_rate", "rule")
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


def check_tuning_record(record: Any, grid: Sequence[float] | None = None) -> str | None:
    """Why a tuning record cannot be believed, or None when it can.

    It must be well formed, cover exactly the grid `grid` (learning rates; None: any), and its choice must
    be the one the rule makes on the record's own validation accuracies.
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
    if grid is not None and rates != sorted(float(rate) for rate in grid):
        return f"covers the learning rates {rates}, not the grid {sorted(grid)}"
    chosen = record["chosen_learning_rate"]
    winner = scores[select(scores)].learning_rate
    if not _number(chosen) or float(chosen) != winner:
        return f"chose {chosen!r}, but the rule ({RULE}) picks {winner:g} from the record's own validation accuracies"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _accuracy_or_none(value: Any) -> bool:
    return value is None or (_number(value) and 0 <= value <= 1)
