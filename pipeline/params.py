"""Luigi parameters of our own: run settings as one typed, validated value."""

from __future__ import annotations

from typing import Any

import luigi

from tasks.core.runs import RunSettings


class RunSettingsParameter(luigi.Parameter):
    """A run's full settings: JSON on the command line, a frozen `RunSettings` in the task.

    Tasks declare it insignificant and hidden: luigid and the console show the short identity
    (name, run hash, seed, learning rate) instead, and the hash is checked against these settings.
    """

    def parse(self, x: str) -> RunSettings:
        return RunSettings.parse(x, source="--settings")

    def normalize(self, x: Any) -> RunSettings:
        return x if isinstance(x, RunSettings) else RunSettings.parse(x, source="settings parameter")

    def serialize(self, x: RunSettings) -> str:
        return x.canonical_json()

    def _warn_on_wrong_param_type(self, param_name: str, param_value: Any) -> None:
        pass  # the value is a RunSettings by design, not a string
