"""The small rules of tasks/core/storage.py, each pinned: the writer id in temp names, which paths the link
guard checks (relative ones too, never a sibling of the root), and the exact form of what is written."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from tasks.core import storage
from tasks.core.errors import StorageError


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("node-7.lab", "pid:[4026531836]", "node_7.lab.4026531836"),
        ("Node-7.LAB", "pid:[5]", "Node_7.LAB.5"),
        ("a b/c", "pid:[12]", "a_b_c.12"),
        ("", "pid:[12]", "host.12"),
        ("h" * 60, "pid:[3]", "h" * 48 + ".3"),
        ("node-7", OSError, "node_7"),
        ("node-7", "pid:[]", "node_7"),
    ],
)
def test_the_writer_id_is_the_host_name_and_its_pid_namespace(monkeypatch, host, namespace, expected):
    def readlink(path):
        assert path == "/proc/self/ns/pid"
        if namespace is OSError:
            raise OSError(2, "No such file or directory")
        return namespace

    monkeypatch.setattr(storage.socket, "gethostname", lambda: host)
    monkeypatch.setattr(storage.os, "readlink", readlink)
    assert storage._writer_id() == expected


def test_the_writer_id_of_this_process_names_its_temp_files(tmp_path):
    assert storage.WRITER_ID == storage._writer_id()
    with storage.atomic_path(tmp_path / "target.bin", suffix=".npy") as temp:
        assert temp.name.startswith(f".target.bin{storage.TEMP_MARKER}{storage.WRITER_ID}-{os.getpid()}-")
        assert temp.name.endswith(".npy") and storage._TEMP_NAME.fullmatch(temp.name)
        assert temp.parent == tmp_path  # beside its target: the rename never crosses filesystems


def test_a_write_works_where_the_filesystem_has_no_locks_or_no_folder_fsync(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    fsync = os.fsync

    def files_only(fd):  # some network filesystems refuse fsync on a folder
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EINVAL, "Invalid argument")
        fsync(fd)

    monkeypatch.setattr(storage.fcntl, "flock", no_locks)
    monkeypatch.setattr(storage.os, "fsync", files_only)
    storage.write_json_atomic(tmp_path / "a.json", {"a": 1})
    assert storage.read_json(tmp_path / "a.json") == {"a": 1} and os.listdir(tmp_path) == ["a.json"]


def test_a_temp_file_that_cannot_be_set_up_is_removed_and_the_error_named(tmp_path, monkeypatch):
    def refused(fd, mode):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(storage.os, "fchmod", refused)
    with pytest.raises(StorageError, match=r"cannot write .*a\.json: Operation not permitted"):
        storage.write_json_atomic(tmp_path / "a.json", {"a": 1})
    assert os.listdir(tmp_path) == []


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "artifacts"
    (root / "reports").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "reports" / "tiny").symlink_to(tmp_path / "outside", target_is_directory=True)
    storage.protect_root(root)
    return root


def test_a_relative_path_is_checked_from_the_working_folder(root, monkeypatch):
    monkeypatch.chdir(root)
    with pytest.raises(StorageError, match=r"artifacts/reports/tiny is a symbolic link \(to .*outside\) inside"):
        storage.refuse_linked_folders("reports/tiny/2026-12-04")
    with pytest.raises(StorageError, match=r"reports/tiny is a symbolic link"):
        storage.refuse_linked_folders("./reports/./tiny")
    monkeypatch.chdir(root / "reports")
    with pytest.raises(StorageError, match=r"reports/tiny is a symbolic link"):
        storage.ensure_dir("tiny/2026-12-04")
    storage.refuse_linked_folders("other/2026-12-04")  # a real (missing) folder: nothing to refuse


def test_only_folders_below_the_root_are_checked_and_a_files_own_name_may_be_a_link(root, tmp_path):
    sibling = tmp_path / "artifacts-old"  # shares the root's name as a prefix, but is not below it
    sibling.mkdir()
    (root / "-old").symlink_to(tmp_path / "outside")  # what the sibling's path would name if read as below the root
    (sibling / "reports").symlink_to(tmp_path / "outside", target_is_directory=True)
    storage.refuse_linked_folders(sibling / "reports" / "tiny")
    storage.refuse_linked_folders(root / "reports" / "tiny", folder=False)  # a file named by a link
    with pytest.raises(StorageError):
        storage.refuse_linked_folders(root / "reports" / "tiny")
    with pytest.raises(StorageError):
        storage.refuse_linked_folders(root / "reports" / "tiny" / "report.json", folder=False)


def test_a_dot_dot_below_the_root_is_refused(root):
    path = root / "reports" / ".." / ".." / "elsewhere"
    with pytest.raises(StorageError) as error:
        storage.refuse_linked_folders(path)
    assert str(error.value) == f"{path}: expected a path inside the artifacts root {root}, found '..' in it"


def test_the_link_message_says_what_to_do(root, tmp_path):
    link = root / "reports" / "tiny"
    with pytest.raises(StorageError) as error:
        storage.ensure_dir(link / "2026-12-04")
    assert str(error.value) == (
        f"{link} is a symbolic link (to {tmp_path / 'outside'}) inside the artifacts root {root}: the pipeline "
        "writes, sweeps and deletes only in real folders under the root, never through a link, so it stopped before "
        f"touching anything. Replace the link by the folder itself (remove the link, then move {tmp_path / 'outside'} "
        f"to {link}), or set `[pipeline] artifacts_root` in luigi.cfg to a folder on that disk, and rerun"
    )
    assert "(to ?)" in storage._linked_folder_message(root / "missing", root)


def test_json_targets_are_indented_sorted_and_end_with_a_newline(tmp_path):
    storage.write_json_atomic(tmp_path / "a.json", {"b": [1, 2], "a": "é"})
    text = (tmp_path / "a.json").read_text(encoding="utf-8")
    assert text == '{\n  "a": "\\u00e9",\n  "b": [\n    1,\n    2\n  ]\n}\n'
    assert storage.read_json(tmp_path / "a.json") == {"a": "é", "b": [1, 2]}
    with pytest.raises(ValueError):
        storage.write_json_atomic(tmp_path / "nan.json", {"x": float("nan")})  # JSON has no NaN: never written
    assert not (tmp_path / "nan.json").exists() and os.listdir(tmp_path) == ["a.json"]
    (tmp_path / "u.json").write_text(json.dumps({"a": "é"}, ensure_ascii=False), encoding="utf-8")
    assert storage.read_json(tmp_path / "u.json") == {"a": "é"}


def test_bytes_targets_and_digests(tmp_path):
    data = bytes(range(256)) * 10
    storage.write_bytes_atomic(tmp_path / "blob", data)
    assert (tmp_path / "blob").read_bytes() == data
    expected = hashlib.sha256(data).hexdigest()
    assert storage.sha256_file(tmp_path / "blob") == expected == storage.sha256_file(tmp_path / "blob", chunk_size=7)


def test_the_public_mode_is_what_the_umask_leaves(monkeypatch):
    monkeypatch.setattr(storage, "_UMASK", 0o027)
    assert storage.public_file_mode() == 0o640
    monkeypatch.setattr(storage, "_UMASK", 0o002)
    assert storage.public_file_mode() == 0o664


def test_a_failing_flush_of_files_written_by_others_names_the_file(tmp_path, monkeypatch):
    saved = tmp_path / "epoch-0001.index"
    saved.write_bytes(b"w")

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(storage.os, "fsync", failing_fsync)
    with pytest.raises(StorageError) as error:
        storage.fsync_files([saved])
    assert str(error.value) == (
        f"cannot write {saved}: Input/output error. Check that the artifacts root is a healthy, writable local or "
        "network folder, and rerun."
    )
