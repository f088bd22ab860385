"""Render a leaderboard page in headless Chromium: a screenshot for docs, the post-JavaScript DOM for tests.

Uses Debian's ``chromium`` (or ``chromium-browser``/``google-chrome`` when that is what the machine has), started
with no network activity of its own: this project runs offline.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--allow-file-access-from-files")


class BrowserError(RuntimeError):
    """No headless browser is available, or it failed to render the page."""


def find_browser() -> str | None:
    """Path of the first Chromium-family browser on PATH, or ``None``."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = find_browser()
    if browser is None:
        raise BrowserError("no Chromium found; install Debian's 'chromium' package (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="wsr-chromium-") as profile:
        try:
            proc = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"chromium did not finish within {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise BrowserError(f"chromium exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc


def screenshot(page: str | Path, out: str | Path, width: int = 1280, height: int = 1400,
               timeout: float = 90.0) -> Path:
    """Save a PNG screenshot of the local HTML file ``page`` (scripts and images loaded first)."""
    page, out = Path(page).resolve(), Path(out).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"page {page} not found")
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={out}", f"--window-size={width},{height}", "--virtual-time-budget=5000",
          page.as_uri()], timeout)
    if not out.is_file() or out.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot to {out}")
    return out


def rendered_dom(page: str | Path, timeout: float = 90.0, width: int = 1280, height: int = 1400) -> str:
    """The page's DOM after its scripts ran and its images loaded (``--dump-dom``), laid out in a ``width`` x
    ``height`` window (what a layout check reads)."""
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"page {page} not found")
    return _run([f"--window-size={width},{height}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                timeout).stdout
