"""The HTML report renders in headless Chromium (Debian's `chromium`) with every image loaded.

The screenshot is kept in runs/test-artifacts/report.png (and the test's tmp_path)
for a person to look at. CI installs chromium (.ci/run) and sets
RESUMO_REQUIRE_CHROMIUM=1, so there a missing browser fails instead of skipping.
"""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from resumo import report
from tests.unit.test_report import JUDGE, lead_scores, sample_predictions

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1280, 2000

# Added to a copy of the page only: after `load`, write what each <img> decoded into the DOM.
PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify([...document.images].map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight})));
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("RESUMO_REQUIRE_CHROMIUM") == "1":
        pytest.fail("RESUMO_REQUIRE_CHROMIUM=1 but no chromium on PATH; .ci/run installs it with apt-get as root")
    pytest.skip("Debian's chromium is not installed; as root: apt-get install -y chromium (CI does this in .ci/run)")


def headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_with_its_images_loaded(chromium, tmp_path):
    curves = report._png(_line_figure())
    page = report.write_reports(lead_scores(), sample_predictions(), tmp_path / "report", curves_png=curves, judge=JUDGE)["html"]

    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = headless(chromium, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"chromium did not run the probe (rc {dom.returncode}): {dom.stderr[-2000:]}"
    images = json.loads(html.unescape(found.group(1)))
    assert [i["alt"] for i in images] == ["scores with intervals", "histogram of summary lengths in words", "judge win rates", "training and validation loss"]
    assert all(i["complete"] and i["w"] > 100 and i["h"] > 50 for i in images), images
    # the lead baselines as Chromium parsed them: a row in the scores table, the comparison and its sentence
    rendered = html.unescape(re.sub(r"<[^>]+>", " ", dom.stdout))
    assert re.search(r"lead at tuned's length\s+0\.420", rendered), "no lead row in the scores table"
    assert re.search(r"tuned\s+rougeLsum\s+0\.410\s+0\.420\s+-0\.010 \[-0\.015, -0\.001\]", rendered), "no paired difference against the lead"
    assert "tuned does worse than copying the opening of each text at its own length" in rendered

    shot = tmp_path / "report.png"
    run = headless(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", page.as_uri())
    assert shot.exists(), f"no screenshot (rc {run.returncode}): {run.stderr[-2000:]}"
    kept = ROOT / "runs" / "test-artifacts" / "report.png"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, kept)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    # Plots put colour on the page: many pixels far from white and from grey.
    rgb = pixels[..., :3]
    assert (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.2).mean() > 0.005


def _line_figure():
    fig = report._pyplot().figure(figsize=(6, 3))
    ax = fig.add_subplot()
    ax.plot(np.arange(20), np.exp(-np.arange(20) / 5), label="train loss")
    ax.legend()
    return fig
