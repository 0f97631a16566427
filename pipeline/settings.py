"""Site settings: the `[pipeline]` section of luigi.cfg, as a luigi.Config."""

from __future__ import annotations

import json
from pathlib import Path

import luigi

from tasks.core.errors import ConfigError
from tasks.core.layout import Layout
from tasks.data.dataset import DEBIAN_DIR, RAW_FILES, UPSTREAM_URL


class pipeline(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section name
    """Settings of the machine, not of the experiment."""

    artifacts_root = luigi.Parameter(default="artifacts", description="folder that holds every artifact")
    sources = luigi.ListParameter(
        default=[DEBIAN_DIR, UPSTREAM_URL],
        description="ordered places to fetch the raw .gz files from: directories, file:// or http(s):// URLs",
    )
    checksums_file = luigi.Parameter(
        default="",
        description="JSON {name: {payload_sha256}} overriding the built-in Fashion-MNIST checksums "
        "(tests, mirrors of other data)",
    )
    fetch_timeout = luigi.FloatParameter(default=30.0, description="seconds per HTTP request")
    fetch_retries = luigi.IntParameter(default=3, description="retries per HTTP source")
    fetch_deadline = luigi.FloatParameter(
        default=600.0,
        description="seconds one source may take in all, retries included, before the next source is tried "
        "(a server that trickles a byte at a time never trips fetch_timeout)",
    )
    training_resource = luigi.Parameter(
        default="training",
        description="the [resources] name each TrainRun holds one unit of; give each host its own name "
        "(e.g. training_hostA) to cap concurrent training per host under one central scheduler",
    )
    intra_op_threads = luigi.IntParameter(default=1, description="TensorFlow intra-op threads per run")
    inter_op_threads = luigi.IntParameter(default=1, description="TensorFlow inter-op threads per run")


def settings() -> pipeline:
    return pipeline()


def layout() -> Layout:
    return Layout(settings().artifacts_root)


def expected_checksums(name: str) -> tuple[str, str | None]:
    """(payload sha256, upstream gz md5 or None) that a raw file must match."""
    override = settings().checksums_file
    if not override:
        raw = RAW_FILES[name]
        return raw.payload_sha256, raw.upstream_gz_md5
    path = Path(override)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        return table[name]["payload_sha256"], table[name].get("gz_md5")
    except FileNotFoundError:
        raise ConfigError(f"[pipeline] checksums_file: {path} not found; fix the path or remove the setting") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"[pipeline] checksums_file: {path} must be JSON of the form "
            f'{{"<file name>": {{"payload_sha256": "<hex>"}}}} with an entry for {name}; found a problem: {exc!r}'
        ) from None
