"""Site settings: the `[pipeline]` section of luigi.cfg, as a luigi.Config."""

from __future__ import annotations

import luigi

from tasks.core.devices import DEVICE_SETTINGS, check_device_setting
from tasks.core.layout import Layout
from tasks.data.checksums import published_checksums
from tasks.data.dataset import DEBIAN_DIR, UPSTREAM_URL


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
    preload_tensorflow = luigi.BoolParameter(
        default=True,
        description="import TensorFlow once in the worker before it forks training and evaluation tasks, "
        "so that they inherit it instead of importing it each (pipeline/warm.py)",
    )
    intra_op_threads = luigi.IntParameter(default=1, description="TensorFlow intra-op threads per run")
    inter_op_threads = luigi.IntParameter(default=1, description="TensorFlow inter-op threads per run")
    device = luigi.Parameter(
        default="auto",
        description=f"where runs train and are scored, one of {', '.join(DEVICE_SETTINGS)}: auto takes a GPU when "
        "TensorFlow sees one, cpu never does, gpu refuses to run without one",
    )


def site_settings() -> pipeline:
    return pipeline()


def device_setting() -> str:
    """`[pipeline] device`, checked: a ConfigError for anything but auto, cpu or gpu."""
    return check_device_setting(site_settings().device)


def layout() -> Layout:
    return Layout(site_settings().artifacts_root)


def expected_checksums(name: str) -> tuple[str, str | None]:
    """(payload sha256, upstream gz md5 or None) that a raw file must match, per this site's settings."""
    return published_checksums(name, site_settings().checksums_file)
