"""Take docs/images/tensorboard.png: two small synthetic runs, a real TensorBoard on 127.0.0.1, headless Chromium.

    python scripts/tensorboard_screenshot.py [docs/images/tensorboard.png]

Trains two 8-epoch MLP runs (SGD and Adam) on the synthetic data of tests/test_train.py in a temp folder, as
`<tmp>/runs/<name>/seed-0` folders that write their event files the way every run does, starts
`tensorboard --logdir <tmp>/runs --host 127.0.0.1 --port <free port>`, opens its Scalars dashboard in
/usr/bin/chromium (flags as in tests/conftest.py) and saves the window. Needs the test extra (selenium).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.browser import CHROMEDRIVER, CHROMIUM, chromium_flags  # noqa: E402
from tests.test_train import LEARNING_RATES, make_settings, train, write_data  # noqa: E402

RUNS = ("sgd", "adam")
EPOCHS = 8
HANG_LIMIT = 120  # seconds: bounds a hang only


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def poll(condition, what: str):
    deadline = time.monotonic() + HANG_LIMIT
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"gave up after {HANG_LIMIT} s waiting for {what}")


def main(out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    root = Path(tempfile.mkdtemp(prefix="tensorboard-shot-"))
    data = write_data(root)
    for optimizer in RUNS:
        settings = make_settings(optimizer, LEARNING_RATES[optimizer], epochs=EPOCHS)
        train(data, root / "runs" / f"mlp-{optimizer}" / "seed-0", settings)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(root / "runs"), "--host", "127.0.0.1"]
        + ["--port", str(port)],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def runs_loaded() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as reply:
                return len(json.loads(reply.read())) == len(RUNS)
        except OSError:
            return False

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in chromium_flags(root / "chromium-profile", "1400,1000"):
        options.add_argument(flag)
    driver = None
    try:
        poll(runs_loaded, "tensorboard to load both runs")
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(60)
        driver.get(f"http://127.0.0.1:{port}/?pinnedCards=%5B%5D#scalars&tagFilter=accuracy%7Closs")
        # Each chart is drawn on a canvas (or svg) once its data has arrived.
        # Each chart marks its runs' last points with a circle once their data has arrived: 4 charts × 2 runs.
        poll(
            lambda: (
                driver.execute_script("return document.querySelectorAll('vz-line-chart-tooltip').length >= 4")
                and driver.execute_script("return document.querySelectorAll('svg circle').length") >= 4 * len(RUNS)
            ),
            "the scalar charts to draw",
        )
        time.sleep(2)  # the charts animate in; a picture, not a synchronisation
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        if driver is not None:
            driver.quit()
        server.kill()
        server.wait()
    print(f"{out}: screenshot of tensorboard --logdir {root / 'runs'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else REPO_ROOT / "docs" / "images" / "tensorboard.png"))
