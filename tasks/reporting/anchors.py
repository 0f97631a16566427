"""Published reference numbers for Fashion-MNIST test accuracy, each with its source, and when ours compare.

A number of ours is put beside an anchor only when the problem matches: the same model (and hidden
sizes for an MLP), and the same training budget where the source states one, with the anchor's
optimizer among this experiment's entries. Otherwise the report says what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Anchor:
    source: str
    problem: str  # the setting in the source's words
    value: float  # its test accuracy
    model: str  # our registry model name for the source's model
    hidden: tuple[int, ...] | None = None  # MLP hidden sizes
    epochs: int | None = None  # None: the source's budget is not compared
    batch_size: int | None = None
    steps: int | None = None  # a budget in optimizer steps (training.steps)
    value_high: float | None = None  # the top of a published range
    optimizers: tuple[str, ...] | None = None  # our registry names; ours = the best such entry (None: any)
    note: str = ""
    ranked_above: str | None = None  # the registry name the source ranks next below this one (P1's order)


ANCHORS: tuple[Anchor, ...] = (
    Anchor(
        "the original project this pipeline reimplements",
        "MLP 784-128-128-10 (ReLU), Adam, 20 epochs, raw pixels",
        0.8592,
        "mlp",
        hidden=(128, 128),
        epochs=20,
        optimizers=("adam",),
        note="pixels are scaled to [0, 1] here; no augmentation in either",
    ),
    Anchor(
        "Fashion-MNIST README, benchmark table (zalandoresearch/fashion-mnist)",
        "MLP 256-128-100, no preprocessing",
        0.8833,
        "mlp",
        hidden=(256, 128, 100),
        note="its optimizer and budget are not stated there; compared with this experiment's best entry",
    ),
    Anchor(
        "DeepOBS baselines (Schneider, Balles & Hennig 2019), fmnist_2c2d",
        "2 conv + 2 dense CNN, 100 epochs, batch 128, tuned SGD, Momentum and Adam",
        0.922,
        "cnn_2c2d",
        value_high=0.924,
        epochs=100,
        batch_size=128,
        optimizers=("sgd", "momentum", "adam"),
        note="the baselines span this range; compared with the best of this experiment's sgd, momentum and adam",
    ),
    *(
        Anchor(
            "Balles & Hennig 2018, Dissecting Adam (arXiv:1705.07774), problem P1, read from its figure",
            f"Fashion-MNIST CNN (P1), {label}",
            value,
            "cnn_p1",
            batch_size=64,
            steps=6000,
            optimizers=(optimizer,),
            note="values read by eye from a plot (±0.002)",
            ranked_above=below,
        )
        for label, optimizer, value, below in (
            ("Adam", "adam", 0.918, "mssd"),
            ("M-SSD", "mssd", 0.915, "msvag"),
            ("M-SVAG", "msvag", 0.910, "momentum"),
            ("M-SGD", "momentum", 0.908, None),
        )
    ),
)


def matches(
    anchor: Anchor,
    model_name: str,
    model_params: Mapping[str, Any],
    epochs: int | None,
    batch_size: int | None,
    steps: int | None = None,
) -> list[str]:
    """What differs between the anchor's problem and this experiment's; [] when they match."""
    differences = []
    if model_name != anchor.model:
        differences.append(f"model {model_name}, not {anchor.model}")
    elif anchor.hidden is not None:
        hidden = tuple(int(units) for units in model_params.get("hidden", ()))
        if hidden != anchor.hidden:
            differences.append(f"hidden layers {'-'.join(map(str, hidden))}, not {'-'.join(map(str, anchor.hidden))}")
    if anchor.epochs is not None and epochs != anchor.epochs:
        differences.append(f"{epochs} epochs, not {anchor.epochs}")
    if anchor.batch_size is not None and batch_size != anchor.batch_size:
        differences.append(f"batch {batch_size}, not {anchor.batch_size}")
    if anchor.steps is not None and steps != anchor.steps:
        budget = f"{steps:,} steps" if steps is not None else f"{epochs} epochs"
        differences.append(f"{budget}, not {anchor.steps:,} steps")
    return differences


def anchor_rows(
    settings: Mapping[str, Any] | None,
    entries: Sequence[tuple[str, str]],
    means: Mapping[str, float | None],
    pairs: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One row per anchor: source, problem, value, ours (or None) and what ours is or why it is absent.

    `settings` is a run's settings from run.json (model and training); `entries` lists (entry name,
    registry optimizer name) in config order; `means` is each entry's mean test accuracy; `pairs` are the
    report's pairs with their verdicts, so that a ranked anchor (P1's order) says what this comparison
    decided about the source's claim that it beats the next one.
    """
    rows = []
    chosen: dict[str, str] = {}  # registry name of a compared single-optimizer anchor → our entry
    model = (settings or {}).get("model") or {}
    training = (settings or {}).get("training") or {}
    for anchor in ANCHORS:
        row = {
            "source": anchor.source,
            "problem": anchor.problem,
            "value": anchor.value,
            "value_high": anchor.value_high,
            "note": anchor.note,
        }
        if not model:
            rows.append({**row, "ours": None, "ours_text": "the runs' run.json records no model settings"})
            continue
        differences = matches(
            anchor,
            model.get("name", "?"),
            model.get("params") or {},
            training.get("epochs"),
            training.get("batch_size"),
            training.get("steps"),
        )
        candidates = [
            name for name, optimizer in entries if anchor.optimizers is None or optimizer in anchor.optimizers
        ]
        scored = [name for name in candidates if means.get(name) is not None]
        if differences:
            rows.append({**row, "ours": None, "ours_text": "not comparable: " + "; ".join(differences)})
        elif not candidates:
            wanted = " or ".join(anchor.optimizers or ())
            rows.append({**row, "ours": None, "ours_text": f"no {wanted} entry in this experiment"})
        elif not scored:
            rows.append({**row, "ours": None, "ours_text": f"{candidates[0]}: no test accuracy (diverged)"})
        else:
            best = max(scored, key=lambda name: means[name])  # first on ties: config order
            rows.append({**row, "ours": means[best], "ours_text": f"{best}, mean over seeds"})
            if anchor.optimizers is not None and len(anchor.optimizers) == 1:
                chosen[anchor.optimizers[0]] = best
    for anchor, row in zip(ANCHORS, rows):
        mine, theirs = chosen.get((anchor.optimizers or ("",))[0]), chosen.get(anchor.ranked_above or "")
        if mine and theirs and row["ours"] is not None:
            row["ours_text"] += f"; the source ranks it above {theirs}: {ranking_verdict(mine, theirs, pairs)}"
    return rows


def ranking_verdict(mine: str, theirs: str, pairs: Sequence[Mapping[str, Any]]) -> str:
    """This comparison's verdict on "`mine` beats `theirs`", in a few words."""
    for pair in pairs:
        if {pair.get("a"), pair.get("b")} == {mine, theirs}:
            verdict = pair.get("verdict") or {}
            kind = verdict.get("kind")
            if kind == "beats":
                agrees = "agrees" if verdict.get("winner") == mine else "the reverse"
                return f"{verdict.get('winner')} beats {verdict.get('loser')} here ({agrees})"
            if kind == "equivalent":
                return "equivalent here, within the margin"
            return f"undecided here at {pair.get('n_seeds', '?')} seeds"
    return "not compared here"
