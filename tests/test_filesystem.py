"""Filesystem trouble: a read-only or full artifacts root gives a clear StorageError, and a rerun after
the fix completes.

Real faults come from a tiny tmpfs mounted as root (`-o ro` for not writable, a small `size` for full);
the same code paths are also driven without root by injecting the OSError in-process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import luigi
import pytest
import yaml

import tasks.core.storage
from pipeline import FullReport, PrepareData
from tasks.core.errors import StorageError
from tasks.core.storage import TEMP_MARKER
from tasks.data.arrays import load_arrays, load_indices
from tasks.data.dataset import RAW_FILE_NAMES
from tasks.data.fetch import verify_raw_file
from tests.conftest import REPO_ROOT, SYNTHETIC_TRAIN_ROWS, build, luigi_cli

# -- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mountpoint: Path, options: str):
    """Mount a tmpfs with `options` at `mountpoint` for the block; skip when this machine cannot."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injection tests below cover the same code without it")
    if not shutil.which("mount"):
        pytest.skip("no `mount` command on this machine")
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (an unprivileged container?): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)  # busy: detach it now, free it later


def remount(mountpoint: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mountpoint)], check=True, capture_output=True)


def cli(args: list[str], root: Path, synthetic_raw, cfg: Path) -> subprocess.CompletedProcess:
    """`luigi --module pipeline <args>` with a site cfg (kept off the faulty disk) pointing at `root`."""
    raw, checksums = synthetic_raw
    cfg.write_text(
        f"[pipeline]\nartifacts_root = {root}\nsources = {json.dumps([str(raw)])}\n"
        f"checksums_file = {checksums}\nfetch_retries = 0\n"
    )
    return luigi_cli(args, cfg)


def failure_reports(output: str) -> list[str]:
    """The last line of each task failure Luigi logged (its traceback's final line: the exception)."""
    reports, current = [], None
    for line in output.splitlines():
        if line.startswith(("INFO:", "DEBUG:", "WARNING:", "ERROR:")):
            if current:
                reports.append(current[-1])
            current = [line] if " failed    " in line else None
        elif current is not None and line.strip():
            current.append(line)
    if current:
        reports.append(current[-1])
    return reports


def temp_files(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{TEMP_MARKER}*"))


def assert_data_stage_is_complete(root: Path, validation_per_class: int) -> None:
    raw_dir = root / "data" / "raw"
    for name in RAW_FILE_NAMES:
        verify_raw_file(raw_dir / name, json.loads((raw_dir / f"{name}.json").read_text()))
    assert len(load_arrays(root / "data" / "arrays" / "train.arrow")[1]) == SYNTHETIC_TRAIN_ROWS
    assert (
        len(load_indices(root / "data" / "arrays" / f"split-v{validation_per_class}-s0.arrow"))
        == 10 * validation_per_class
    )
    assert not temp_files(root) and not list(raw_dir.glob("*.part"))


def build_expecting_failure(tasks_to_run) -> None:
    result = luigi.build(tasks_to_run, local_scheduler=True, workers=1, detailed_summary=True, log_level="CRITICAL")
    assert result.status.name == "FAILED", result.summary_text


def _fill(mountpoint: Path, leave_bytes: int) -> Path:
    """Fill the filesystem at `mountpoint` up to `leave_bytes` of free space (written, not sparse)."""
    filler = mountpoint / "filler"
    with open(filler, "wb") as handle:
        remaining = shutil.disk_usage(mountpoint).free - leave_bytes
        while remaining > 0:
            remaining -= handle.write(b"\0" * min(remaining, 1 << 20))
    return filler


# -- real faults on a tmpfs (root) ---------------------------------------------------------------


def test_a_read_only_artifacts_root_fails_with_a_clear_message_then_a_rerun_completes(tmp_path, synthetic_raw):
    with tmpfs(tmp_path / "disk", "ro,size=16m") as disk:
        root = disk / "artifacts"
        failed = cli(["PrepareData", "--validation-per-class", "5"], root, synthetic_raw, tmp_path / "site.cfg")
        assert failed.returncode == 30, failed.stderr[-3000:]  # [retcode] task_failed
        reports = failure_reports(failed.stderr)
        assert reports, failed.stderr[-3000:]
        for report in reports:  # each failed task's traceback ends with our message: path, cause, fix
            assert report.startswith(f"tasks.core.errors.StorageError: cannot write {root}/"), report
            assert "Read-only file system" in report and f"(at {root})" in report, report
            assert "remount it read-write" in report and "[pipeline] artifacts_root" in report, report

        remount(disk, "rw")
        done = cli(["PrepareData", "--validation-per-class", "5"], root, synthetic_raw, tmp_path / "site.cfg")
        assert done.returncode == 0, done.stderr[-3000:]
        assert_data_stage_is_complete(root, 5)


def test_a_full_disk_fails_with_a_clear_message_then_a_rerun_completes(tmp_path, synthetic_raw):
    # 512 KiB hold the label files but not the 1.5 MB of training images.
    with tmpfs(tmp_path / "disk", "size=512k") as disk:
        root = disk / "artifacts"
        failed = cli(["PrepareData", "--validation-per-class", "5"], root, synthetic_raw, tmp_path / "site.cfg")
        assert failed.returncode == 30, failed.stderr[-3000:]
        reports = failure_reports(failed.stderr)
        assert reports, failed.stderr[-3000:]
        for report in reports:
            assert report.startswith(f"tasks.core.errors.StorageError: cannot write {root}/"), report
            assert "No space left on device" in report and "bytes free" in report, report
            assert "free space there and rerun" in report and "[pipeline] artifacts_root" in report, report

        remount(disk, "size=32m")
        done = cli(["PrepareData", "--validation-per-class", "5"], root, synthetic_raw, tmp_path / "site.cfg")
        assert done.returncode == 0, done.stderr[-3000:]
        assert_data_stage_is_complete(root, 5)


@pytest.mark.slow
def test_a_disk_that_fills_up_during_training_fails_clearly_then_the_run_resumes(site, tmp_path, failures):
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    raw["optimizers"] = [entry for entry in raw["optimizers"] if entry["name"] == "sgd"]
    config = tmp_path / "sgd.yaml"
    config.write_text(yaml.safe_dump(raw))
    report = FullReport(config=str(config), date=dt.date(2026, 1, 5))
    with tmpfs(site, "size=16m"):
        build([PrepareData(validation_per_class=100, split_seed=0)])
        # Room for run.json's small siblings (attempts, inference.meta, metrics), not for a checkpoint.
        filler = _fill(site, leave_bytes=48 * 1024)
        build_expecting_failure([report])
        [(task, error)] = failures
        assert task.task_family == "TrainRun" and isinstance(error, StorageError), repr(error)
        message = str(error)
        assert f"cannot write {site}/runs/" in message and "No space left on device" in message, message
        assert "free space there and rerun" in message, message

        filler.unlink()
        build([report])
        run_json = next((site / "runs").rglob("run.json"))
        assert json.loads(run_json.read_text())["status"] == "completed"
        assert (run_json.parent / "evaluation.json").is_file()
        assert not temp_files(site)
        assert not [path for path in (run_json.parent / "checkpoints").iterdir() if "tempstate" in path.name]


# -- the same paths without root: the OSError injected in-process ---------------------------------


@pytest.mark.parametrize(
    ("where", "code", "fix"),
    [
        ("fsync", errno.ENOSPC, "free space there and rerun"),
        ("create", errno.EACCES, "give it write access"),
        ("create", errno.EROFS, "remount it read-write"),
    ],
)
def test_an_injected_write_error_is_a_storage_error_and_a_rerun_completes(
    site, failures, monkeypatch, where, code, fix
):
    train_arrow = site / "data" / "arrays" / "train.arrow"
    real_fsync, real_make_temp = tasks.core.storage._fsync_file, tasks.core.storage._make_temp

    def failing_fsync(path: Path) -> None:  # the temp file is written; syncing it finds the disk full
        if path.name.startswith(f".{train_arrow.name}{TEMP_MARKER}"):
            raise OSError(code, os.strerror(code))
        real_fsync(path)

    def failing_make_temp(final: Path, suffix: str) -> Path:  # the folder refuses a new file
        if final == train_arrow:
            raise OSError(code, os.strerror(code), str(final.parent))
        return real_make_temp(final, suffix)

    if where == "fsync":
        monkeypatch.setattr(tasks.core.storage, "_fsync_file", failing_fsync)
    else:
        monkeypatch.setattr(tasks.core.storage, "_make_temp", failing_make_temp)
    build_expecting_failure([PrepareData(validation_per_class=5)])
    [(task, error)] = failures
    assert task.task_family == "DecodeData" and isinstance(error, StorageError), repr(error)
    message = str(error)
    assert message.startswith(f"cannot write {train_arrow}: {os.strerror(code)}"), message
    assert fix in message and "[pipeline] artifacts_root" in message, message
    assert not train_arrow.exists() and not (site / "data" / "manifest.json").exists()
    assert not temp_files(site), "a failed atomic write must remove its temp file"

    monkeypatch.undo()  # the fault is fixed
    build([PrepareData(validation_per_class=5)])
    assert_data_stage_is_complete(site, 5)
