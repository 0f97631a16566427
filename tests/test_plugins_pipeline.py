"""The example plugin (examples/lion-optimizer), pip-installed for real, through the whole pipeline.

Lion and sgd on tiny synthetic data: both train, are evaluated and compared in the report; a rerun is a no-op;
editing the installed plugin's source reruns lion alone; a plugin whose factory raises fails its runs with
the project's error while sgd completes; one whose updates are NaN is reported as diverged. Paired seeds
hold for it: the same initial weights and data order as a built-in.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from pipeline import FullReport
from pipeline.plan import main as plan_main
from tasks.core.config import load_config
from tasks.core.layout import Layout
from tasks.core.runs import expand_runs
from tests.conftest import REPO_ROOT, build
from tests.plugin_install import PACKAGE, PluginPath, install_example, variant
from tests.runprobe import probe_train_run, settings_for, write_split
from tests.synthetic import make_images_labels

DATE = dt.date(2026, 1, 2)
FACTORY_CALL = "    return LionOptimizer(learning_rate, beta1=beta1"
UPDATE = "step = lr * (tf.sign(c) + weight_decay * var)"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example plugin pip-installed, and installed trees of three edits of it."""
    root = tmp_path_factory.mktemp("lion")
    pristine = install_example(root / "pristine")
    return {
        "pristine": pristine,
        "edited": variant(pristine, root / "edited", "__all__ = ", "# an edit: only a comment\n__all__ = "),
        "raises": variant(
            pristine, root / "raises", FACTORY_CALL, "    raise RuntimeError('lion broken on purpose')\n" + FACTORY_CALL
        ),
        "nan": variant(pristine, root / "nan", UPDATE, UPDATE + " * float('nan')", module="optimizer.py"),
        "import": variant(
            pristine, root / "import", "__all__ = ", "raise ImportError('lion import broken')\n__all__ = "
        ),
    }


@pytest.fixture
def plugin_path(monkeypatch):
    path = PluginPath(monkeypatch)
    yield path
    path.close()


def write_config(folder, sgd_rate: float = 0.1):
    # One experiment name per config file (a second file with the same name is refused), so the name says
    # the sgd rate too.
    raw = {
        "experiment": "lion-vs-sgd" if sgd_rate == 0.1 else f"lion-vs-sgd-{sgd_rate}",
        "model": {"name": "mlp", "params": {"hidden": [16]}},
        "training": {"epochs": 1, "batch_size": 60},
        "split": {"validation_per_class": 20, "seed": 0},
        "seeds": [0],
        "optimizers": [{"name": "lion", "learning_rate": 0.001}, {"name": "sgd", "learning_rate": sgd_rate}],
    }
    path = folder / f"lion-sgd-{sgd_rate}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


RUN_AND_REPORT = ("TrainRun", "EvaluateRun", "ExperimentReport", "FullReport")


def ran(ran_tasks) -> list[tuple[str, str | None]]:
    """The run and report tasks that ran (data preparation left out), then forget them."""
    found = sorted(
        (task.task_family, getattr(task, "name", None))
        for task in ran_tasks.tasks
        if task.task_family in RUN_AND_REPORT
    )
    ran_tasks.tasks.clear()
    return found


def plan_line(config, capsys) -> str:
    assert plan_main(["--config", str(config)]) == 0
    return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("runs:")).split(" (")[0]


def report_rows(root) -> dict[str, dict]:
    report = root / "reports" / "lion-vs-sgd" / DATE.isoformat() / "report.json"
    return {row["name"]: row for row in json.loads(report.read_text())["table"]}


def test_lion_trains_is_compared_reruns_alone_when_edited_and_fails_cleanly_when_broken(
    site, ran_tasks, installed, plugin_path, tmp_path, capsys, failures
):
    config = write_config(tmp_path)
    plugin_path.use(installed["pristine"])
    assert plan_line(config, capsys) == "runs: 2 total, 0 done, 2 to do"
    build([FullReport(config=str(config), date=DATE)])
    assert ran(ran_tasks) == [
        ("EvaluateRun", "lion"), ("EvaluateRun", "sgd"), ("ExperimentReport", None), ("FullReport", None),
        ("TrainRun", "lion"), ("TrainRun", "sgd"),
    ]  # fmt: skip
    rows = report_rows(site)
    assert rows["lion"]["optimizer"] == "lion" and 0.0 < rows["lion"]["test_accuracy_mean"] <= 1.0
    assert rows["sgd"]["optimizer"] == "sgd" and 0.0 < rows["sgd"]["test_accuracy_mean"] <= 1.0
    lion_spec = next(spec for spec in expand_runs(load_config(config)) if spec.name == "lion")
    lion_dir = Layout(site).run_dir(lion_spec)
    recorded = json.loads((lion_dir / "run.json").read_text())["settings"]["optimizer"]
    assert recorded["plugin"]["distribution"] == "lion-optimizer" and recorded["plugin"]["version"] == "0.1.0"
    evaluation = json.loads((lion_dir / "evaluation.json").read_text())
    assert evaluation["status"] == "completed" and evaluation["test"]["accuracy"] == rows["lion"]["test_accuracy_mean"]
    assert plan_line(config, capsys) == "runs: 2 total, 2 done, 0 to do"

    build([FullReport(config=str(config), date=DATE)])
    assert ran_tasks.tasks == [], "unchanged plugin code: nothing reruns"

    plugin_path.use(installed["edited"])
    assert plan_line(config, capsys) == "runs: 2 total, 1 done, 1 to do"
    build([FullReport(config=str(config), date=DATE)])
    assert ran(ran_tasks) == [("EvaluateRun", "lion"), ("ExperimentReport", None), ("FullReport", None),
                              ("TrainRun", "lion")]  # fmt: skip

    # A factory that raises: lion's run is recorded as failed with the project's error, naming the plugin and
    # its file; a new sgd run beside it completes, and the report is built with lion marked failed.
    plugin_path.use(installed["raises"])
    other = write_config(tmp_path, sgd_rate=0.05)
    build([FullReport(config=str(other), date=DATE)])
    assert failures == []  # no task failed: the failure is the run's recorded outcome
    source = installed["raises"] / PACKAGE / "__init__.py"
    specs = {spec.name: spec for spec in expand_runs(load_config(other))}
    lion_record = json.loads((Layout(site).run_dir(specs["lion"]) / "run.json").read_text())
    assert lion_record["status"] == "failed" and lion_record["epochs_completed"] == 0
    assert lion_record["final_checkpoint"] is None and lion_record["weights_sha256"] is None
    expected = f"optimizer plugin 'lion' (distribution lion-optimizer 0.1.0, {source}) raised RuntimeError"
    assert expected in lion_record["failure"] and "lion broken on purpose" in lion_record["failure"]
    lion_evaluation = json.loads((Layout(site).run_dir(specs["lion"]) / "evaluation.json").read_text())
    assert lion_evaluation["status"] == "failed" and lion_evaluation["test"] is None
    sgd_evaluation = json.loads((Layout(site).run_dir(specs["sgd"]) / "evaluation.json").read_text())
    assert sgd_evaluation["status"] == "completed"
    other_report = site / "reports" / "lion-vs-sgd-0.05" / DATE.isoformat()
    rows = {row["name"]: row for row in json.loads((other_report / "report.json").read_text())["table"]}
    assert rows["lion"]["status"] == "failed" and rows["lion"]["failed_runs"] == 1
    assert rows["lion"]["test_accuracy_mean"] is None and rows["sgd"]["test_accuracy_mean"] > 0
    markdown = (other_report / "report.md").read_text()
    assert "| failed: optimizer plugin 'lion' (distribution lion-optimizer 0.1.0," in markdown
    assert sorted(ran(ran_tasks)) == [
        ("EvaluateRun", "lion"), ("EvaluateRun", "sgd"), ("ExperimentReport", None), ("FullReport", None),
        ("TrainRun", "lion"), ("TrainRun", "sgd"),
    ]  # fmt: skip
    build([FullReport(config=str(other), date=DATE)])
    assert ran_tasks.tasks == [], "a failed run is a recorded outcome: the rerun is a no-op"

    # NaN updates: lion diverges, and the report says so next to sgd's accuracy.
    plugin_path.use(installed["nan"])
    build([FullReport(config=str(config), date=DATE)])
    assert ran(ran_tasks) == [("EvaluateRun", "lion"), ("ExperimentReport", None), ("FullReport", None),
                              ("TrainRun", "lion")]  # fmt: skip
    rows = report_rows(site)
    assert rows["lion"]["status"] == "diverged" and rows["lion"]["diverged_runs"] == 1
    assert rows["sgd"]["status"] != "diverged" and rows["sgd"]["test_accuracy_mean"] > 0


def test_a_plugin_that_fails_to_import_fails_its_runs_and_the_rest_of_the_config_completes(
    site, ran_tasks, installed, plugin_path, tmp_path, failures
):
    plugin_path.use(installed["import"])
    config = write_config(tmp_path)
    build([FullReport(config=str(config), date=DATE)])
    assert failures == []
    specs = {spec.name: spec for spec in expand_runs(load_config(config))}
    record = json.loads((Layout(site).run_dir(specs["lion"]) / "run.json").read_text())
    source = installed["import"] / PACKAGE / "__init__.py"
    assert (
        record["status"] == "failed" and record["settings"]["optimizer"]["plugin"]["distribution"] == "lion-optimizer"
    )
    for part in ("optimizer plugin 'lion' (distribution lion-optimizer 0.1.0", "failed to import",
                 "ImportError: lion import broken", f"{source}, line"):  # fmt: skip
        assert part in record["failure"], (part, record["failure"])
    rows = report_rows(site)
    assert rows["lion"]["status"] == "failed" and rows["sgd"]["status"] == "completed"
    assert rows["sgd"]["test_accuracy_mean"] > 0
    # Fixed (the pristine code: another source hash), lion trains as its own new run; sgd is not retrained.
    plugin_path.use(installed["pristine"])
    ran(ran_tasks)
    build([FullReport(config=str(config), date=DATE + dt.timedelta(days=1))])
    assert ran(ran_tasks) == [
        ("EvaluateRun", "lion"), ("ExperimentReport", None), ("FullReport", None), ("TrainRun", "lion"),
    ]  # fmt: skip


def test_plan_reads_a_plugin_without_loading_tensorflow(installed, tmp_path):
    """The example keeps TF out of its top-level module, so planning a config that names it stays TF-free."""
    cfg = tmp_path / "site.cfg"
    cfg.write_text(f"[pipeline]\nartifacts_root = {tmp_path / 'artifacts'}\n")
    code = (
        "import sys; from pipeline.plan import main; code = main(['--config', sys.argv[1]]); "
        "print('tensorflow loaded:', 'tensorflow' in sys.modules); sys.exit(code)"
    )
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), PYTHONPATH=f"{installed['pristine']}")
    done = subprocess.run(
        [sys.executable, "-c", code, str(write_config(tmp_path))],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "runs: 2 total, 0 done, 2 to do" in done.stdout
    assert "tensorflow loaded: False" in done.stdout


ROWS, BATCH, SEED = 60, 10, 4


def test_paired_seeds_hold_for_a_plugin(installed, plugin_path, tmp_path, monkeypatch):
    """The plugin starts from the built-ins' weights and sees their data order, seed by seed."""
    plugin_path.use(installed["pristine"])
    images, labels = make_images_labels(ROWS, seed=3)
    validation = np.array([np.flatnonzero(labels == c)[0] for c in range(10)])
    split = write_split(tmp_path / "split", images, labels, validation)
    for model in ({"name": "logreg"}, {"name": "mlp", "params": {"hidden": [8, 4]}}):
        probes = {}
        for optimizer in ("sgd", "adam", "lion"):
            settings = settings_for(optimizer, 0.01, model=model, epochs=2, batch_size=BATCH)
            run_dir = tmp_path / f"{model['name']}-{optimizer}"
            probes[optimizer] = probe_train_run(monkeypatch, settings, SEED, split, run_dir, ("train.mid-epoch", 2))
        for optimizer in ("sgd", "adam"):
            a, b = probes["lion"], probes[optimizer]
            assert len(a.orders) == len(b.orders) == 2
            for order_a, order_b in zip(a.orders, b.orders):
                np.testing.assert_array_equal(order_a, order_b)
            assert sorted(a.initial_weights) == sorted(b.initial_weights)
            for name, value in a.initial_weights.items():
                assert value.tobytes() == b.initial_weights[name].tobytes(), (model, optimizer, name)
