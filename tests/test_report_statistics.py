"""The report answers "which optimizer is better?" with numbers anyone can recompute from summary.parquet.

Three optimizers × five paired seeds (tests/report_fixtures.py STATS_SCENARIO): adam, tuned on seeds 0
and 1, beats momentum and sgd on every seed; momentum and sgd cannot be told apart; sgd diverged once.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from markupsafe import escape
from PIL import Image

from tasks.core.errors import ReportError
from tasks.reporting.report import build_report
from tasks.reporting.seedplan import pilot_rows, seed_plan
from tests.report_fixtures import (
    STATS_SCENARIO,
    STATS_TUNING,
    TEST_ROWS,
    TableParser,
    assert_recomputable_from_summary,
    build_kwargs,
    run_correctness,
    write_scenario,
    write_test_arrow,
)


@pytest.fixture(scope="module")
def stats_report(tmp_path_factory):
    """Five paired seeds (tests/report_fixtures.py STATS_SCENARIO): enough for intervals and tests."""
    root = tmp_path_factory.mktemp("stats")
    test_arrow = write_test_arrow(root / "test.arrow")
    runs = write_scenario(root / "runs", test_arrow, STATS_SCENARIO)
    # A ±0.2-point margin (not the default 0.5), which these scores were written around.
    kwargs = build_kwargs(root, runs, test_arrow, tuning=STATS_TUNING, targets=(0.85, 0.88), equivalence_margin=0.002)
    out = build_report(root / "out", **kwargs)
    parser = TableParser()
    parser.feed(out["html"].read_text())
    return {"out": out, "runs": runs, "html": out["html"].read_text(), "parser": parser, "test_arrow": test_arrow}


def test_report_json_numbers_are_recomputed_exactly_from_summary_parquet_alone(stats_report):
    assert_recomputable_from_summary(stats_report["out"], stats_report["runs"], stats_report["test_arrow"])


def test_which_optimizer_is_better_comes_first_and_answers_with_the_data(stats_report):
    html, out, tables = stats_report["html"], stats_report["out"], stats_report["parser"].tables
    order = ["which-is-better", "time-to-target", "anchors-heading", "measured", "results-heading"]
    assert [html.index(f'id="{heading}"') for heading in order] == sorted(html.index(f'id="{h}"') for h in order)
    pairs = {(pair["a"], pair["b"]): pair for pair in out["statistics"]["pairs"]}
    assert pairs["adam", "momentum"]["significant"] and pairs["adam", "sgd"]["significant"]
    assert pairs["adam", "momentum"]["sentence"].startswith("adam beats momentum by 2.00 points [")
    assert pairs["momentum", "sgd"]["sentence"].startswith("undecided between momentum and sgd: momentum − sgd = ")
    assert "more seeds (" in pairs["momentum", "sgd"]["sentence"] and pairs["momentum", "sgd"]["seeds_needed"] > 4
    assert [pair["verdict"]["kind"] for pair in pairs.values()] == ["beats", "beats", "undecided"]
    assert "Equivalence margin: <strong>±0.20 pts</strong>" in html and out["statistics"]["equivalence_margin"] == 0.002
    assert "; sgd's 1 run(s) without a test accuracy left out)." in pairs["adam", "sgd"]["sentence"]
    for pair in pairs.values():
        verdict = pair["verdict"]["kind"]
        assert (
            f'<li data-a="{pair["a"]}" data-b="{pair["b"]}" data-verdict="{verdict}">{escape(pair["sentence"])}</li>'
            in html
        )
    optimizer_rows = {row[0][1]: [text for _, text in row] for row in tables["optimizer-statistics"][1:]}
    adam = out["statistics"]["optimizers"]["adam"]
    assert optimizer_rows["adam"] == [
        "adam",
        "5",
        "0",
        f"{adam['mean']:.4f}",
        f"[{adam['ci_low']:.4f}, {adam['ci_high']:.4f}]",
    ]
    assert optimizer_rows["sgd"][1:3] == ["4", "1"]
    variance = {row[0][1]: [text for _, text in row] for row in tables["variance"][1:]}
    total = (adam["se_seeds"] ** 2 + adam["se_test"] ** 2) ** 0.5
    assert variance["adam"] == [
        "adam",
        "5",
        f"{100 * adam['sd_seeds']:.2f} pts",
        f"{100 * adam['se_seeds']:.2f} pts",
        f"{100 * adam['se_test']:.2f} pts",
        f"{100 * total:.2f} pts",
        f"{adam['se_test'] ** 2 / total**2:.0%}",
    ]
    # Every run's predictions.parquet is read, so the intervals include the test sample, and say so.
    assert (
        adam["se_test"] > 0
        and "they include the noise of <strong>seeds (initialization, data order) and test images" in html
    )
    pair_rows = {(row[0][1], row[1][1]): [text for _, text in row] for row in tables["pairs"][1:]}
    low, high = (100 * pairs["adam", "momentum"][key] for key in ("simultaneous_ci_low", "simultaneous_ci_high"))
    assert pair_rows["adam", "momentum"][5] == f"[{low:.2f}, {high:.2f}]"
    assert pair_rows["adam", "momentum"][11:] == ["beats: adam", "—"]
    assert pair_rows["momentum", "sgd"][11:] == ["undecided", str(pairs["momentum", "sgd"]["seeds_needed"])]
    assert len(tables["pairs"]) == 4 and len(tables["anchors"]) == 8
    anchors = {row[2][1]: row[4][1] for row in tables["anchors"][1:]}
    assert anchors["0.8592"] == "not comparable: 4 epochs, not 20"
    times = {row[0][1]: [text for _, text in row[1:]] for row in tables["time-to-target-table"][1:]}
    assert times["adam"] == ["5 / 5", "2", "6.0 s", "5 / 5", "2", "6.0 s"]
    assert times["sgd"][3] == "0 / 5" and times["sgd"][4:] == ["not reached", "not reached"]
    for text in ("final checkpoint", "running averages", "wall time of training <em>and</em> validation"):
        assert text in html
    for name in ("forest_plot", "pairwise_matrix", "performance_profile", "lr_sensitivity"):
        path = out["html"].parent / "figures" / f"{name}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 400, path
        assert f'src="figures/{name}.png"' in html


def test_a_tuned_entry_shows_its_grid_the_chosen_rate_and_the_rule(stats_report, tmp_path):
    html = stats_report["html"]
    assert (
        "<strong>adam</strong>: learning rate 0.001 chosen (tuned on seeds 0, 1): " + STATS_TUNING["adam"]["rule"]
        in html
    )
    runs = stats_report["runs"]
    test_arrow = write_test_arrow(tmp_path / "test.arrow")
    wrong = {"adam": {**STATS_TUNING["adam"], "chosen_learning_rate": 0.01}}
    with pytest.raises(
        ReportError, match=r"tuning\['adam'\]: chosen_learning_rate 0.01, but the runs of 'adam' use 0.001"
    ):
        build_report(tmp_path / "out", **build_kwargs(tmp_path, runs, test_arrow, tuning=wrong))
    with pytest.raises(ReportError, match="targets: expected one or more distinct"):
        build_report(tmp_path / "out", **build_kwargs(tmp_path, runs, test_arrow, targets=(0.85, 1.5)))


def test_a_report_with_per_example_correctness_and_a_seed_plan_names_every_source_and_each_pairs_seeds(
    stats_report, tmp_path
):
    runs, test_arrow = stats_report["runs"], stats_report["test_arrow"]
    rows = pq.read_table(stats_report["out"]["summary"]).to_pylist()
    # The correctness the report reads from each run's predictions.parquet: write_run gets its first images wrong.
    vectors = run_correctness(runs, test_arrow, rows)
    for row in rows:
        if (row["name"], row["seed"]) in vectors:
            wrong = round((1 - row["test_accuracy"]) * TEST_ROWS)
            assert vectors[row["name"], row["seed"]].tolist() == [False] * wrong + [True] * (TEST_ROWS - wrong)
    plan = seed_plan(pilot_rows(rows, 3), margin=0.002, max_seeds=5, correctness=vectors)
    out = build_report(
        tmp_path / "out",
        **build_kwargs(
            tmp_path, runs, test_arrow, tuning=STATS_TUNING, split_varies=True, seed_plan=plan, equivalence_margin=0.002
        ),
    )
    assert_recomputable_from_summary(out, runs, test_arrow, split_varies=True, plan=plan)
    html = out["html"].read_text()
    parser = TableParser()
    parser.feed(html)
    assert "seeds (initialization, data order, validation split) and test images" in html
    variance = {row[0][1]: [text for _, text in row] for row in parser.tables["variance"][1:]}
    adam = out["statistics"]["optimizers"]["adam"]
    assert (
        variance["adam"][4] == f"{100 * adam['se_test']:.2f} pts" and adam["se_test"] > 0.005
    )  # 2,000 images: about the binomial SE
    header = [text for _, text in parser.tables["pairs"][0]]
    assert header[-1] == "Seeds planned, and why"
    for row, pair in zip(parser.tables["pairs"][1:], out["statistics"]["pairs"]):
        assert row[-1][1] == f"{pair['seed_plan']['seeds']}: {pair['seed_plan']['reason']}"
    assert out["equivalence_margin"] == 0.002


def test_a_tuned_entry_shows_its_selection_stability_and_whether_its_grid_was_extended(stats_report):
    # STATS_TUNING predates extension and halving: its line still gets stability, recomputed from the grid.
    html, markdown = stats_report["html"], stats_report["out"]["markdown"].read_text()
    for text in (html, markdown):
        assert "Selection stability 1.00: resampling tuning seeds 0, 1 with replacement picks this point 100%" in text
        assert "Grid extension off (tuning.extend is 0)." in text
