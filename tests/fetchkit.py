"""Shared pieces of the fetch tests: tiny payloads, their sources, and what a landed file must look like."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from tasks.core.layout import raw_record_path
from tasks.core.storage import QUARANTINE_DIR
from tasks.data.fetch import verify_raw_file
from tests import synthetic
from tests.httpserver import serve

NAME = synthetic.TRAIN_IMAGES
FAST = {"retries": 1, "backoff": 0.01, "timeout": 5.0}  # keep failing sources cheap

server = pytest.fixture(serve)


@pytest.fixture(scope="module")
def payload() -> bytes:
    """A 60-image IDX payload: ~47 KB, enough to cut a download in the middle."""
    return synthetic.payloads(train_count=60, test_count=10)[NAME]


@pytest.fixture(scope="module")
def gz(payload) -> bytes:
    return synthetic.gz(payload)


@pytest.fixture
def expected(payload) -> dict:
    return {"expected_payload_sha256": hashlib.sha256(payload).hexdigest()}


@pytest.fixture
def local_source(tmp_path, gz) -> Path:
    folder = tmp_path / "debian"
    folder.mkdir()
    (folder / NAME).write_bytes(gz)
    return folder


@pytest.fixture
def raw_dir(tmp_path) -> Path:
    return tmp_path / "artifacts" / "data" / "raw"


def quarantined(raw_dir: Path) -> list[Path]:
    folder = raw_dir / QUARANTINE_DIR
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".reason.txt")) if folder.exists() else []


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens, so the connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mirror"


def assert_landed(raw_dir: Path, gz: bytes, payload: bytes, record: dict) -> None:
    """The good file is in place, byte for byte, with a record on disk and no partial left."""
    assert (raw_dir / NAME).read_bytes() == gz
    assert json.loads(raw_record_path(raw_dir, NAME).read_text()) == record
    assert record["name"] == NAME
    assert record["gz_sha256"] == hashlib.sha256(gz).hexdigest()
    assert record["gz_bytes"] == len(gz)
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["payload_bytes"] == len(payload)
    assert not (raw_dir / f"{NAME}.part").exists()
    assert not (raw_dir / f"{NAME}.part.json").exists()
    verify_raw_file(raw_dir / NAME, record)
