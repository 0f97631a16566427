"""build_report writes a self-contained folder whose every number equals the runs' evaluation.json.

Three optimizer entries × 2 seeds; adam has a 2-point grid where validation and test disagree, and
momentum has a 2-point grid with one diverged run (see tests/report_fixtures.py).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tasks.core.errors import ReportError
from tasks.reporting.report import build_report
from tests.report_fixtures import (
    SCENARIO,
    TableParser,
    assert_recomputable_from_summary,
    build_kwargs,
    write_scenario,
    write_test_arrow,
)

ALERT = "val accuracy of adam fell by 0.05 <b>below</b> the 5-day mean"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    test_arrow = write_test_arrow(root / "test.arrow")
    runs = write_scenario(root / "runs", test_arrow)
    extra = root / "trend.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(extra)
    out = build_report(
        root / "out", **build_kwargs(root, runs, test_arrow, alerts=[ALERT], extra_figures=[("Nightly trend", extra)])
    )
    html = out["html"].read_text()
    parser = TableParser()
    parser.feed(html)
    markdown = out["markdown"].read_text()
    return {"out": out, "runs": runs, "html": html, "parser": parser, "markdown": markdown, "test_arrow": test_arrow}


def _selected(name: str, rate: float) -> list[tuple]:
    """The scenario's (seed, final val, test) outcomes of one grid point."""
    grid = next(grid for entry, _, _, _, grid in SCENARIO if entry == name)
    return grid[rate]


def _results_rows(report) -> dict[str, dict[str, tuple[dict, str]]]:
    header, *body = report["parser"].tables["results"]
    names = [text for _, text in header]
    return {row[0][1]: dict(zip(names, row)) for row in body}


def test_every_file_exists_and_every_png_is_a_real_image(report):
    out = report["out"]
    for key in ("html", "markdown", "summary"):
        assert out[key].is_file()
    names = sorted(path.name for path in out["figures"])
    assert names == sorted(
        [
            "learning_curves.png",
            "test_accuracy.png",
            "lr_sensitivity.png",
            "test_samples.png",
            "confusion_matrix.png",
            "per_class_accuracy.png",
            "misclassified.png",
            "extra-1-nightly-trend.png",
            "forest_plot.png",
            "pairwise_matrix.png",
            "performance_profile.png",
        ]
    )
    for path in out["figures"]:
        assert path.parent == out["html"].parent / "figures"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5_000, path
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 200 and image.height >= 150, path
    # Self-contained: every image is a relative path inside the folder, in both documents.
    assert sorted(report["parser"].images) == sorted(f"figures/{name}" for name in names)
    for name in names:
        assert f"](figures/{name})" in report["markdown"]


def test_table_numbers_equal_the_evaluations_and_best_point_is_chosen_on_validation(report):
    rows = _results_rows(report)
    assert list(rows) == ["sgd", "adam", "momentum"]
    # adam: lr 0.01 has the higher test accuracy, 0.001 the higher validation accuracy: 0.001 must win.
    # momentum: lr 1.0 has one diverged seed, so the stable 0.01 wins despite 1.0's best single val accuracy.
    chosen = {"sgd": 0.1, "adam": 0.001, "momentum": 0.01}
    for name, rate in chosen.items():
        outcomes = _selected(name, rate)
        tests = np.array([test for _, _, test in outcomes])
        finals = np.array([final for _, final, _ in outcomes])
        cells = rows[name]
        attrs, text = cells["Test accuracy (mean ± std)"]
        assert float(attrs["data-mean"]) == pytest.approx(tests.mean(), abs=1e-12)
        assert float(attrs["data-std"]) == pytest.approx(tests.std(ddof=1), abs=1e-12)
        assert text == f"{tests.mean():.4f} ± {tests.std(ddof=1):.4f}"
        assert float(cells["Learning rate"][0]["data-value"]) == rate
        assert cells["Schedule"][1] == "constant"
        assert cells["Final val. accuracy"][1] == f"{finals.mean():.4f}"
        assert cells["Best val. accuracy"][1] == f"{(finals + 0.01).mean():.4f}"  # the fixture peaks at epoch 2
        assert cells["Best val. epoch(s)"][1] == "2, 2"
        evaluations = [
            run["evaluation"] for run in report["runs"] if run["name"] == name and run["learning_rate"] == rate
        ]
        losses = [evaluation["test"]["loss"] for evaluation in evaluations]
        assert cells["Test loss (mean)"][1] == f"{np.mean(losses):.4f}"
    assert rows["momentum"]["Diverged runs"][1] == "1 / 4"
    assert rows["adam"]["Diverged runs"][1] == "0 / 4"
    assert rows["adam"]["Time vs SGD"][1] == "1.50×" and rows["sgd"]["Time vs SGD"][1] == "1.00×"
    assert rows["adam"]["Seconds / epoch"][1] == "3.00"

    table = {row["name"]: row for row in report["out"]["table"]}
    assert table["adam"]["learning_rate"] == 0.001 and table["momentum"]["learning_rate"] == 0.01
    assert table["adam"]["overhead_vs_sgd"] == pytest.approx(1.5)
    # The Markdown renders the very same cells.
    row = "| adam | adam | 0.001 | constant | beta1=0.9, beta2=0.999, epsilon=1e-08 | 2 | 0.8250 ± 0.0071 |"
    assert row in report["markdown"]


def test_diverged_run_is_shown_as_diverged_never_as_zero(report):
    header, *body = report["parser"].tables["all-runs"]
    statuses = [row[4][1] for row in body]
    assert statuses.count("diverged at epoch 2, step 37") == 1
    diverged_row = next(row for row in body if row[4][1].startswith("diverged"))
    assert [text for _, text in diverged_row[5:9]] == ["n/a"] * 4
    assert "0.0000" not in report["html"]


def test_summary_parquet_rows_equal_the_inputs(report):
    summary = pq.read_table(report["out"]["summary"]).to_pylist()
    runs = report["runs"]
    assert len(summary) == len(runs) == 10
    for row, run in zip(summary, runs):
        evaluation = run["evaluation"]
        assert (row["name"], row["learning_rate"], row["seed"], row["run_hash"], row["status"]) == (
            run["name"],
            run["learning_rate"],
            run["seed"],
            run["run_hash"],
            run["run"]["status"],
        )
        assert row["wall_seconds"] == run["run"]["wall_seconds"]
        assert row["seconds_per_epoch"] == evaluation["metrics"]["seconds_per_epoch"]
        if row["status"] == "diverged":
            assert [
                row[key]
                for key in ("test_accuracy", "test_loss", "best_val_accuracy", "best_val_epoch", "final_val_accuracy")
            ] == [None] * 5
        else:
            assert row["test_accuracy"] == evaluation["test"]["accuracy"]
            assert row["test_loss"] == evaluation["test"]["loss"]
            assert row["best_val_accuracy"] == evaluation["metrics"]["best"]["val_accuracy"]
            assert row["best_val_epoch"] == evaluation["metrics"]["best"]["epoch"]
            assert row["final_val_accuracy"] == evaluation["metrics"]["final"]["val_accuracy"]


def test_alerts_come_first_escaped_and_metadata_is_reported(report):
    html, markdown = report["html"], report["markdown"]
    body = html[html.index("<body>") :]
    assert body.index('id="alerts"') < body.index("<h1>")
    assert "&lt;b&gt;below&lt;/b&gt;" in html and "<b>below</b>" not in html
    assert markdown.startswith(f"> **⚠ ALERT:** {ALERT}\n")
    # Config text is escaped in a <pre>; the total wall time is the sum of run.json's wall_seconds.
    assert "# a &lt;tag&gt; &amp; more" in html
    total = sum(run["run"]["wall_seconds"] for run in report["runs"])
    metadata = {row[0][1]: row[1][1] for row in report["parser"].tables["metadata"]}
    assert metadata["Total wall time"].endswith(f"({total:.1f} s over 10 runs)")
    assert metadata["versions: tensorflow"] == "2.21.0"
    assert "Nightly trend" in html and "## Nightly trend" in markdown
    # The best run is the highest test accuracy among completed runs (display only).
    assert "Best run: adam, lr=0.01, seed 0" in html


def test_no_sgd_single_rate_and_all_diverged_entry(tmp_path):
    test_arrow = write_test_arrow(tmp_path / "test.arrow")
    scenario = [
        ("adam", "adam", {}, 3.0, {0.001: [(0, 0.86, 0.82)]}),
        ("wild", "sgd", {}, 2.0, {5.0: [(0, "diverged"), (1, "diverged")]}),
    ]
    runs = write_scenario(tmp_path / "runs", test_arrow, scenario)
    first_epoch_divergence = runs[-1]  # diverged before any epoch finished: no metrics at all
    run_dir = first_epoch_divergence["run_dir"]
    (run_dir / "metrics.parquet").unlink()
    first_epoch_divergence["evaluation"]["metrics"] = None
    first_epoch_divergence["run"]["epochs_completed"] = first_epoch_divergence["evaluation"]["epochs_completed"] = 0
    (run_dir / "run.json").write_text(json.dumps(first_epoch_divergence["run"]))
    (run_dir / "evaluation.json").write_text(json.dumps(first_epoch_divergence["evaluation"]))
    out = build_report(tmp_path / "out", **build_kwargs(tmp_path, runs, test_arrow))
    parser = TableParser()
    parser.feed(out["html"].read_text())
    rows = _results_rows({"parser": parser})
    assert rows["wild"]["Test accuracy (mean ± std)"][1] == "diverged"
    assert rows["wild"]["Diverged runs"][1] == "2 / 2"
    assert rows["adam"]["Test accuracy (mean ± std)"][1] == "0.8200"  # one seed: no std invented
    # "wild" uses the sgd optimizer, so it is the time reference even under another entry name.
    assert rows["adam"]["Time vs SGD"][1] == "1.50×"
    assert not any(path.name == "lr_sensitivity.png" for path in out["figures"])
    assert 'id="alerts"' not in out["html"].read_text()
    # The only completed run is the best run; the diverged entry never is.
    assert "Best run: adam, lr=0.001, seed 0" in out["html"].read_text()

    # Rebuilding into the same folder leaves no figure of the previous report behind.
    (tmp_path / "out" / "figures" / "lr_sensitivity.png").write_bytes(b"old")
    again = build_report(tmp_path / "out", **build_kwargs(tmp_path, runs, test_arrow))
    assert sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png")) == sorted(
        p.name for p in again["figures"]
    )

    with pytest.raises(ReportError, match="no runs"):
        build_report(tmp_path / "empty", **build_kwargs(tmp_path, [], test_arrow))


def test_report_json_numbers_are_recomputed_exactly_from_summary_parquet_alone(report):
    assert_recomputable_from_summary(report["out"], report["runs"], report["test_arrow"])
