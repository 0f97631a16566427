"""SIGKILL of the real nightly command in each of its resumable phases, then a rerun: the same night.

`NightlyReport` on synthetic data (two optimizers, two epochs). One uninterrupted night is the reference.
Each cycle starts in a fresh artifacts root and dies by SIGKILL at one failpoint: mid-epoch 2 of a nightly
training run (after its epoch-1 checkpoint), while the night's history partition sits in its temp file,
and after the report's figures are written. The rerun must give the reference's history rows and weights,
leave no temp file, and resume the killed training run from its checkpoint, running only the remaining
steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tasks.core import faults
from tests.clirun import SyntheticSource
from tests.conftest import REPO_ROOT
from tests.killcheck import temp_files

NIGHT, EPOCHS, EXPERIMENT = "2026-02-03", 2, "kill-nightly"
HISTORY_TIMING = ("seconds_per_epoch", "overhead_vs_sgd")


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("kill-nightly")
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    raw["experiment"] = EXPERIMENT
    raw["training"]["epochs"] = EPOCHS
    raw["optimizers"] = [entry for entry in raw["optimizers"] if entry["name"] in ("sgd", "msvag")]
    config = base / "nightly.yaml"
    config.write_text(yaml.safe_dump(raw))
    source = SyntheticSource.write(base)
    args = ["NightlyReport", "--config", str(config), "--date", NIGHT]
    reference = base / "reference"
    code, output = source.run(reference, args)
    assert code == 0, output[-4000:]
    return {"base": base, "source": source, "args": args, "reference": reference}


def history_rows(root: Path) -> list[dict]:
    (partition,) = root.glob(f"history/{EXPERIMENT}/date={NIGHT}/summary.parquet")
    rows = pq.read_table(partition).to_pylist()
    return [{key: value for key, value in row.items() if key not in HISTORY_TIMING} for row in rows]


def weights(root: Path) -> dict[str, str]:
    return {
        str(path.parent.relative_to(root)): json.loads(path.read_text())["weights_sha256"]
        for path in root.glob(f"runs/nightly/{NIGHT}/*/seed-*/run.json")
    }


def checkpointed(root: Path) -> dict[str, int | None]:
    """Per nightly run folder after the kill: the epoch its latest.json names, None when it had finished."""
    points = {}
    for run_dir in root.glob(f"runs/nightly/{NIGHT}/*/seed-*"):
        latest = run_dir / "checkpoints" / "latest.json"
        epoch = json.loads(latest.read_text())["epoch"] if latest.is_file() else 0
        points[str(run_dir.relative_to(root))] = None if (run_dir / "run.json").is_file() else epoch
    return points


@pytest.mark.parametrize(
    "point", ["train.mid-epoch:2", "history.partition-written", "report.figures-written"], ids=lambda p: p
)
def test_a_nightly_killed_in_each_phase_reruns_to_the_same_night(night, point):
    root = night["base"] / f"kill-{point.replace(':', '-')}"
    code, output = night["source"].run(root, night["args"], {faults.ENV_VAR: point})
    assert code != 0 and "report.json" not in {path.name for path in root.rglob("report.json")}, output[-3000:]
    at_kill = checkpointed(root)
    if point.startswith("train."):
        assert 1 in at_kill.values(), at_kill  # killed after epoch 1's checkpoint, inside epoch 2
    if point.startswith("history."):
        assert temp_files(root / "history"), "the kill left the partition's temp file behind"
        assert not list(root.glob(f"history/{EXPERIMENT}/date={NIGHT}/summary.parquet"))

    code, output = night["source"].run(root, night["args"])
    assert code == 0, output[-4000:]
    assert not temp_files(root), temp_files(root)
    assert history_rows(root) == history_rows(night["reference"])
    assert weights(root) == weights(night["reference"])
    assert (root / "reports" / EXPERIMENT / "nightly" / NIGHT / "report.json").is_file()
    for relative, start in at_kill.items():
        record = json.loads((root / relative / "run.json").read_text())
        if start is None:
            assert record["attempts"] == 1  # finished before the kill: not retrained
            continue
        last = record["attempt_history"][-1]
        assert last["from_epoch"] == start and last["steps_run"] == (EPOCHS - start) * record["steps_per_epoch"]
