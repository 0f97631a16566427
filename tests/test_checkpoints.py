"""The checkpoint bookkeeping without TensorFlow: what latest.json must hold, and what a clean keeps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.core.errors import RunFolderError
from tasks.core.runfolder import read_latest
from tasks.training import checkpoints

GOOD = {
    "epoch": 3,
    "prefix": "epoch-0003",
    "weights_sha256": "0" * 64,
    "variables": ["model/w"],
    "run_hash": "abc",
    "seed": 0,
}


def test_read_latest_returns_a_well_formed_record(tmp_path):
    assert read_latest(tmp_path) is None
    (tmp_path / "latest.json").write_text(json.dumps(GOOD))
    assert read_latest(tmp_path) == GOOD


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps([GOOD]),
        json.dumps({key: value for key, value in GOOD.items() if key != "seed"}),
        json.dumps(GOOD | {"epoch": 0, "prefix": "epoch-0000"}),
        json.dumps(GOOD | {"epoch": "3"}),
        json.dumps(GOOD | {"epoch": True, "prefix": "epoch-0001"}),
        json.dumps(GOOD | {"prefix": "epoch-0002"}),
        json.dumps(GOOD | {"prefix": "../elsewhere/epoch-0003"}),
    ],
)
def test_read_latest_refuses_a_malformed_record(tmp_path, content):
    (tmp_path / "latest.json").write_text(content)
    with pytest.raises(
        RunFolderError, match=r"latest\.json: .*(not readable JSON|expected keys).*delete the run folder"
    ):
        read_latest(tmp_path)


def _touch(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def test_clean_keeps_the_last_epochs_and_leaves_unknown_files_alone(tmp_path):
    for epoch in range(1, 7):
        _touch(tmp_path / f"epoch-{epoch:04d}.index")
        _touch(tmp_path / f"epoch-{epoch:04d}.data-00000-of-00001")
    _touch(tmp_path / "latest.json")
    _touch(tmp_path / "a-note.txt")  # sorts first: a clean must go on past files that are not its own
    (tmp_path / "quarantine").mkdir()
    _touch(tmp_path / "checkpoint")
    _touch(tmp_path / ".latest.json.tmp-host.1-2-abc")
    _touch(tmp_path / "partial.tmp-host.1-2-abc")  # sorts after latest.json: the clean goes on past it
    (tmp_path / "epoch-0006_temp").mkdir()
    _touch(tmp_path / "epoch-0006_temp" / "part-00000-of-00001.index")
    _touch(tmp_path / "elsewhere.data")
    (tmp_path / "epoch-0005.index").unlink()
    (tmp_path / "epoch-0005.index").symlink_to(tmp_path / "elsewhere.data")  # never kept: not written in place

    removed = checkpoints.clean_checkpoint_dir(tmp_path, latest_epoch=5, keep=3)

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "a-note.txt",
        "elsewhere.data",
        "epoch-0003.data-00000-of-00001",
        "epoch-0003.index",
        "epoch-0004.data-00000-of-00001",
        "epoch-0004.index",
        "epoch-0005.data-00000-of-00001",
        "latest.json",
        "quarantine",
    ]
    assert sorted(path.name for path in removed) == [
        ".latest.json.tmp-host.1-2-abc",
        "checkpoint",
        "epoch-0001.data-00000-of-00001",
        "epoch-0001.index",
        "epoch-0002.data-00000-of-00001",
        "epoch-0002.index",
        "epoch-0005.index",
        "epoch-0006.data-00000-of-00001",
        "epoch-0006.index",
        "epoch-0006_temp",
        "partial.tmp-host.1-2-abc",
    ]
    assert (tmp_path / "elsewhere.data").read_bytes() == b"x"


def test_clean_goes_on_when_an_entry_vanishes_under_it(tmp_path, monkeypatch):
    """What it lists may be gone by the time it removes it (a file or a TF temp folder): no error, all cleaned."""
    for name in ("epoch-0001.index", "epoch-0001.data-00000-of-00001", "checkpoint"):
        _touch(tmp_path / name)
    (tmp_path / "epoch-0002_temp").mkdir()
    _touch(tmp_path / "epoch-0002_temp" / "part-00000-of-00001.index")
    listing, is_symlink = Path.iterdir, Path.is_symlink

    def listed_then_removed(self):  # the files vanish once listed
        entries = list(listing(self))
        for entry in entries:
            if entry.is_file():
                entry.unlink()
        return iter(entries)

    def checked_then_removed(self):  # the folder vanishes once found to be a real folder
        answer = is_symlink(self)
        if self.name.endswith("_temp") and self.is_dir():
            shutil.rmtree(self)
        return answer

    monkeypatch.setattr(Path, "iterdir", listed_then_removed)
    monkeypatch.setattr(Path, "is_symlink", checked_then_removed)
    removed = checkpoints.clean_checkpoint_dir(tmp_path, latest_epoch=4, keep=2)
    assert sorted(path.name for path in removed) == [
        "checkpoint", "epoch-0001.data-00000-of-00001", "epoch-0001.index", "epoch-0002_temp"
    ]  # fmt: skip
    assert list(listing(tmp_path)) == []
