"""Where every artifact lives under the artifacts root: pure functions of their parameters.

The same parameters always give the same path, and different parameters never collide. Every path handed
out is checked to lie in real folders under the root (tasks.core.storage.refuse_linked_folders): a folder
symlinked into the root is refused where a task asks for its output, before anything is read or written.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tasks.core.config import check_safe_name
from tasks.core.errors import ConfigError
from tasks.core.runs import RunSpec
from tasks.core.storage import protect_root, refuse_linked_folders


def record_beside(path: str | Path) -> Path:
    """The JSON record that describes a data file, written beside it before it lands: `<name>.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def raw_record_path(raw_dir: str | Path, name: str) -> Path:
    """The fetch record of a raw file, for callers that hold only the raw folder (as Layout.raw_record)."""
    return record_beside(Path(raw_dir) / name)


class Layout:
    """Paths under one artifacts root (see artifacts/README.md for the picture)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        protect_root(self.root)

    def _folder(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        refuse_linked_folders(path)
        return path

    def _file(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        refuse_linked_folders(path, folder=False)
        return path

    # data stage
    @property
    def raw_dir(self) -> Path:
        return self._folder("data", "raw")

    def raw_file(self, name: str) -> Path:
        return self._file("data", "raw", name)

    def raw_record(self, name: str) -> Path:
        return raw_record_path(self.raw_dir, name)

    @property
    def arrays_dir(self) -> Path:
        return self._folder("data", "arrays")

    def arrays_file(self, split: str) -> Path:
        """The decoded images and labels of one published split ("train" or "test")."""
        return self._file("data", "arrays", f"{split}.arrow")

    @property
    def train_arrow(self) -> Path:
        return self.arrays_file("train")

    @property
    def test_arrow(self) -> Path:
        return self.arrays_file("test")

    def split_arrow(self, validation_per_class: int, seed: int) -> Path:
        # The split's parameters are in its name, so two experiments with different splits never share one.
        return self._file("data", "arrays", f"split-v{validation_per_class}-s{seed}.arrow")

    def split_record(self, validation_per_class: int, seed: int) -> Path:
        """What PrepareData wrote into the split (its sha256 and class counts), written before the split."""
        return record_beside(self.split_arrow(validation_per_class, seed))

    def relative(self, path: Path) -> str:
        """`path` as the manifest stores it: relative to the root, so that a copied root stays valid."""
        return Path(path).relative_to(self.root).as_posix()

    @property
    def manifest(self) -> Path:
        return self._file("data", "manifest.json")

    # training and evaluation
    def run_dir(self, spec: RunSpec, night: str = "") -> Path:
        check_safe_name(spec.name, "run name")
        nightly = ("nightly", iso_date(night)) if night else ()
        return self._folder("runs", *nightly, *Path(spec.relative_dir).parts)

    def tuning_record(self, experiment: str, entry: str, grid_hash: str) -> Path:
        """The learning rate chosen for one tuned entry; the grid's hash is in the name."""
        experiment, entry = check_safe_name(experiment, "experiment name"), check_safe_name(entry, "entry name")
        return self._file("tuning", experiment, f"{entry}-{check_safe_name(grid_hash, 'grid hash')}.json")

    def seed_plan(self, experiment: str, config_hash: str) -> Path:
        """An adaptive comparison's seed plan, per config version (its hash is in the name)."""
        experiment, config_hash = check_safe_name(experiment, "experiment name"), check_safe_name(config_hash, "hash")
        return self._file("seedplans", experiment, f"{config_hash}.json")

    def verified_record(self, date: str) -> Path:
        return self._file("data", "verified", f"{iso_date(date)}.json")

    # reports
    def report_dir(self, experiment: str, date: str) -> Path:
        return self._folder("reports", check_safe_name(experiment, "experiment name"), iso_date(date))

    def experiment_owner(self, experiment: str) -> Path:
        """Which config file owns an experiment name: its reports and history are per name, so one config
        only (pipeline.reporting.owned_experiment refuses a second one)."""
        return self._file("reports", check_safe_name(experiment, "experiment name"), "owner.json")

    def nightly_report_dir(self, experiment: str, date: str) -> Path:
        return self._folder("reports", check_safe_name(experiment, "experiment name"), "nightly", iso_date(date))

    def history_dir(self, experiment: str) -> Path:
        return self._folder("history", check_safe_name(experiment, "experiment name"))

    @property
    def scheduler_dir(self) -> Path:
        return self._folder("scheduler")


def iso_date(value: str, what: str = "date") -> str:
    """A date used in a path: only YYYY-MM-DD, so that it can never name another folder; else a ConfigError."""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected a date YYYY-MM-DD, found {value!r}") from None
