"""Headless Chromium's flags, one list for the suite's browser fixture and scripts/tensorboard_screenshot.py.

As root, with no network beyond the registries: no sandbox, no GPU, and none of Chromium's background
connections (they are refused here, many at a time), with a fresh profile folder each time.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium_flags(profile: Path, window: str) -> list[str]:
    """The command-line flags of one headless Chromium with its own profile folder and window size (WxH)."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--window-size={window}",
        f"--user-data-dir={profile}",
    ]
