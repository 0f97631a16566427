"""Seeds until the answer is settled (`seeds: {pilot, max}`), and the validation split drawn per seed.

One FullReport runs the pilot seeds, makes the seed plan from their variance alone (PlanSeeds), runs the
seeds each entry's pairs need, and reports how many each pair got and why; a rerun is a no-op, and a kill
during the extra seeds resumes to the same plan and the same numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import ExperimentReport, FullReport, PlanSeeds, TrainRun
from tasks.core import faults
from tasks.core.config import parse_config
from tasks.core.errors import ConfigError
from tasks.core.experiment import load_experiment, seed_plan_path
from tasks.core.layout import Layout
from tasks.core.runs import final_specs, run_settings
from tests.conftest import REPO_ROOT, build
from tests.killcheck import EPOCHS, assert_resumed_where_killed, resume_points

SMOKE = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
DAY = dt.date(2026, 3, 1)


def adaptive_config(tmp_path: Path, **changes) -> Path:
    # Synthetic data (500 test images, 1 epoch) is noisy: at a 5-point margin the pilot's pair needs more
    # seeds than the max, so the plan sends both entries to the cap, and there are extra seeds to run.
    raw = dict(SMOKE, experiment="adaptive", seeds={"pilot": 3, "max": 5}, equivalence_margin=0.05)
    raw["training"] = {"epochs": 1, "batch_size": 64}
    raw["optimizers"] = [{"name": "sgd", "learning_rate": 0.1}, {"name": "adam", "learning_rate": 0.001}]
    raw.update(changes)
    path = tmp_path / "adaptive.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def report_of(site: Path) -> dict:
    return json.loads((site / "reports" / "adaptive" / DAY.isoformat() / "report.json").read_text())


def test_the_schema_takes_a_pilot_and_a_max_and_names_what_is_wrong():
    config = parse_config(dict(SMOKE, seeds={"pilot": 3, "max": 20}))
    assert config.adaptive.pilot == 3 and config.first_seeds == [0, 1, 2]
    assert [spec.seed for spec in final_specs(config)][:3] == [0, 1, 2]  # before the plan: the pilot
    counts = {entry.name: 4 for entry in config.optimizers}
    assert {spec.seed for spec in final_specs(config, seed_counts=counts)} == {0, 1, 2, 3}
    for seeds, message in (
        ({"pilot": 3, "maxx": 20}, "seeds.maxx: unknown key (did you mean 'max'?)"),
        ({"pilot": 5, "max": 4}, "seeds: expected max >= pilot, found pilot 5 and max 4"),
        ({"pilot": 2, "max": 5}, "seeds.pilot: Input should be greater than or equal to 3"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_config(dict(SMOKE, seeds=seeds))
    with pytest.raises(ConfigError, match="equivalence_margin"):
        parse_config(dict(SMOKE, equivalence_margin=0))


def test_full_report_runs_the_pilot_plans_from_its_variance_then_runs_what_each_pair_needs(site, ran_tasks, tmp_path):
    config_path = adaptive_config(tmp_path)
    build([FullReport(config=str(config_path), date=DAY)], workers=1)
    config = load_experiment(str(config_path))[0]
    plan = json.loads(seed_plan_path(Layout(site), config).read_text())
    # The plan was made from the pilot alone: 3 seeds per pair.
    assert [need["pilot_seeds"] for need in plan["plan"]["pairs"]] == [3]
    assert plan["seeds"] == {name: value["seeds"] for name, value in plan["plan"]["optimizers"].items()}
    assert all(3 <= count <= 5 for count in plan["seeds"].values())
    report = report_of(site)
    (pair,) = report["statistics"]["pairs"]
    assert pair["seeds_run"] == pair["n_seeds"] == min(plan["seeds"].values())
    seeds_trained = {
        name: sorted(task.seed for task in ran_tasks.tasks if isinstance(task, TrainRun) and task.name == name)
        for name in plan["seeds"]
    }
    assert seeds_trained == {name: list(range(count)) for name, count in plan["seeds"].items()}
    assert pair["seed_plan"]["reason"] and pair["verdict"]["kind"] in {"beats", "equivalent", "undecided"}
    assert report["equivalence_margin"] == 0.05 and plan["seeds"] == {"sgd": 5, "adam": 5}

    ran_tasks.tasks.clear()
    build([FullReport(config=str(config_path), date=DAY)], workers=1)
    assert ran_tasks.tasks == [], "a rerun of a finished adaptive comparison is a no-op"


def test_a_kill_during_the_extra_seeds_resumes_to_the_same_plan_and_numbers(site, tmp_path):
    config_path = adaptive_config(tmp_path, seeds={"pilot": 3, "max": 6}, training={"epochs": EPOCHS, "batch_size": 64})
    config = load_experiment(str(config_path))[0]
    # A real SIGKILL in a separate process, mid-epoch 2 of the first extra seed's run, after its epoch-1
    # checkpoint: one chunk per epoch here, so the 6 pilot runs hit train.mid-epoch 12 times, and hit 14 is
    # that run's second epoch. The pilot's runs and the plan are on disk.
    killed_run = luigi_subprocess(
        tmp_path, ["FullReport", "--config", str(config_path), "--date", DAY.isoformat()], "train.mid-epoch:14"
    )
    assert killed_run.returncode == -signal.SIGKILL, killed_run.stdout[-3000:]
    plan_path = seed_plan_path(Layout(site), config)
    first_plan = json.loads(plan_path.read_text())  # the kill came after the pilot's 6 runs: the plan stands
    assert sum(first_plan["seeds"].values()) > 6
    points = resume_points(site)
    assert sorted(points.values(), key=str).count(1) == 1, points  # the extra run killed after its checkpoint
    build([FullReport(config=str(config_path), date=DAY)], workers=1)
    assert_resumed_where_killed(site, points)  # it ran epoch 2 only; nothing finished was retrained
    assert json.loads(plan_path.read_text()) == first_plan
    killed = report_of(site)["statistics"]

    # The same config on a fresh root, uninterrupted: the same plan, the same statistics.
    fresh = tmp_path / "fresh"
    with fresh_root(fresh):
        build([FullReport(config=str(config_path), date=DAY)], workers=1)
        assert json.loads(seed_plan_path(Layout(fresh), config).read_text()) == first_plan
        assert (
            json.loads((fresh / "reports" / "adaptive" / DAY.isoformat() / "report.json").read_text())["statistics"]
            == killed
        )


def test_a_seed_plan_that_does_not_fit_its_config_is_made_again(site, tmp_path):
    config_path = adaptive_config(tmp_path)
    build([PlanSeeds(config=str(config_path))], workers=1)
    config = load_experiment(str(config_path))[0]
    path = seed_plan_path(Layout(site), config)
    honest = json.loads(path.read_text())
    path.write_text(json.dumps(honest | {"seeds": {"sgd": 99, "adam": 3}}))
    assert not PlanSeeds(config=str(config_path)).complete()
    build([PlanSeeds(config=str(config_path))], workers=1)
    assert json.loads(path.read_text()) == honest
    assert list((path.parent / "quarantine").glob(f"{path.name}*"))


def test_a_per_seed_split_gives_each_seed_its_own_split_and_every_optimizer_the_same_one(site, tmp_path):
    raw = dict(SMOKE, experiment="splits", seeds=[0, 1], split={"validation_per_class": 100, "seed": "per_seed"})
    raw["training"] = {"epochs": 1, "batch_size": 64}
    raw["optimizers"] = [{"name": "sgd", "learning_rate": 0.1}, {"name": "adam", "learning_rate": 0.001}]
    config = parse_config(raw)
    specs = final_specs(config)
    splits = {(spec.name, spec.seed): TrainRun.of(spec).requires().output().path for spec in specs}
    assert splits["sgd", 0] == splits["adam", 0] != splits["sgd", 1] == splits["adam", 1]
    assert specs[0].run_hash == run_settings(config, config.optimizers[0], 0.1).run_hash
    path = tmp_path / "splits.yaml"
    path.write_text(yaml.safe_dump(raw))
    build([ExperimentReport(config=str(path), date=DAY)], workers=1)
    first, second = (Path(splits["sgd", seed]).read_bytes() for seed in (0, 1))
    assert first != second, "seed 0 and seed 1 draw different validation rows"
    html = (site / "reports" / "splits" / DAY.isoformat() / "report.html").read_text()
    assert "seeds (initialization, data order, validation split) and test images" in html


def luigi_subprocess(tmp_path: Path, args: list[str], crash_at: str) -> subprocess.CompletedProcess:
    """`luigi --module pipeline <args>` in a child process on this test's site, killed at `crash_at`."""
    import luigi.configuration

    section = dict(luigi.configuration.get_config().items("pipeline"))
    cfg = tmp_path / "site.cfg"
    cfg.write_text("[pipeline]\n" + "".join(f"{key} = {value}\n" for key, value in section.items()))
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), TF_CPP_MIN_LOG_LEVEL="2", **{faults.ENV_VAR: crash_at})
    return subprocess.run(
        [sys.executable, "-m", "luigi", "--module", "pipeline", "--workers", "1", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


class fresh_root:  # noqa: N801 - a context manager read as a phrase
    """Point `[pipeline] artifacts_root` at another folder for the duration."""

    def __init__(self, root: Path):
        self.root = root

    def __enter__(self):
        import luigi.configuration

        config = luigi.configuration.get_config()
        self.saved = config.get("pipeline", "artifacts_root")
        config.set("pipeline", "artifacts_root", str(self.root))

    def __exit__(self, *exc):
        import luigi.configuration

        luigi.configuration.get_config().set("pipeline", "artifacts_root", self.saved)
