"""Published anchors (tasks.reporting.anchors): compared only on the same problem, saying what differs, and
for P1 what this comparison's verdicts make of the paper's order."""

from __future__ import annotations

from tasks.reporting import anchors


def test_anchors_match_only_the_same_problem_and_say_what_differs():
    original = anchors.ANCHORS[0]
    assert anchors.matches(original, "mlp", {"hidden": [128, 128]}, 20, 64) == []
    assert anchors.matches(original, "mlp", {"hidden": [128, 128]}, 4, 64) == ["4 epochs, not 20"]
    assert anchors.matches(original, "cnn_2c2d", {}, 20, 64) == ["model cnn_2c2d, not mlp"]
    settings = {
        "model": {"name": "mlp", "params": {"hidden": [128, 128]}},
        "training": {"epochs": 20, "batch_size": 64},
    }
    rows = anchors.anchor_rows(settings, [("adam-fast", "adam"), ("sgd", "sgd")], {"adam-fast": 0.861, "sgd": 0.85})
    assert rows[0]["ours"] == 0.861 and rows[0]["ours_text"] == "adam-fast, mean over seeds"
    assert rows[1]["ours"] is None and "hidden layers 128-128, not 256-128-100" in rows[1]["ours_text"]
    assert rows[2]["ours"] is None and "model mlp, not cnn_2c2d" in rows[2]["ours_text"]
    # Dissecting Adam's P1 is its own network, cnn_p1, at batch 64 (not DeepOBS's 2c2d).
    assert all(row["ours"] is None and "model mlp, not cnn_p1" in row["ours_text"] for row in rows[3:])
    p1 = [anchor for anchor in anchors.ANCHORS if "P1" in anchor.problem]
    assert len(p1) == 4 and all(anchors.matches(anchor, "cnn_p1", {}, None, 64, 6000) == [] for anchor in p1)
    assert anchors.matches(p1[0], "cnn_p1", {}, None, 128, 6000) == ["batch 128, not 64"]
    assert anchors.matches(p1[0], "cnn_p1", {}, None, 64, 3000) == ["3,000 steps, not 6,000 steps"]
    assert anchors.matches(p1[0], "cnn_p1", {}, 20, 64) == ["20 epochs, not 6,000 steps"]


def test_p1_anchors_say_what_the_verdicts_make_of_the_papers_order():
    settings = {"model": {"name": "cnn_p1", "params": {}}, "training": {"steps": 6000, "batch_size": 64}}
    entries = [("m-sgd", "momentum"), ("mssd", "mssd"), ("msvag", "msvag"), ("adam", "adam")]
    means = {"m-sgd": 0.91, "mssd": 0.914, "msvag": 0.915, "adam": 0.92}

    def pair(a, b, kind, winner=None):
        loser = {a, b}.difference({winner}).pop() if winner else None
        return {"a": a, "b": b, "n_seeds": 3, "verdict": {"kind": kind, "winner": winner, "loser": loser}}

    pairs = [
        pair("mssd", "adam", "beats", "adam"),  # the paper's order: Adam above M-SSD
        pair("mssd", "msvag", "beats", "msvag"),  # the reverse of M-SSD above M-SVAG
        pair("m-sgd", "msvag", "undecided"),
    ]
    rows = {row["problem"]: row for row in anchors.anchor_rows(settings, entries, means, pairs)}
    text = {
        label: rows[f"Fashion-MNIST CNN (P1), {label}"]["ours_text"] for label in ("Adam", "M-SSD", "M-SVAG", "M-SGD")
    }
    assert text["Adam"] == "adam, mean over seeds; the source ranks it above mssd: adam beats mssd here (agrees)"
    assert (
        text["M-SSD"] == "mssd, mean over seeds; the source ranks it above msvag: msvag beats mssd here (the reverse)"
    )
    assert text["M-SVAG"] == "msvag, mean over seeds; the source ranks it above m-sgd: undecided here at 3 seeds"
    assert text["M-SGD"] == "m-sgd, mean over seeds"  # last in the paper's order
