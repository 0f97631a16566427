"""M-SVAG and SVAG in the real training loop: deterministic, resumable bit-identically, chunking-invariant.

Their slots are updated in place inside the in-graph step loop, so the order of reads and writes
matters; these runs would differ if any read saw a half-updated slot.
"""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")

from tasks.training import graph as train_graph  # noqa: E402
from tests.test_train import LEARNING_RATES, data, make_settings, read_metrics, train  # noqa: E402, F401

OPTIMIZERS = ["msvag", "svag"]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):  # noqa: F811 - `data` is test_train's fixture
    """An uninterrupted 2-epoch run per optimizer."""
    runs = {}
    for name in OPTIMIZERS:
        run_dir = tmp_path_factory.mktemp(name) / "run"
        runs[name] = (run_dir, train(data, run_dir, make_settings(name, LEARNING_RATES[name])))
    return runs


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_same_seed_same_weights_and_a_resume_is_bit_identical(data, tmp_path, straight, name):  # noqa: F811
    settings = make_settings(name, LEARNING_RATES[name])
    first_dir, first = straight[name]
    assert first["status"] == "completed"
    again = train(data, tmp_path / "again", settings)
    assert again["weights_sha256"] == first["weights_sha256"]
    stopped = train(data, tmp_path / "resumed", settings, stop_after_epochs=1)
    assert stopped["status"] == "stopped"
    resumed = train(data, tmp_path / "resumed", settings)
    assert resumed["weights_sha256"] == first["weights_sha256"]
    assert read_metrics(tmp_path / "resumed")["train_loss"] == read_metrics(first_dir)["train_loss"]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_one_step_per_call_equals_the_in_graph_loop(data, tmp_path, straight, monkeypatch, name):  # noqa: F811
    for chunk in (1, 3):
        monkeypatch.setattr(train_graph, "CHUNK_STEPS", chunk)
        record = train(data, tmp_path / f"chunk-{chunk}", make_settings(name, LEARNING_RATES[name]))
        assert record["weights_sha256"] == straight[name][1]["weights_sha256"], chunk
