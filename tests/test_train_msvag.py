"""M-SVAG and SVAG in the real training loop: deterministic, resumable bit-identically, chunking-invariant.

Their slots are updated in place inside the in-graph step loop, so the order of reads and writes
matters; these runs would differ if any read saw a half-updated slot.
"""

from __future__ import annotations

import pytest

from tasks.training import graph as train_graph
from tests.test_train import (  # noqa: F401 - `data` is a fixture
    LEARNING_RATES,
    data,
    make_settings,
    read_metrics,
    train,
    train_until_stopped,
)

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
    train_until_stopped(data, tmp_path / "resumed", settings)
    resumed = train(data, tmp_path / "resumed", settings)
    assert resumed["weights_sha256"] == first["weights_sha256"]
    # Restored slots, not a retrain: attempt 2 ran epoch 2's 20 steps only.
    assert resumed["resumes"] == [{"attempt": 2, "from_epoch": 1, "steps_run": 20}]
    assert read_metrics(tmp_path / "resumed")["train_loss"] == read_metrics(first_dir)["train_loss"]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_one_step_per_call_equals_the_in_graph_loop(data, tmp_path, straight, monkeypatch, name):  # noqa: F811
    for chunk in (1, 3):
        monkeypatch.setattr(train_graph, "CHUNK_STEPS", chunk)
        record = train(data, tmp_path / f"chunk-{chunk}", make_settings(name, LEARNING_RATES[name]))
        assert record["weights_sha256"] == straight[name][1]["weights_sha256"], chunk
