"""luigid on host A and one luigi worker per host (tests/netns.py): the pieces of tests/test_two_hosts.py.

Workers get the shipped luigid.cfg pointed at host A's address plus a [pipeline] section for one shared
artifacts root; each runs in its own process group, so a test can freeze or kill a host's worker whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.core.locks import lock_path
from tasks.core.runfolder import RUN_JSON
from tests.conftest import REPO_ROOT
from tests.netns import Host

PORT = 8082  # host A's network namespace is fresh, so the default port is free there
# Waits that only bound a hang: the tests never assert on how long anything took.
HANG_LIMIT = 120


def wait_for(condition, what: str):
    """Poll `condition` until it returns something true; fail (not skip) if that never happens."""
    deadline = time.monotonic() + HANG_LIMIT
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"gave up after {HANG_LIMIT} s waiting for {what}")


@dataclass(frozen=True)
class Cluster:
    """The two hosts, the shared artifacts root, luigid's task history, the synthetic source data."""

    hosts: tuple[Host, Host]
    source: Path
    checksums: Path
    root: Path
    history: Path

    @property
    def scheduler(self) -> Host:
        return self.hosts[0]

    def api(self, method: str, **data) -> dict | list:
        """Call luigid's JSON API from host A (the test itself is on neither host's network)."""
        query = urllib.parse.urlencode({"data": json.dumps(data)})
        url = f"http://{self.scheduler.address}:{PORT}/api/{method}?{query}"
        done = subprocess.run(
            self.scheduler.command(["curl", "-fsS", "--max-time", "10", url]), capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["response"]

    def training_on(self, host: Host) -> list[str]:
        """The TrainRuns that luigid says a worker on `host` is running now."""
        running = self.api("task_list", status="RUNNING", upstream_status="", search="TrainRun")
        return [task_id for task_id, task in running.items() if f"host={host.hostname}," in task["worker_running"]]


class Workers:
    """`luigi --module pipeline FullReport` on the hosts, into the shared artifacts root; logs in tmp_path."""

    def __init__(self, tmp_path: Path, cluster: Cluster):
        self.tmp_path, self.cluster = tmp_path, cluster
        self.running: list[subprocess.Popen] = []

    def site_cfg(self, host: Host) -> Path:
        """The shipped luigid.cfg pointed at luigid on host A, plus the [pipeline] section."""
        cfg = (REPO_ROOT / "luigid.cfg").read_text()
        cfg = cfg.replace("scheduler_host = 127.0.0.1", f"scheduler_host = {self.cluster.scheduler.address}")
        # Poll often for work, so one host's worker is not idle while the other trains.
        cfg = cfg.replace("[worker]\n", "[worker]\nwait_interval = 0.2\nwait_jitter = 0.2\n")
        assert f"scheduler_host = {self.cluster.scheduler.address}" in cfg and "wait_jitter" in cfg
        path = self.tmp_path / f"{host.hostname}.cfg"
        sources = json.dumps([str(self.cluster.source)])
        path.write_text(
            f"{cfg}\n[pipeline]\nartifacts_root = {self.cluster.root}\nsources = {sources}\n"
            f"checksums_file = {self.cluster.checksums}\nintra_op_threads = 1\n"
        )
        return path

    def start(self, host: Host, config: Path, date: str, crash_at: str = "") -> subprocess.Popen:
        """Start host's worker; `crash_at` sets FMNIST_CRASH_AT (tasks/core/faults.py) for it alone."""
        env = dict(os.environ, LUIGI_CONFIG_PATH=str(self.site_cfg(host)), TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("FMNIST_CRASH_AT", None)
        if crash_at:
            env["FMNIST_CRASH_AT"] = crash_at
        argv = [sys.executable, "-m", "luigi", "--module", "pipeline", "FullReport", "--config", str(config)]
        with (self.tmp_path / f"{host.hostname}.log").open("w") as log:
            worker = subprocess.Popen(
                host.command([*argv, "--date", date]),
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the host's power cut kills all of it
            )
        self.running.append(worker)
        return worker

    def log(self, host: Host) -> str:
        return (self.tmp_path / f"{host.hostname}.log").read_text()

    def freeze_inside_a_run(self, worker: subprocess.Popen, host: Host) -> Path:
        """SIGSTOP `worker`'s process group while it holds an unfinished run's lock; that run's run.json.

        The worker's pid is the one in the lock's holder line (ip netns exec, unshare and the host-name
        shim each exec the next program). A run that finishes as the signal lands is let go, and the
        next one is tried.
        """
        holder = f"pid {worker.pid} on host {host.hostname} "
        while True:
            wait_for(lambda: self._held_unfinished(holder) or worker.poll() is not None, f"{host.hostname} to train")
            if worker.poll() is not None:
                pytest.fail(f"{host.hostname}'s worker ended without ever holding an unfinished run's lock")
            os.killpg(worker.pid, signal.SIGSTOP)
            held = self._held_unfinished(holder)  # looked at again now that nothing on the host moves
            if held:
                return held[0]
            os.killpg(worker.pid, signal.SIGCONT)

    def _held_unfinished(self, holder: str) -> list[Path]:
        """The run.json files not yet written whose lock names `holder`."""
        found = []
        for lock in self.cluster.root.glob(f"runs/*/seed-*/{lock_path(RUN_JSON)}"):
            target = lock.with_name(RUN_JSON)
            with contextlib.suppress(FileNotFoundError):
                if lock.read_text().startswith(holder) and not target.exists():
                    found.append(target)
        return found

    def kill(self, worker: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)  # the worker's whole process group
        worker.wait(timeout=60)

    def kill_all(self) -> None:
        for worker in self.running:
            if worker.poll() is None:
                self.kill(worker)


def has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (Linux /proc)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == str(path.resolve()):
                    return True
    return False
