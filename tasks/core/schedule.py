"""A learning-rate schedule's schema: kinds, their keys, validation and identity (the TF side is
tasks.training.schedules)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tasks.core.configfile import quote_value
from tasks.core.schema import MAX_STEPS, _Strict

SCHEDULE_KEYS = {"constant": (), "step": ("boundaries", "factor"), "cosine": ("final_fraction",)}


class ScheduleConfig(_Strict):
    """An entry's learning-rate schedule: the rate at optimizer step t (0 for the first update) is the entry's
    `learning_rate` times a factor, computed in the graph from the global step (docs/schedules-and-budgets.md).

    - `constant`: 1.
    - `step`: `factor` (default 0.1) to the power of the number of `boundaries` at or below t.
    - `cosine`: from 1 down to `final_fraction` (default 0) along half a cosine, over the steps after warm-up.
    - `warmup_steps` W (any kind): times (t + 1)/W while t < W, so the full rate is reached at step W − 1.
    """

    kind: Literal["constant", "step", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0, le=MAX_STEPS)
    boundaries: list[int] | None = None
    factor: float | None = None
    final_fraction: float | None = None

    @field_validator("boundaries", mode="before")
    @classmethod
    def _increasing(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, list) or not value:
            raise ValueError(f"expected a non-empty list of step numbers, found {quote_value(value)}")
        for step in value:
            if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= MAX_STEPS:
                raise ValueError(f"expected whole step numbers from 1 to {MAX_STEPS:,}, found {quote_value(step)}")
        if any(later <= earlier for earlier, later in zip(value, value[1:])):
            raise ValueError(f"expected strictly increasing step numbers, found {value}")
        return value

    @field_validator("factor", "final_fraction", mode="before")
    @classmethod
    def _fraction(cls, value: Any, info: Any) -> Any:
        if value is None:
            return value
        low_open = info.field_name == "factor"  # a factor of 0 would stop training; a final fraction of 0 is usual
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"expected a number in {'(0' if low_open else '[0'}, 1], found {quote_value(value)}")
        if not ((0 < value) if low_open else (0 <= value)) or value > 1:
            raise ValueError(f"expected a number in {'(0' if low_open else '[0'}, 1], found {value!r}")
        return float(value)

    @model_validator(mode="after")
    def _keys_of_kind(self) -> ScheduleConfig:
        for kind, keys in SCHEDULE_KEYS.items():
            for key in keys:
                if kind != self.kind and getattr(self, key) is not None:
                    raise ValueError(f"{key}: only a {kind} schedule takes it, found kind {self.kind!r}")
        if self.kind == "step":
            if self.boundaries is None:
                raise ValueError("boundaries: a step schedule needs the steps where the rate drops, e.g. [3000, 5000]")
            if self.factor is None:
                object.__setattr__(self, "factor", 0.1)
        if self.kind == "cosine" and self.final_fraction is None:
            object.__setattr__(self, "final_fraction", 0.0)
        return self

    @property
    def is_constant(self) -> bool:
        """True for the constant rate without warm-up: such a run's identity carries no schedule at all."""
        return self.kind == "constant" and self.warmup_steps == 0

    def identity(self) -> dict[str, Any]:
        """The schedule as run identity and run.json record it: its kind and the keys it uses."""
        return self.model_dump(mode="json", exclude_none=True)

    def check_budget(self, total_steps: int) -> None:
        """ValueError, naming the key, when a step the schedule names is not inside a run of `total_steps` steps."""
        if self.warmup_steps >= total_steps and self.warmup_steps:
            raise ValueError(
                f"schedule.warmup_steps: expected fewer than the run's {total_steps:,} steps, "
                f"found {self.warmup_steps:,}"
            )
        beyond = [step for step in self.boundaries or () if step >= total_steps]
        if beyond:
            raise ValueError(
                f"schedule.boundaries: expected steps below the run's {total_steps:,} steps, found {beyond}"
            )

    def describe(self) -> str:
        """One line for the report, e.g. 'cosine to 0 after 500 warm-up steps'."""
        if self.kind == "constant":
            text = "constant"
        elif self.kind == "step":
            text = f"×{self.factor:g} at steps {', '.join(f'{step:,}' for step in self.boundaries or ())}"
        else:
            text = f"cosine to {self.final_fraction:g}×"
        return text + (f", after {self.warmup_steps:,} warm-up steps" if self.warmup_steps else "")
