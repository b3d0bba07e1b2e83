"""The HTML validation report: self-contained, rendered by a real browser, figures that show the data.

The browser checks run Debian's headless chromium (scripts/bootstrap installs it): the page must
load without console messages, hold every section and figure, and a screenshot must show each
figure's data colours inside that figure's box.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from mer_data.validation import html as report_html
from mer_data.validation.html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="chromium is not installed (scripts/bootstrap installs it)")
SECTIONS = ("summary", "findings", "durations", "labels", "av-sync", "faces", "leakage")
# Per figure, colours (hex) that only its data draws: bars of each duration kind, the train split,
# the flagged recordings, the face-rate bars.
FIGURE_COLOURS = {
    "fig-durations": [report_html.COLOURS["interval"], report_html.COLOURS["audio"], report_html.COLOURS["video"]],
    "fig-labels": [report_html.SPLIT_COLOURS[split] for split in ("train", "valid", "test")],
    "fig-av-offsets": [report_html.COLOURS["flagged"], report_html.COLOURS["ok"]],
    "fig-faces": [report_html.COLOURS["faces"]],
}
WIDTH = 1280


def sample_report(recordings: int = 5, findings_per_kind: int = 2) -> dict:
    """A shard report as `mer validate` writes it: findings of several kinds, every stat filled."""
    rng = np.random.default_rng(7)
    samples = 190
    interval = rng.uniform(0.6, 4.0, samples)
    offsets = [
        {"recording": f"Ses{1 + i // 2:02d}{'FM'[i % 2]}_impro{i:02d}", "offset_s": float(offset),
         "offset_frames": round(float(offset) * 29.97, 2), "confidence": 0.8, "utterances": 6,
         "flagged": bool(abs(offset) > 0.1)}
        for i, offset in enumerate(np.concatenate([[0.2, -0.5], rng.normal(0, 0.02, recordings - 2)]))
    ]
    offsets.append({"recording": "Ses09F_impro01", "offset_s": None, "offset_frames": None, "confidence": 0.0,
                    "utterances": 0, "flagged": False})
    findings = []
    for kind, severity, message in (
        ("duration-mismatch", "error", "audio 2.31 s but video 2.90 s"),
        ("corrupt-tar", "error", "the tar ends inside a member <script>alert('x')</script> & more"),
        ("av-offset", "warning", "audio late by 200 ms (confidence 0.82)"),
        ("low-face-detection-rate", "warning", "a face in 2 of 7 sampled frames"),
    ):
        for n in range(findings_per_kind):
            findings.append({"severity": severity, "kind": kind, "message": message, "file": f"train-{n:06d}.tar",
                             "line": None, "id": f"Ses01F_impro01_F{n:03d}", "details": {}})
    findings.append({"severity": "warning", "kind": "split-leakage", "message": "4 dialogs in more than one split",
                     "file": "dataset.json", "line": 3, "id": None, "details": {"count": 4}})
    return {
        "schema_version": "1.0",
        "tool": {"name": "mer-data", "version": "0.1.0"},
        "target": {"kind": "shards", "path": "/data/iemocap-shards"},
        "ok": False,
        "options": {"strict": False, "av_sync": True, "av_threshold_s": 0.1},
        "counts": {"errors": 2 * findings_per_kind, "warnings": 2 * findings_per_kind + 1,
                   "by_kind": {"av-offset": findings_per_kind, "corrupt-tar": findings_per_kind}},
        "findings": findings,
        "stats": {
            "items": {"recordings": recordings, "utterances": samples, "shards": 3, "samples": samples},
            "durations": {"interval": interval.tolist(), "audio": (interval + rng.normal(0, 0.01, samples)).tolist(),
                          "video": (interval + rng.uniform(-0.03, 0.03, samples)).tolist()},
            "labels_per_split": {"train": {"ang": 20, "exc": 25, "fru": 30, "hap": 8, "neu": 35, "sad": 12},
                                 "valid": {"ang": 5, "neu": 9, "sad": 3, "fru": 6},
                                 "test": {"ang": 6, "exc": 7, "neu": 10, "sad": 4, "hap": 2}},
            "face_detection_rate": {"per_sample": np.clip(rng.normal(0.9, 0.1, samples), 0, 1).tolist(), "mean": 0.9},
            "leakage": {"dialogs": {"count": 4, "examples": ["Ses01F_impro01", "Ses02M_script02_2"]},
                        "speakers": {"count": 1, "examples": [{"speaker": "Ses01_F", "splits": ["train", "test"]}]},
                        "videos": {"count": 0, "examples": []}},
            "av_sync": {"threshold_s": 0.1, "unit": "recording", "offsets": offsets},
        },
    }


def bare_report() -> dict:
    """A raw-release report without the shard-only parts: null stats, empty lists."""
    return {
        "schema_version": "1.0", "tool": {"name": "mer-data", "version": "0.1.0"},
        "target": {"kind": "raw-iemocap", "path": "/data/IEMOCAP_full_release"}, "ok": True,
        "counts": {"errors": 0, "warnings": 0, "by_kind": {}}, "findings": [],
        "stats": {"items": {"recordings": 0, "utterances": 0, "shards": None, "samples": None},
                  "durations": {"interval": [], "audio": [None], "video": []}, "labels_per_split": {"all": {}},
                  "face_detection_rate": None, "leakage": None, "av_sync": None},
    }


# --------------------------------------------------------------------------------------------
# Without a browser


def test_page_is_self_contained_escaped_and_deterministic(tmp_path):
    path = render_html(sample_report(), tmp_path / "sub" / "report.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for external in ("http:", "https:", "<script", "<link", " src=", "@import", "<img"):
        assert external not in page, external
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "ids shared between figures"
    assert render_html(sample_report(), tmp_path / "again.html").read_bytes() == path.read_bytes()


def test_missing_parts_say_so_instead_of_drawing(tmp_path):
    page = render_html(bare_report(), tmp_path / "bare.html").read_text(encoding="utf-8")
    document = parse(page)
    assert document.section_ids == list(SECTIONS)
    assert document.figure_ids == [] and "<svg" not in page
    for text in ("No findings", "No durations", "No labels", "A/V sync was not estimated",
                 "No face-detection rates", "No leakage information"):
        assert text in page, text


def test_large_reports_are_summarised(tmp_path):
    report = sample_report(recordings=150, findings_per_kind=230)
    page = render_html(report, tmp_path / "big.html").read_text(encoding="utf-8")
    document = parse(page)
    assert "fig-av-offsets" in document.figure_ids
    assert "30 more duration-mismatch findings are in the JSON report" in page
    assert "51 more recordings are in the JSON report" in page  # 151 entries, 100 rows shown
    table = page[page.index('id="av-offsets-table"'):]
    assert table[: table.index("</table>")].count("<tr") == 1 + report_html.MAX_OFFSET_TABLE_ROWS


class _Outline(HTMLParser):
    """Section ids, figure ids and the figures that hold an <svg>, in document order."""

    def __init__(self):
        super().__init__()
        self.section_ids: list[str] = []
        self.figure_ids: list[str] = []
        self.figures_with_svg: set[str] = set()
        self.scripts = 0
        self._figure: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section":
            self.section_ids.append(attributes.get("id"))
        elif tag == "figure":
            self._figure = attributes.get("id")
            self.figure_ids.append(self._figure)
        elif tag == "svg" and self._figure:
            self.figures_with_svg.add(self._figure)
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None


def parse(page: str) -> _Outline:
    outline = _Outline()
    outline.feed(page)
    return outline


# --------------------------------------------------------------------------------------------
# In headless chromium

# Appended to a copy of the page (the report itself has no script): after parsing, it writes the
# page height and each figure's box into the DOM, where --dump-dom shows them.
LAYOUT_PROBE = """<script>
const layout = {height: document.documentElement.scrollHeight, figures: {}};
for (const figure of document.querySelectorAll("figure.plot")) {
  const box = figure.querySelector("svg").getBoundingClientRect();
  layout.figures[figure.id] = [box.left + scrollX, box.top + scrollY, box.width, box.height];
}
const out = document.createElement("pre"); out.id = "layout"; out.textContent = JSON.stringify(layout);
document.body.appendChild(out);
</script>"""


def chromium(page: Path, tmp_path: Path, *options: str, height: int = 900) -> subprocess.CompletedProcess:
    """Run headless chromium on a file with a fresh profile; console messages go to stderr."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", f"--window-size={WIDTH},{height}", *options, page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (script errors included): chromium logs each as
    `...:CONSOLE:<line>] "message", source: <url> (<line>)`."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]


@needs_chromium
def test_console_check_sees_a_script_error(tmp_path):
    """The harness itself: a broken script on a page shows up among the console messages."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined();</script></body></html>", encoding="utf-8")
    messages = console_messages(chromium(page, tmp_path, "--dump-dom").stderr)
    assert any("notDefined" in message for message in messages), messages


@needs_chromium
def test_report_renders_in_chromium_and_its_figures_show_the_data(tmp_path):
    page = render_html(sample_report(), tmp_path / "report.html")

    dumped = chromium(page, tmp_path, "--dump-dom")
    assert console_messages(dumped.stderr) == []
    document = parse(dumped.stdout)
    assert document.section_ids == list(SECTIONS)
    assert document.figure_ids == list(FIGURE_COLOURS) and document.figures_with_svg == set(FIGURE_COLOURS)
    assert document.scripts == 0
    assert "Ses01F_impro01_F001" in dumped.stdout and "duration-mismatch (2)" in dumped.stdout

    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    probed = chromium(probe, tmp_path, "--dump-dom").stdout
    layout = json.loads(re.search(r'<pre id="layout">(.*?)</pre>', probed).group(1))
    assert set(layout["figures"]) == set(FIGURE_COLOURS)

    shot = tmp_path / "report.png"
    shown = chromium(page, tmp_path, f"--screenshot={shot}", height=layout["height"])
    assert console_messages(shown.stderr) == []
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (layout["height"], WIDTH)
    assert image.std() > 20, "the page is blank"
    for figure, colours in FIGURE_COLOURS.items():
        x, y, w, h = (int(round(v)) for v in layout["figures"][figure])
        assert w > 400 and h > 100, (figure, w, h)
        region = image[y : y + h, x : x + w]
        assert np.mean(np.any(region < 240, axis=2)) > 0.03, f"{figure} is empty"
        for colour in colours:
            assert colour_pixels(region, colour) >= 100, f"{figure} does not show {colour}"
    # Outside the figures the data colours do not occur (the check is not fooled by the page).
    outside = image.copy()
    for x, y, w, h in layout["figures"].values():
        outside[int(y) : int(y + h) + 1, int(x) : int(x + w) + 1] = 255
    assert colour_pixels(outside, report_html.COLOURS["faces"]) == 0


def colour_pixels(region: np.ndarray, colour: str, tolerance: int = 10) -> int:
    """How many pixels (BGR) lie within `tolerance` of a hex colour in every channel."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    distance = np.abs(region.astype(int) - np.array([blue, green, red])).max(axis=2)
    return int(np.count_nonzero(distance <= tolerance))


@needs_chromium
def test_bare_report_renders_in_chromium(tmp_path):
    page = render_html(bare_report(), tmp_path / "bare.html")
    dumped = chromium(page, tmp_path, "--dump-dom")
    assert console_messages(dumped.stderr) == []
    assert parse(dumped.stdout).section_ids == list(SECTIONS)
