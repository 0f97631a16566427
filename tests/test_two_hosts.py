"""Two hosts, one luigid, one shared artifacts root: the README's multi-machine set-up, for real.

Host A and host B are network namespaces joined by a veth pair (tests/netns.py), each with its own host
name. A real luigid runs on host A, bound to A's address, started by scripts/luigid.sh; one luigi worker
per host runs FullReport against it, both writing into one artifacts root (the shared filesystem). The
tests show the runs split across the hosts with none trained twice; a host that dies mid-training has its
run finished by the other host, resumed from its checkpoint to the uninterrupted weights; and a host that
hangs while training keeps the run's lock, so the other host waits instead of training the run again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.core.layout import Layout
from tasks.core.locks import lock_path
from tests import synthetic
from tests.childrun import train_in_child
from tests.cluster import HANG_LIMIT, PORT, Cluster, Workers, has_open, wait_for
from tests.conftest import REPO_ROOT, SYNTHETIC_TEST_ROWS, SYNTHETIC_TRAIN_ROWS
from tests.netns import two_hosts
from tests.test_scheduler import LUIGID

SCRIPT = REPO_ROOT / "scripts" / "luigid.sh"
# luigi's worker log line for a task it starts, e.g. "running   TrainRun(name=sgd, run_hash=955b12065b, seed=1, ...".
STARTED_TRAIN_RUN = re.compile(r"running +TrainRun\(name=[^,]+, run_hash=(\w+), seed=(\d+),")
# Seconds before luigid counts a silent worker as gone and hands its task on (defaults: 60 and 30).
DISCONNECT_DELAY, RETRY_DELAY = 4, 0.5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Hosts A and B, luigid on A (one `training` slot per host), synthetic source data; torn down after."""
    assert LUIGID, "luigid is not installed beside this Python"
    base = tmp_path_factory.mktemp("two-hosts")
    # One artifacts root for every test: the shared filesystem. (Workers with different roots must not
    # share a luigid: task ids do not name the root, and luigid ignores "pending" for a task that turned
    # "done" in the last 10 s, so a second root's data tasks would count as done.)
    root = base / "shared-artifacts"
    checksums = synthetic.write_raw_dir(
        base / "source", train_count=SYNTHETIC_TRAIN_ROWS, test_count=SYNTHETIC_TEST_ROWS
    )
    with two_hosts("m") as hosts:
        host_a = hosts[0]
        env = dict(
            os.environ,
            LUIGID=LUIGID,
            LUIGID_ADDRESS=host_a.address,
            LUIGID_STATE_DIR=str(base / "luigid-state"),
            ARTIFACTS_ROOT=str(root),
            TRAINING_SLOTS="2",
            LUIGID_DISCONNECT_DELAY=str(DISCONNECT_DELAY),
            LUIGID_RETRY_DELAY=str(RETRY_DELAY),
        )
        started = subprocess.run(
            host_a.command([str(SCRIPT), "start", str(PORT)]), env=env, capture_output=True, text=True, timeout=60
        )
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            yield Cluster(
                hosts=hosts,
                source=base / "source",
                checksums=synthetic.write_checksums_file(base / "checksums.json", checksums),
                root=root,
                history=root / "scheduler" / "task-history.sqlite",
            )
        finally:
            stopped = subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=60)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture
def workers(tmp_path, cluster):
    pool = Workers(tmp_path, cluster)
    yield pool
    pool.kill_all()


def tiny_config(path: Path, experiment: str, optimizers: int, epochs: int, seed: int) -> Path:
    """configs/smoke.yaml cut down: the first `optimizers` entries, one seed, `epochs` epochs.

    Each test trains its own seed, so no test finds another's runs done in the shared root.
    """
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    raw["experiment"] = experiment
    raw["optimizers"] = raw["optimizers"][:optimizers]
    raw["seeds"] = [seed]
    raw["training"]["epochs"] = epochs
    path.write_text(yaml.safe_dump(raw))
    return path


def train_runs_given(cluster: Cluster, seed: int) -> list[tuple[str, str]]:
    """(host name, run hash) each time luigid gave a TrainRun of `seed` to a worker, in order.

    The history keeps one host per task, the last one to run it, so the host is exact only for a task
    that was given out once.
    """
    with sqlite3.connect(cluster.history) as db:
        rows = db.execute(
            "select t.host, h.value from task_events e join tasks t on e.task_id = t.id "
            "join task_parameters h on h.task_id = t.id and h.name = 'run_hash' "
            "join task_parameters s on s.task_id = t.id and s.name = 'seed' "
            "where t.name = 'TrainRun' and e.event_name = 'RUNNING' and s.value = ? order by e.id",
            (str(seed),),
        ).fetchall()
    return [(host, run_hash) for host, run_hash in rows]


def runs_started(worker_log: str, seed: int) -> list[str]:
    """The run hashes of the TrainRuns of `seed` that a worker's log says it started, in order."""
    return [run_hash for run_hash, found in STARTED_TRAIN_RUN.findall(worker_log) if int(found) == seed]


def run_records(root: Path, seed: int, count: int) -> dict[str, dict]:
    """{run hash: run.json} of the `count` runs of `seed` (one test's experiment)."""
    records = [json.loads(path.read_text()) for path in root.glob(f"runs/*/seed-{seed}/run.json")]
    assert len(records) == count, [path.parent for path in root.glob(f"runs/*/seed-{seed}/run.json")]
    return {record["run_hash"]: record for record in records}


def reference_weights(root: Path, record: dict, into: Path) -> str:
    """weights_sha256 of the same run trained uninterrupted, in another folder, by a new process.

    Weights are bit-identical only at fixed thread counts (on an AMD EPYC here, 1 and 2 intra-op threads
    give different weights), so the reference trains at the threads the hosts' run.json records, in a
    process of its own (tests/childrun.py): this test process's TensorFlow keeps the thread pools of
    whichever test's session came first.
    """
    split, layout = record["settings"]["split"], Layout(root)
    threads = (record["threads"]["intra_op"], record["threads"]["inter_op"])
    train_arrow, split_arrow = layout.train_arrow, layout.split_arrow(split["validation_per_class"], split["seed"])
    done = train_in_child(
        record["settings"], train_arrow, split_arrow, into, seed=record["seed"], threads=threads, timeout=HANG_LIMIT
    )
    assert done.returncode == 0, done.stderr[-4000:]
    trained = json.loads((into / "run.json").read_text())
    assert trained["attempts"] == 1 and trained["status"] == "completed"
    return trained["weights_sha256"]


def test_two_hosts_split_the_runs_and_train_each_once(tmp_path, cluster, workers):
    host_a, host_b = cluster.hosts
    config = tiny_config(tmp_path / "split.yaml", "split", optimizers=4, epochs=2, seed=0)

    def hosts_scheduled() -> list[str] | None:
        """The hosts of the workers with the whole DAG pending, once two workers have it."""
        listed = cluster.api("worker_list")  # a worker's host shows once it has introduced itself
        hosts = sorted(w["host"] for w in listed if w.get("host") and w["num_pending"] >= 14)
        return hosts if len(hosts) == 2 else None

    # Paused, luigid hands out no work, so both hosts schedule the whole DAG before either starts a task.
    cluster.api("pause")
    try:
        pair = [workers.start(host, config, "2026-03-01") for host in cluster.hosts]
        scheduled = wait_for(hosts_scheduled, "two workers to schedule FullReport")
    finally:
        cluster.api("unpause")
    assert scheduled == [host_a.hostname, host_b.hostname]
    for worker, host in zip(pair, cluster.hosts, strict=True):
        assert worker.wait(timeout=HANG_LIMIT) == 0, workers.log(host)[-4000:]

    records = run_records(cluster.root, seed=0, count=4)
    given = train_runs_given(cluster, seed=0)
    assert {host for host, _ in given} == {host_a.hostname, host_b.hostname}, given  # both hosts trained
    assert sorted(run_hash for _, run_hash in given) == sorted(records), given  # each run given out once
    assert [record["attempts"] for record in records.values()] == [1] * 4  # and trained once
    assert all(record["epochs_completed"] == 2 for record in records.values())
    assert len(list(cluster.root.glob("runs/*/seed-0/evaluation.json"))) == 4
    report = json.loads((cluster.root / "reports" / "split" / "2026-03-01" / "report.json").read_text())
    assert sorted(row["run_hash"] for row in report["table"]) == sorted(records)


def test_a_host_killed_mid_training_is_finished_by_the_other_with_the_same_weights(tmp_path, cluster, workers):
    host_a, host_b = cluster.hosts
    config = tiny_config(tmp_path / "killed.yaml", "killed", optimizers=2, epochs=3, seed=1)
    # Host A's worker dies by SIGKILL inside its first run's second epoch, after epoch 1's checkpoint.
    worker_a = workers.start(host_a, config, "2026-03-02", crash_at="train.mid-epoch:2")
    wait_for(lambda: cluster.training_on(host_a) or worker_a.poll() is not None, "host A to start a run")
    worker_b = workers.start(host_b, config, "2026-03-02")
    assert worker_a.wait(timeout=HANG_LIMIT) == -signal.SIGKILL, workers.log(host_a)[-4000:]
    workers.kill(worker_a)  # the rest of host A's process group, if any
    assert worker_b.wait(timeout=HANG_LIMIT) == 0, workers.log(host_b)[-4000:]

    records = run_records(cluster.root, seed=1, count=2)
    (killed,) = runs_started(workers.log(host_a), seed=1)  # host A died in the one run it started
    assert killed in runs_started(workers.log(host_b), seed=1), "host B never took over " + killed
    # luigid gave the dead host's run out a second time, and host B resumed it: two attempts in all.
    assert sorted(run_hash for _, run_hash in train_runs_given(cluster, seed=1)) == sorted([*records, killed])
    assert {run_hash: record["attempts"] for run_hash, record in records.items()} == {
        run_hash: 2 if run_hash == killed else 1 for run_hash in records
    }
    assert records[killed]["epochs_completed"] == 3
    assert records[killed]["weights_sha256"] == reference_weights(cluster.root, records[killed], tmp_path / "reference")
    assert (cluster.root / "reports" / "killed" / "2026-03-02" / "report.json").is_file()


def test_a_hung_host_keeps_its_runs_lock_so_the_other_host_waits_instead_of_training_it(tmp_path, cluster, workers):
    host_a, host_b = cluster.hosts
    config = tiny_config(tmp_path / "hung.yaml", "hung", optimizers=2, epochs=2, seed=2)
    worker_a = workers.start(host_a, config, "2026-03-03")
    held = workers.freeze_inside_a_run(worker_a, host_a)  # host A hangs holding this run's lock
    # luigid stops hearing from A and hands the run to B, which opens the run's lock and waits for it.
    worker_b = workers.start(host_b, config, "2026-03-03")
    lock, holder_a = lock_path(held), f"pid {worker_a.pid} on host {host_a.hostname} "

    def host_b_waits() -> bool:  # B has the lock file open while A's holder line is still in it
        return has_open(worker_b.pid, lock) and lock.read_text().startswith(holder_a)

    wait_for(lambda: host_b_waits() or worker_b.poll() is not None, "host B to reach the run")
    assert worker_b.poll() is None, f"host B finished without waiting for host A's lock on {held}"
    assert not held.exists()
    workers.kill(worker_a)  # SIGKILL host A's process group mid-run: its lock goes with it
    assert worker_b.wait(timeout=HANG_LIMIT) == 0, workers.log(host_b)[-4000:]

    records = run_records(cluster.root, seed=2, count=2)
    killed = json.loads(held.read_text())
    assert runs_started(workers.log(host_a), seed=2)[-1] == killed["run_hash"]  # A hung in the run it took last
    assert killed["run_hash"] in runs_started(workers.log(host_b), seed=2)
    given = sorted(run_hash for _, run_hash in train_runs_given(cluster, seed=2))
    assert given == sorted([*records, killed["run_hash"]])  # the hung host's run was given out twice
    assert killed["weights_sha256"] == reference_weights(cluster.root, killed, tmp_path / "reference")
    assert all(record["epochs_completed"] == 2 for record in records.values())
    assert (cluster.root / "reports" / "hung" / "2026-03-03" / "report.json").is_file()
