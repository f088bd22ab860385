"""The leaderboard page in a real browser: headless Chromium renders the table and loads the curve image.

The test set-up installs Debian's ``chromium`` when it is absent (root + apt-get); the test is skipped, with the
reason, only when that is impossible on the machine.
"""

import os
import shutil
import subprocess

import pytest
from test_leaderboard import make_entry

from wsr_bench.leaderboard import build_leaderboard
from wsr_bench.leaderboard.browser import find_browser, rendered_dom, screenshot
from wsr_bench.leaderboard.entry_files import entry_path, save_entry


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, installed with apt-get when absent (the issue's set-up). The only skip: it is absent and
    cannot be installed on this machine (no apt-get, not root, or apt-get failed), with apt-get's last words."""
    why = ""
    if find_browser() is None:
        if not shutil.which("apt-get"):
            why = "no apt-get (not a Debian-like system)"
        elif not (hasattr(os, "geteuid") and os.geteuid() == 0):
            why = "apt-get needs root"
        else:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=False)
            done = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True,
                                  text=True, timeout=900, check=False)
            why = f"apt-get install chromium exited {done.returncode}: {done.stderr.strip()[-300:]}"
    path = find_browser()
    if path is None:
        pytest.skip(f"no Chromium and it could not be installed here ({why})")
    return path


@pytest.fixture
def page(tmp_path):
    root = tmp_path / "lb"
    for entry in (make_entry("WsrNet-Basic"), make_entry("RACL", acc=(0.6, 0.55, 0.3, 0.1, 0.05))):
        save_entry(entry, entry_path(root, entry))
    return build_leaderboard(root).index


def test_page_shows_table_and_loads_the_curves(chromium, page):
    dom = rendered_dom(page)
    assert '<table class="leaderboard"' in dom
    assert "WsrNet-Basic" in dom and "RACL" in dom
    assert 'data-loaded="true"' in dom, "curves.png did not load in the browser"


def test_screenshot(chromium, page, tmp_path):
    out = screenshot(page, tmp_path / "shot.png", width=900, height=700)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


#: Measures the first table after layout: does the page itself overflow, does the table scroll in its box, does the
#: model column stay put when the strengths scroll, is the recipe cell one short line.
LAYOUT_PROBE = """<script>
window.addEventListener("load", function () {
  var table = document.querySelector("table.leaderboard"), box = table.parentElement;
  var model = table.tBodies[0].rows[0].cells[0], recipe = table.querySelector("td.recipe");
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var first_eps_left = heads.filter(function (h) { return /^[0-9]/.test(h.textContent); })[0]
    .getBoundingClientRect().left;
  var before = model.getBoundingClientRect().left;
  box.scrollLeft = box.scrollWidth;
  var moved = Math.abs(model.getBoundingClientRect().left - before);
  document.body.setAttribute("data-layout", JSON.stringify({
    page_overflows: document.documentElement.scrollWidth > window.innerWidth,
    table_scrolls: box.scrollWidth > box.clientWidth, scrolled: box.scrollLeft > 0, model_moved: moved,
    recipe_text: recipe.textContent, recipe_title: recipe.title,
    recipe_wraps: getComputedStyle(recipe).whiteSpace !== "nowrap", width: window.innerWidth,
    first_eps_left: first_eps_left}));
});
</script>"""


def test_the_zoo_page_reads_at_1280_pixels(chromium, tmp_path):
    """The committed leaderboard at laptop width: the page does not run off the right edge (the table scrolls in its
    own box), the model column stays in place while the strengths scroll, the recipe is one short line with the
    whole recipe on hover; and a screenshot renders."""
    import html
    import json
    import shutil as sh
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "leaderboard"
    page = tmp_path / "index.html"
    sh.copy(root / "curves.png", tmp_path / "curves.png")
    page.write_text((root / "index.html").read_text().replace("</body>", LAYOUT_PROBE + "</body>"))
    dom = rendered_dom(page, width=1280, height=900)
    found = dom.split('data-layout="', 1)[1].split('"', 1)[0]
    layout = json.loads(html.unescape(found))
    assert layout["width"] <= 1280 and not layout["page_overflows"]
    assert layout["table_scrolls"] and layout["scrolled"] and layout["model_moved"] < 1
    assert layout["first_eps_left"] < 0.55 * layout["width"]  # the strengths start on screen, not past the text
    assert len(layout["recipe_text"]) <= 25 and layout["recipe_text"].endswith("…") and not layout["recipe_wraps"]
    assert layout["recipe_title"].startswith(layout["recipe_text"][:-1]) and len(layout["recipe_title"]) > 60
    shot = screenshot(page, tmp_path / "zoo_1280.png", width=1280, height=900)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
