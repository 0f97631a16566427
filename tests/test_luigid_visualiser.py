"""luigid's own visualiser, in headless Chromium, after a smoke run: short, distinct run rows.

Set FMNIST_SCREENSHOT_DIR to keep the screenshot (the closing note of a change quotes its path).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
import yaml
from PIL import Image

from tests.conftest import NEEDS_CHROMIUM, REPO_ROOT
from tests.test_scheduler import _luigi, _worker_env, luigid  # noqa: F401 - luigid is a fixture

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]
MAX_PARAMETER_TEXT = 120


def _rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#taskTable tbody tr')]"
        ".map(row => [...row.cells].map(cell => cell.innerText.trim()));"
    )


def test_the_task_list_shows_short_distinct_runs(tmp_path, luigid, synthetic_raw, chromium):  # noqa: F811
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    raw["training"]["epochs"] = 1
    # Two learning rates of one optimizer: their rows must read apart.
    raw["optimizers"] = [{"name": "sgd", "learning_rate": [0.03, 0.1]}, {"name": "adam", "learning_rate": 0.001}]
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(raw))
    worker = _luigi(
        ["FullReport", "--config", str(config), "--workers", "2"], _worker_env(tmp_path, luigid, synthetic_raw)
    )
    output, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, output[-3000:]

    chromium.get(f"http://127.0.0.1:{luigid['port']}/static/visualiser/index.html#tab=tasks&length=100")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_rows(chromium)) < 10:
        time.sleep(0.2)
    rows = _rows(chromium)
    names = [row[1] for row in rows]
    assert names.count("TrainRun") == 3 and names.count("EvaluateRun") == 3, names
    details = {row[1]: [] for row in rows}
    for row in rows:
        details[row[1]].append(row[2])
    too_long = [text for row in rows for text in [row[2]] if len(text) > MAX_PARAMETER_TEXT]
    assert too_long == []
    train_rows = details["TrainRun"]
    assert len(set(train_rows)) == 3, "each run's row must read apart"
    assert any("learning_rate=0.03" in text or "0.03" in text for text in train_rows), train_rows
    assert all("run_hash" in text and "settings" not in text for text in train_rows), train_rows

    shot = tmp_path / "luigid-task-list.png"
    chromium.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.width >= 800 and image.height >= 600
    keep = os.environ.get("FMNIST_SCREENSHOT_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(shot, os.path.join(keep, shot.name))
