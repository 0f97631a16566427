"""The report's matplotlib figures, each written as a PNG atomically.

Every function takes plain numbers that the report has already read from evaluation.json or
metrics.parquet, so a figure never computes a result of its own. Figures are built with the
object-oriented `Figure` API on the Agg backend: no pyplot global state, no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything can import pyplot: reports are built on headless machines

import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from tasks.core.storage import atomic_path

DPI = 100
CURVE_PANELS = (
    ("train_loss", "Training loss"),
    ("val_loss", "Validation loss"),
    ("train_accuracy", "Training accuracy"),
    ("val_accuracy", "Validation accuracy"),
)
DIVERGED_COLOR = "#d62728"


def save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, format="png", dpi=DPI)
    return Path(path)


def learning_curves(path: Path, series: Sequence[dict]) -> Path:
    """2×2 panels of loss and accuracy against epoch; one line per entry, with a ±std band over seeds.

    Each series is {"label", "epochs", <panel key>: (mean array, std array)} for every CURVE_PANELS key.
    """
    figure = Figure(figsize=(11, 7.5))
    axes = figure.subplots(2, 2, sharex=True)
    for axis, (key, heading) in zip(axes.flat, CURVE_PANELS):
        for index, line in enumerate(series):
            color = f"C{index % 10}"
            epochs = np.asarray(line["epochs"])
            mean, std = (np.asarray(values, dtype=float) for values in line[key])
            axis.plot(epochs, mean, color=color, marker="o", markersize=3, label=line["label"])
            axis.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        axis.set_title(heading)
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("epoch")
    if series:  # an experiment whose every run diverged at once has no curve to label
        axes[0, 0].legend(fontsize="small")
    return save(figure, path)


def accuracy_bars(
    path: Path, labels: Sequence[str], means: Sequence[float | None], stds: Sequence[float | None]
) -> Path:
    """Test accuracy per entry with std-over-seeds error bars; a diverged entry gets a label, not a bar."""
    figure = Figure(figsize=(max(6.0, 1.3 * len(labels) + 2), 4.5))
    axis = figure.subplots()
    positions = np.arange(len(labels))
    for position, mean, std in zip(positions, means, stds):
        if mean is None:
            axis.text(
                position,
                0.02,
                "diverged",
                color=DIVERGED_COLOR,
                ha="center",
                rotation=90,
                transform=blended_transform_factory(axis.transData, axis.transAxes),
            )
            continue
        axis.bar(position, mean, color="C0", yerr=std if std is not None else None, capsize=6)
        axis.annotate(
            f"{mean:.4f}",
            (position, mean + (std or 0.0)),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
        )
    finite = [m for m in means if m is not None]
    low = min(finite) if finite else 0.0
    axis.set_ylim(max(0.0, low - 0.1), 1.0)
    axis.set_xticks(positions, labels, rotation=20, ha="right")
    axis.set_ylabel("test accuracy")
    axis.set_title("Test accuracy at the best grid point (mean ± std over seeds)")
    axis.grid(axis="y", alpha=0.3)
    return save(figure, path)


def lr_sensitivity(path: Path, lines: Sequence[dict]) -> Path:
    """Validation accuracy against learning rate (log x), ±std band over seeds, the chosen rate starred.

    Each line (tasks.reporting.sensitivity.sensitivity_lines) is {"label", "learning_rates", "mean", "std" (None
    where unknown), "diverged_learning_rates" (one per diverged run), "chosen_learning_rate"}. Diverged
    runs are red × on the bottom axis: a divergence is not an accuracy of zero.
    """
    figure = Figure(figsize=(8, 5))
    axis = figure.subplots()
    bottom = blended_transform_factory(axis.transData, axis.transAxes)
    diverged_labelled = chosen_labelled = False
    for index, line in enumerate(lines):
        color = f"C{index % 10}"
        rates = np.asarray(line["learning_rates"], dtype=float)
        mean = np.array([np.nan if value is None else value for value in line["mean"]], dtype=float)
        std = np.array([np.nan if value is None else value for value in line["std"]], dtype=float)
        present = np.isfinite(mean)
        axis.plot(rates[present], mean[present], marker="o", color=color, label=line["label"])
        axis.fill_between(rates, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
        chosen = np.flatnonzero(np.isclose(rates, line["chosen_learning_rate"], rtol=1e-9))
        if chosen.size and present[chosen[0]]:
            axis.plot(
                rates[chosen[0]],
                mean[chosen[0]],
                marker="*",
                markersize=17,
                color=color,
                markeredgecolor="black",
                linestyle="none",
                label=None if chosen_labelled else "chosen",
            )
            chosen_labelled = True
        for rate in line["diverged_learning_rates"]:
            axis.plot(
                [rate],
                [0.03],
                transform=bottom,
                marker="x",
                markersize=11,
                markeredgewidth=2.5,
                color=DIVERGED_COLOR,
                linestyle="none",
                clip_on=False,
                label=None if diverged_labelled else "diverged",
            )
            diverged_labelled = True
    axis.set_xscale("log")
    axis.set_xlabel("learning rate (log scale)")
    axis.set_ylabel("validation accuracy (mean ± std over seeds)")
    axis.set_title("Learning-rate sensitivity (validation only)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    return save(figure, path)


def confusion_matrix(path: Path, matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> Path:
    """Counts with true class on rows and predicted class on columns, each cell annotated."""
    counts = np.asarray(matrix, dtype=np.int64)
    figure = Figure(figsize=(8.5, 7.5))
    axis = figure.subplots()
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    threshold = counts.max() / 2 if counts.size else 0
    for row in range(counts.shape[0]):
        for column in range(counts.shape[1]):
            axis.text(
                column,
                row,
                str(counts[row, column]),
                ha="center",
                va="center",
                fontsize="small",
                color="white" if counts[row, column] > threshold else "black",
            )
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title)
    return save(figure, path)


def per_class_accuracy(path: Path, accuracies: Sequence[float | None], class_names: Sequence[str], title: str) -> Path:
    """Horizontal bars of accuracy per true class; a class absent from the test set is labelled n/a."""
    figure = Figure(figsize=(8, 5))
    axis = figure.subplots()
    positions = np.arange(len(class_names))
    values = [value if value is not None else 0.0 for value in accuracies]
    axis.barh(positions, values, color="C2")
    for position, value in zip(positions, accuracies):
        axis.text(
            min(value or 0.0, 1.0) + 0.01,
            position,
            "n/a" if value is None else f"{value:.3f}",
            va="center",
            fontsize="small",
        )
    axis.set_yticks(positions, class_names)
    axis.invert_yaxis()
    axis.set_xlim(0, 1.12)
    axis.set_xlabel("test accuracy")
    axis.set_title(title)
    axis.grid(axis="x", alpha=0.3)
    return save(figure, path)


def image_grid(
    path: Path, images: np.ndarray, titles: Sequence[str], columns: int = 5, heading: str | None = None
) -> Path:
    """28×28 grey images in a grid, each with its title; an empty list gives a labelled blank figure.

    The grid is one mosaic in one axes: 25 separate subplots cost seconds per figure in matplotlib.
    """
    count, side, gap, title_room = len(titles), 28, 3, 6  # in image pixels
    rows = max(1, -(-count // columns))
    cell_width, cell_height = side + gap, side + gap + title_room
    mosaic = np.ma.array(np.zeros((rows * cell_height, columns * cell_width)), mask=True)  # masked = blank
    width = 2.1 * columns  # inches; the height follows the mosaic's aspect so no margin is wasted
    figure = Figure(figsize=(width, width * mosaic.shape[0] / mosaic.shape[1] + (0.5 if heading else 0.1)))
    axis = figure.subplots()
    for index in range(count):
        top, left = (index // columns) * cell_height + title_room, (index % columns) * cell_width
        mosaic[top : top + side, left : left + side] = np.asarray(images[index], dtype=float).reshape(side, side)
        axis.text(left + side / 2, top - 1.5, titles[index], ha="center", va="bottom", fontsize=9)
    axis.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    axis.set_axis_off()
    if count == 0:
        axis.text(0.5, 0.5, "none", ha="center", va="center", transform=axis.transAxes)
    if heading:
        figure.suptitle(heading)
    return save(figure, path)


def accuracy_trend(path: Path, dates: Sequence[str], series: dict[str, Sequence[float | None]]) -> Path:
    """Test accuracy per optimizer over the nights; a missing value (diverged or absent) is a gap."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot(1, 1, 1)
    positions = np.arange(len(dates))
    for name, values in series.items():
        points = np.array([np.nan if value is None else value for value in values], dtype=float)
        axes.plot(positions, points, marker="o", label=name)
    axes.set_xticks(positions)
    axes.set_xticklabels(dates, rotation=45, ha="right")
    axes.set_ylabel("test accuracy (mean over seeds)")
    axes.set_title("Nightly test accuracy")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return save(figure, path)
