"""luigid's own visualiser, read in headless Chromium after a run: short, distinct run rows.

Set FMNIST_SCREENSHOT_DIR to keep the screenshot (the closing note of a change quotes its path).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from PIL import Image

MAX_PARAMETER_TEXT = 120


def _rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#taskTable tbody tr')]"
        ".map(row => [...row.cells].map(cell => cell.innerText.trim()));"
    )


def check_the_visualiser_shows_short_distinct_runs(chromium, port: int, out_dir: Path) -> None:
    """The task list of a finished grid run (sgd at 0.03 and 0.1, adam): every row short, runs apart."""
    chromium.get(f"http://127.0.0.1:{port}/static/visualiser/index.html#tab=tasks&length=100")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_rows(chromium)) < 10:
        time.sleep(0.2)
    rows = _rows(chromium)
    names = [row[1] for row in rows]
    assert names.count("TrainRun") == 3 and names.count("EvaluateRun") == 3, names
    too_long = [row[2] for row in rows if len(row[2]) > MAX_PARAMETER_TEXT]
    assert too_long == []
    train_rows = [row[2] for row in rows if row[1] == "TrainRun"]
    assert len(set(train_rows)) == 3, "each run's row must read apart"
    assert any("learning_rate=0.03" in text for text in train_rows), train_rows
    assert all("run_hash" in text and "schema_version" not in text for text in train_rows), train_rows

    shot = out_dir / "luigid-task-list.png"
    chromium.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.width >= 800 and image.height >= 600
    keep = os.environ.get("FMNIST_SCREENSHOT_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(shot, os.path.join(keep, shot.name))
