"""The real CLI (`python -m luigi --module pipeline ...`) on synthetic data, in its own artifacts root.

For the kill tests: each root gets a site config beside it (its sources are the synthetic raw files), the
command's output goes to a log file beside it, and the failpoint variables are set only when a test asks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.core import faults
from tests import synthetic
from tests.conftest import REPO_ROOT, SYNTHETIC_TEST_ROWS, SYNTHETIC_TRAIN_ROWS


@dataclass(frozen=True)
class SyntheticSource:
    source: Path  # the raw .gz files
    checksums: Path

    @classmethod
    def write(cls, base: Path) -> SyntheticSource:
        source = base / "source"
        checksums = synthetic.write_checksums_file(
            base / "checksums.json",
            synthetic.write_raw_dir(source, train_count=SYNTHETIC_TRAIN_ROWS, test_count=SYNTHETIC_TEST_ROWS),
        )
        return cls(source, checksums)

    def site_cfg(self, root: Path) -> Path:
        path = root.with_name(f"{root.name}.cfg")
        path.write_text(
            f"[pipeline]\nartifacts_root = {root}\nsources = {json.dumps([str(self.source)])}\n"
            f"checksums_file = {self.checksums}\nfetch_retries = 0\n"
        )
        return path

    def start(
        self, root: Path, args: list[str], env_extra: dict[str, str] | None = None, workers: int = 1
    ) -> tuple[subprocess.Popen, Path]:
        """Start `luigi --module pipeline --workers N <args>` into `root`, in its own process group."""
        env = dict(os.environ, LUIGI_CONFIG_PATH=str(self.site_cfg(root)), TF_CPP_MIN_LOG_LEVEL="2")
        for variable in (faults.ENV_VAR, faults.HOLD_VAR, faults.HOLD_DIR_VAR):
            env.pop(variable, None)
        env.update(env_extra or {})
        log = root.with_name(f"{root.name}-{time.monotonic_ns()}.log")
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "luigi", "--module", "pipeline", "--workers", str(workers), *args],
                cwd=REPO_ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: one killpg reaches every worker process
            )
        return process, log

    def run(
        self, root: Path, args: list[str], env_extra: dict[str, str] | None = None, workers: int = 1
    ) -> tuple[int, str]:
        process, log = self.start(root, args, env_extra, workers)
        return process.wait(timeout=600), log.read_text(errors="replace")
