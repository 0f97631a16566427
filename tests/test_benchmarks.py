"""The benchmark scripts run end to end on tiny synthetic inputs and print their tables (timings not judged)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tasks.data.arrays import write_arrays, write_indices
from tests import synthetic
from tests.conftest import REAL_DATA_DIR, REPO_ROOT, SYNTHETIC_TEST_ROWS, SYNTHETIC_TRAIN_ROWS

pytestmark = pytest.mark.slow


def _run(script: str, *args: str, timeout: int = 600) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_train_throughput_compares_three_loops_side_by_side(tmp_path):
    pytest.importorskip("tf_keras")
    arrays = tmp_path / "data" / "arrays"
    arrays.mkdir(parents=True)
    images, labels = synthetic.make_images_labels(1200, seed=1)
    write_arrays(arrays / "train.arrow", images, labels)
    write_indices(arrays / "split.arrow", np.arange(1000, 1200))
    out = _run(
        "train_throughput.py",
        "--artifacts",
        str(tmp_path),
        "--split",
        "split.arrow",
        "--repeat",
        "1",
        "--optimizers",
        "sgd",
        "--cnn-rows",
        "256",
    )
    # model, batch, optimizer, four throughputs, three ratios
    number, ratio = r"[\d,]+", r"\d+\.\d\d"
    row = rf"{number}\s+{number}\s+{number}\s+{number}\s+{ratio}\s+{ratio}\s+{ratio}"
    assert re.search(rf"mlp\s+64 sgd\s+{row}", out), out
    assert re.search(rf"cnn_2c2d\s+128 sgd\s+{row}", out), out
    assert re.search(r"msvag [\d,]+ ex/s; step time \d+\.\d\dx SGD's", out), out
    for goal in ("mlp-sgd-vs-matmuls", "mlp-msvag-step-vs-sgd", "mlp-svag-step-vs-sgd", "cnn-sgd-vs-bare-graph"):
        assert re.search(rf"^goal {goal}: \d+\.\d\dx? \(goal [<>]= [\d.]+x?\) (MET|MISSED)$", out, re.MULTILINE), out
    # The last line sums them up: MET exactly when every goal above is.
    last = re.fullmatch(
        r"goal train-throughput: (\d+) of (\d+) goals met \(goal all\) (MET|MISSED)", out.strip().splitlines()[-1]
    )
    assert last, out
    assert (last.group(3) == "MET") == (last.group(1) == last.group(2)), out


def test_rerun_noop_times_a_finished_dag_without_tensorflow():
    out = _run("rerun_noop.py", "--repeat", "1")
    assert re.search(r"FullReport \(no-op\)\s+\d+\.\d\d s", out), out
    assert re.search(r"TensorFlow imported\s+no$", out, re.MULTILINE), out
    assert re.search(r"^goal rerun-noop: \d+\.\d\d s \(goal <= 2\.0 s, no TensorFlow\) (MET|MISSED)$", out, re.M), out


def test_full_report_measures_a_cold_run(tmp_path):
    pytest.importorskip("psutil")
    raw = tmp_path / "source"
    checksums = synthetic.write_checksums_file(
        tmp_path / "checksums.json",
        synthetic.write_raw_dir(raw, train_count=SYNTHETIC_TRAIN_ROWS, test_count=SYNTHETIC_TEST_ROWS),
    )
    smoke = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    smoke["training"]["epochs"] = 1
    smoke["optimizers"] = smoke["optimizers"][:2]
    config = tmp_path / "smoke.yaml"
    config.write_text(yaml.safe_dump(smoke))
    out = _run(
        "full_report.py",
        "--config",
        str(config),
        "--sources",
        str(raw),
        "--checksums-file",
        str(checksums),
    )
    assert re.search(r"wall time\s+\d+\.\d s", out), out
    peak = re.search(r"peak tree RSS \(sum, psutil poll\)\s+(\d+\.\d\d) GiB", out)
    single = re.search(r"max single-process RSS \(rusage\)\s+(\d+\.\d\d) GiB", out)
    assert peak and single, out
    assert float(peak.group(1)) >= float(single.group(1)) > 0.1  # TF alone is a few hundred MB
    assert re.search(r"TrainRuns\s+2\b", out), out
    efficiency = re.search(
        r"^efficiency: wall (\d+\.\d) s, ideal ([\d.]+(?:e-?\d+)?) s, ratio (\d+\.\d\d)", out, re.MULTILINE
    )
    assert efficiency, out
    wall, ideal, ratio = (float(value) for value in efficiency.groups())
    assert 0 < ideal < wall and abs(ratio - wall / ideal) < 0.05 * ratio, out
    assert re.search(r"^goal full-report-efficiency: \d+\.\d\d \(goal <= 1\.3\) (MET|MISSED)$", out, re.MULTILINE), out
    for goal in ("full-report-wall", "full-report-rss"):
        assert re.search(rf"^goal {goal}: \S+ \w+ \(goal <= [\d.]+ \w+\) (MET|MISSED)$", out, re.MULTILINE), out


def test_data_load_times_the_load_training_does_and_states_its_goal():
    out = _run("data_load.py", "--raw-dir", str(REAL_DATA_DIR), "--repeat", "1")
    assert re.search(r"open \+ map \+ row positions \(load_split\)\s+\d+\.\d\d ms", out), out
    assert re.search(r"^goal data-load: \d+\.\dx \(goal >= 50x\) (MET|MISSED)$", out, re.MULTILINE), out
