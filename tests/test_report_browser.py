"""The report opens in a real headless Chromium over file:// with every image loaded.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian packages `chromium`, `chromium-driver`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tasks.reporting.report import build_report
from tests.conftest import NEEDS_CHROMIUM
from tests.report_fixtures import build_kwargs, write_scenario, write_test_arrow

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


def test_report_renders_with_every_image_loaded(tmp_path, chromium):
    test_arrow = write_test_arrow(tmp_path / "test.arrow")
    runs = write_scenario(tmp_path / "runs", test_arrow)
    out = build_report(tmp_path / "report", **build_kwargs(tmp_path, runs, test_arrow, alerts=["a test alert"]))

    chromium.get(out["html"].resolve().as_uri())
    chromium.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.images].map(img => img.decode().catch(() => null))).then(() => done());"
    )
    images = chromium.execute_script(
        "return [...document.images].map(img => [img.getAttribute('src'), img.complete, img.naturalWidth]);"
    )
    assert len(images) == len(out["figures"]) == 10
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert broken == [], f"images that did not load: {broken}"

    rows = chromium.execute_script("return document.querySelectorAll('#results tbody tr').length;")
    assert rows == 3
    assert chromium.execute_script("return document.querySelector('#alerts').innerText;").find("a test alert") >= 0

    screenshot = tmp_path / "report.png"
    assert chromium.save_screenshot(str(screenshot))
    with Image.open(screenshot) as image:
        assert image.width >= 800 and image.height >= 600
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20  # not a blank page
    assert screenshot.stat().st_size > 20_000
    if os.environ.get("REPORT_SCREENSHOT_DIR"):  # keep a copy for a human to look at
        shutil.copy(screenshot, Path(os.environ["REPORT_SCREENSHOT_DIR"]) / "report-screenshot.png")
