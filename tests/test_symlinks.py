"""Red team 3: a folder symlinked into the artifacts root never lets the pipeline write, sweep or delete
outside it. Every writer, the sweeps, the stale-file cleanup and the Luigi tasks' paths refuse a linked
folder between the root and the output, naming the link and what to do; nothing outside is touched."""

from __future__ import annotations

import os
import time
from pathlib import Path

import luigi
import pytest
import yaml

from pipeline import FullReport, NightlyReport, TrainRun
from pipeline.hygiene import sweep_output_folders
from tasks.core import quarantine, storage
from tasks.core.config import parse_config
from tasks.core.errors import StorageError
from tasks.core.layout import Layout
from tasks.core.runs import expand_runs
from tests.conftest import REPO_ROOT

OLD = time.time() - 2 * storage.FOREIGN_TEMP_SECONDS
# The name of a temp file exactly as a killed writer on another host leaves it: a sweep takes it when old.
FOREIGN_TEMP = f".report.json{storage.TEMP_MARKER}otherhost.1-5-abcd1234"


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and mtime, by relative path."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A colleague's folder outside the artifacts root: a photo, an old backup and an old temp-named file."""
    folder = tmp_path / "outside"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "family-photo.png").write_bytes(b"\x89PNG a photo")
    for name in ("backup.tmp-2024.tar", FOREIGN_TEMP):
        (folder / name).write_bytes(b"precious")
        os.utime(folder / name, (OLD, OLD))
    return folder


def linked_root(tmp_path: Path, outside: Path, link: str) -> tuple[Layout, Path]:
    """(a Layout of tmp_path/artifacts, the link at `link` under it that points at `outside`)."""
    paths = Layout(tmp_path / "artifacts")
    linked = paths.root / link
    linked.parent.mkdir(parents=True)
    linked.symlink_to(outside, target_is_directory=True)
    return paths, linked


def assert_names_the_link(error: pytest.ExceptionInfo, link: Path, outside: Path) -> None:
    message = str(error.value)
    assert f"{link} is a symbolic link (to {outside})" in message, message
    assert "inside the artifacts root" in message and "rerun" in message, message


def test_a_symlinked_report_folder_is_refused_by_the_layout_every_writer_and_every_sweep(tmp_path, outside):
    before = tree(outside)
    paths, link = linked_root(tmp_path, outside, "reports/tiny")

    with pytest.raises(StorageError) as refused:
        paths.report_dir("tiny", "2026-12-02")
    assert_names_the_link(refused, link, outside)
    with pytest.raises(StorageError) as refused:
        storage.write_json_atomic(link / "2026-12-02" / "report.json", {"written": "outside"})
    assert_names_the_link(refused, link, outside)
    with pytest.raises(StorageError):
        storage.ensure_dir(link / "2026-12-02" / "figures")
    with pytest.raises(StorageError):
        storage.remove_stale_files(link / "figures", keep=set(), suffix=".png")
    with pytest.raises(StorageError):
        storage.sweep_temp_files(link)
    with pytest.raises(StorageError):
        quarantine.quarantine(link / "backup.tmp-2024.tar", "a test")
    # A sweep of the root itself steps over the link: it never descends into it.
    assert storage.sweep_temp_files(paths.root) == []

    assert tree(outside) == before
    assert sorted(path.name for path in outside.iterdir()) == sorted([FOREIGN_TEMP, "backup.tmp-2024.tar", "figures"])


def test_a_symlinked_folder_anywhere_below_the_root_is_refused_and_the_root_itself_may_be_a_link(tmp_path, outside):
    real_root = tmp_path / "big-disk" / "artifacts"
    real_root.mkdir(parents=True)
    (tmp_path / "artifacts").symlink_to(real_root, target_is_directory=True)  # the root itself: allowed
    paths = Layout(tmp_path / "artifacts")
    storage.write_json_atomic(paths.report_dir("tiny", "2026-12-02") / "report.json", {"ok": True})
    assert (real_root / "reports" / "tiny" / "2026-12-02" / "report.json").is_file()

    (paths.root / "history").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError) as refused:
        paths.history_dir("tiny")
    assert_names_the_link(refused, paths.root / "history", outside)


def _smoke_spec():
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    return next(spec for spec in expand_runs(parse_config(raw)) if spec.name == "sgd")


def test_a_symlinked_run_folder_stops_scheduling_before_anything_trains(site, outside):
    before = tree(outside)
    spec = _smoke_spec()
    link = site / "runs" / spec.relative_dir.split("/")[0]
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)

    with pytest.raises(StorageError) as refused:
        TrainRun.of(spec).complete()
    assert_names_the_link(refused, link, outside)
    result = luigi.build([TrainRun.of(spec)], local_scheduler=True, detailed_summary=True, log_level="CRITICAL")
    assert not result.scheduling_succeeded
    assert not (site / "data").exists()  # not even the data stage ran
    assert tree(outside) == before


def test_a_symlinked_report_folder_stops_the_report_tasks_while_scheduling(site, outside):
    # Red team 3: `ln -s <outside> $ROOT/reports/tiny` had the whole report written there, and the stale
    # figure cleanup and the start-of-task sweep delete the colleague's files in it.
    before = tree(outside)
    (site / "reports").mkdir(parents=True)
    link = site / "reports" / "smoke"
    link.symlink_to(outside, target_is_directory=True)
    config = str(REPO_ROOT / "configs" / "smoke.yaml")
    for task in (FullReport(config=config), NightlyReport(config=config)):
        with pytest.raises(StorageError) as refused:
            task.complete()
        assert_names_the_link(refused, link, outside)
    result = luigi.build([FullReport(config=config)], local_scheduler=True, detailed_summary=True, log_level="CRITICAL")
    assert not result.scheduling_succeeded and not (site / "data").exists()
    assert tree(outside) == before


class _ReportInto(luigi.Task):
    """A task whose output lies in a folder under the root (for the start-of-task sweep)."""

    folder = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(str(Path(self.folder) / "report.json"))


def test_the_start_of_task_sweep_never_deletes_through_a_link(tmp_path, outside):
    before = tree(outside)
    paths, link = linked_root(tmp_path, outside, "reports/tiny")
    sweep_output_folders(_ReportInto(folder=str(link)))  # the folder itself is the link
    sweep_output_folders(_ReportInto(folder=str(link / "figures")))  # a folder below it
    assert tree(outside) == before


def test_the_stale_file_cleanup_removes_only_stale_plain_files_of_the_folder(tmp_path):
    folder = tmp_path / "figures"
    folder.mkdir()
    names = ["kept.png", "stale.png", "notes.txt", "linked.png"]
    for name in names[:3]:
        (folder / name).write_bytes(b"png")
    photo = tmp_path / "family-photo.png"
    photo.write_bytes(b"a photo")
    (folder / "linked.png").symlink_to(photo)
    # Another build's temp file of a figure, still being written (red team 5): not stale, not ours.
    other_writer = folder / f".stale.png{storage.TEMP_MARKER}{storage.WRITER_ID}-{os.getpid()}-abcd1234.png"
    other_writer.write_bytes(b"half a png")

    removed = storage.remove_stale_files(folder, keep={folder / "kept.png"}, suffix=".png")

    assert removed == [folder / "stale.png"]
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        ["kept.png", "notes.txt", "linked.png", other_writer.name]
    )
    assert photo.read_bytes() == b"a photo" and (folder / "linked.png").is_symlink()
