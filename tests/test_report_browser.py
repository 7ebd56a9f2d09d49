"""report.html in a real headless browser (Debian's chromium): it renders, every figure is embedded
as a data: URI and painted, the equations are MathML, and the page fetches nothing from the network.

Skipped, with the reason, where chromium is not installed (.ci/run installs it before make test)."""

import hashlib
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("matplotlib")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

# Requests the browser makes for itself (time, updates, account check, spell-check dictionary),
# whatever page it shows: not the page's doing. Anything else in the net log is.
BROWSER_OWN = ("http://clients2.google.com/time/", "https://clients2.google.com/time/",
               "http://update.googleapis.com/service/update2", "https://update.googleapis.com/service/update2",
               "https://accounts.google.com/ListAccounts", "https://redirector.gvt1.com/edgedl/chrome/dict/")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--disable-extensions"]


def _chromium(tmp_path, page, *flags):
    """Run chromium on ``page`` with a fresh profile; returns (stdout, URLs in its net log)."""
    profile = tmp_path / f"profile-{len(os.listdir(tmp_path))}"
    netlog = tmp_path / f"net-{profile.name}.json"
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}", *flags,
                           page if isinstance(page, str) else page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    urls = set(re.findall(r'"url":\s*"([^"]*)"', netlog.read_text(encoding="utf-8", errors="replace")))
    return done.stdout, {u for u in urls if u.startswith(("http:", "https:")) and not u.startswith(BROWSER_OWN)}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.urls, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self.script_src = getattr(self, "script_src", []) + [dict(attrs).get("src")]
        for name, value in attrs:
            if tag == "img" and name == "src":
                self.images.append(value)
            if name in ("src", "href", "srcset", "data", "action", "poster") and value:
                self.urls.append(value)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A real run: bptt train on a small text with history recorded, then bptt diagnose."""
    from bptt.cli import main

    root = tmp_path_factory.mktemp("browser")
    text = root / "fox.txt"
    text.write_text("The quick brown fox jumps over the lazy dog; the dog sleeps.\n" * 40, encoding="utf-8")
    run = root / "run"
    assert main(["train", "--text", str(text), "--steps", "12", "--hidden", "12", "--seq-len", "12", "--batch", "2",
                 "--log-every", "2", "--eval-every", "4", "--record-every", "4", "--out", str(run),
                 "--no-progress"]) == 0
    assert main(["diagnose", str(run), "--seq-len", "10", "--batch", "2"]) == 0
    return run / "diagnose" / "report.html"


def test_the_control_page_shows_a_fetch_is_detected(tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    _, fetched = _chromium(tmp_path, page, "--dump-dom")
    assert "http://127.0.0.1:9/x.png" in fetched                      # the check below can fail


def test_report_renders_embedded_and_offline(report, tmp_path):
    dom, fetched = _chromium(tmp_path, report, "--dump-dom")
    assert fetched == set(), fetched                                   # nothing from the network
    page = _Page()
    page.feed(dom)
    figures = sorted(f for f in os.listdir(report.parent) if f.endswith(".png"))
    assert len(figures) == 6                                           # loss, grad norm, rho, 3 gradient-flow figures
    assert len(page.images) == len(figures)
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert not [u for u in page.urls if re.match(r"\s*(https?:)?//", u)]   # no http(s) URL in src/href
    assert "script" not in page.tags and "link" not in page.tags
    assert page.tags.count("math") >= 4 and "msub" in page.tags and "mfrac" in page.tags
    for heading in ("The run", "The equations", "Training", "A sample", "Key numbers", "Gradient flow"):
        assert f"<h2>{heading}</h2>" in dom
    for entry in ("optimiser, learning rate", "T (steps per update), B (streams)", "text SHA-256", "steps"):
        assert f"<th>{entry}</th>" in dom
    assert hashlib.sha256((report.parent.parent.parent / "fox.txt").read_bytes()).hexdigest() in dom
    assert dom.count('class="means"') >= 20                            # a sentence under each number
    assert "checkpoint step 12" in dom and "layer 0" in dom


def test_report_screenshot_paints_the_figures(report, tmp_path):
    import matplotlib.image

    shot = tmp_path / "report.png"
    _, fetched = _chromium(tmp_path, report, "--window-size=1200,7000", f"--screenshot={shot}")
    assert fetched == set(), fetched
    pixels = matplotlib.image.imread(shot)[..., :3]                    # (7000, 1200, 3) floats in [0, 1]
    assert pixels.shape[:2] == (7000, 1200)
    # the heat map's viridis colours (dark purple .. yellow) and the curves' default blue appear:
    # the embedded PNGs were decoded and painted, not shown as broken images
    viridis_dark = np.all(np.abs(pixels - np.array([0.267, 0.005, 0.329])) < 0.08, axis=-1).sum()
    tab_blue = np.all(np.abs(pixels - np.array([0.122, 0.467, 0.706])) < 0.06, axis=-1).sum()
    assert viridis_dark > 20 and tab_blue > 200, (viridis_dark, tab_blue)
    rows = np.flatnonzero((pixels < 0.9).any(axis=(1, 2)))
    assert rows.max() > 3000                                           # the page is long: all sections laid out


# ------------------------------------------------------------------ the text view (--text-view, two runs)

@pytest.fixture(scope="module")
def text_views(tmp_path_factory):
    """A tanh RNN and an LSTM trained briefly on one text; diagnose --text-view, and the two compared."""
    from bptt.cli import main

    root = tmp_path_factory.mktemp("textview")
    text = root / "quotes.txt"
    text.write_text('He said "hello (world)" to me.\n  And then "bye".\n' * 30, encoding="utf-8")
    runs = []
    for cell in ("rnn", "lstm"):
        run = root / cell
        assert main(["train", "--text", str(text), "--cell", cell, "--steps", "8", "--hidden", "8", "--seq-len", "12",
                     "--batch", "2", "--out", str(run), "--no-progress"]) == 0
        runs.append(run)
    assert main(["diagnose", str(runs[1]), "--seq-len", "8", "--batch", "1", "--text-view", "--passage-len", "60"]) == 0
    assert main(["diagnose", str(runs[0]), str(runs[1]), "--passage-len", "60", "--out", str(root / "compare")]) == 0
    return runs[1] / "diagnose" / "report.html", root / "compare" / "report.html"


def _spans(dom):
    """(style, text) of every span of the interactive passages, in page order."""
    return re.findall(r'<span class="tk" style="([^"]*)">([^<]*)</span>', dom)


def test_text_view_renders_offline_and_its_script_paints(text_views, tmp_path):
    report, _ = text_views
    dom, fetched = _chromium(tmp_path, report, "--dump-dom")
    assert fetched == set(), fetched
    page = _Page()
    page.feed(dom)
    assert page.script_src and all(src is None for src in page.script_src)      # inline scripts only
    assert not [u for u in page.urls if re.match(r"\s*(https?:)?//", u)]
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "<h2>The text view</h2>" in dom and "<h2>Gradient flow</h2>" in dom
    # the script ran: the caption names the default position (the last of 60), every span got a colour
    assert "output position 59: reads" in dom
    spans = _spans(dom)
    assert len(spans) == 60
    assert all("background" in style for style, _ in spans)
    assert sum("outline: rgb(0, 0, 0) solid 2px" in style or "outline: 2px solid" in style for style, _ in spans) == 1
    for heading in ("how far back each prediction looks", "the whole text by look-back", "units that track"):
        assert heading in dom
    assert "inside quotes" in dom and "correlation r =" in dom
    assert "gate saturation" in dom and "Lyapunov" in dom


def test_text_view_position_from_the_address(text_views, tmp_path):
    report, _ = text_views
    dom, fetched = _chromium(tmp_path, report.as_uri() + "#t=5", "--dump-dom")
    assert fetched == set(), fetched
    assert "output position 5: reads" in dom
    spans = _spans(dom)
    after = [style for style, _ in spans[6:]]
    assert all("transparent" in style for style in after)                      # k > t: no influence
    before = [style for style, _ in spans[:6]]
    assert all("214, 39, 40" in style for style in before)                # k <= t: shaded by saliency
    assert "2px" in spans[5][0] and "2px" not in spans[4][0]                     # the chosen position outlined


def test_compare_report_shows_both_runs(text_views, tmp_path):
    import matplotlib.image

    _, compare = text_views
    dom, fetched = _chromium(tmp_path, compare, "--dump-dom")
    assert fetched == set(), fetched
    assert "Run 1: rnn (rnn, tanh, step 8)" in dom and "Run 2: lstm (lstm, step 8)" in dom
    assert dom.count("output position 59: reads") == 2                           # both views painted
    assert len(_spans(dom)) == 120
    shot = tmp_path / "compare.png"
    _, fetched = _chromium(tmp_path, compare, "--window-size=1200,5000", f"--screenshot={shot}")
    assert fetched == set(), fetched
    pixels = matplotlib.image.imread(shot)[..., :3]
    reddish = ((pixels[..., 0] > 0.75) & (pixels[..., 1] < 0.75) & (pixels[..., 2] < 0.75)).sum()
    assert reddish > 500, reddish                                                # the saliency shading is painted
