"""report.html: what it holds, `rnnlab report` and `rnnlab demo`, and the page in a real browser."""

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import SMALL, make_text
from test_charlm_cli import assert_user_error, run_cli

from rnnlab.cli import main


@pytest.fixture(scope="module")
def two_charlm_runs(tmp_path_factory, text_file_module):
    root = tmp_path_factory.mktemp("reports")
    runs = []
    for name, lr in (("slow", "1e-3"), ("fast", "1e-2")):
        out = root / name
        code = main(
            [
                "charlm",
                "train",
                "--text",
                str(text_file_module),
                "--out",
                str(out),
                *SMALL,
                "--max-steps",
                "30",
                "--eval-every",
                "10",
                "--lr",
                lr,
            ]
        )
        assert code == 0
        runs.append(out)
    return runs


@pytest.fixture(scope="module")
def text_file_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


def images_of(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


def test_every_run_writes_a_self_contained_report(two_charlm_runs):
    run = two_charlm_runs[0]
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'src="http' not in page and "<script" not in page  # nothing to fetch, nothing to run
    pngs = images_of(page)
    assert len(pngs) == 1  # the loss curves
    import base64

    assert base64.b64decode(pngs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "nats/char" in page and "bits" in page and "unigram" in page and "uniform over" in page
    assert "Sample before training (step 0)" in page and "Sample after 30 steps" in page
    assert "hidden_size" in page and "training time" in page and "measured on" in page
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [0, 10, 20, 30]


def test_unigram_baseline_is_beaten_and_is_the_frequency_model(two_charlm_runs):
    from rnnlab.tasks.charlm import unigram_nats_per_char

    ids = np.array([0, 0, 0, 1, 1, 2])
    # add-one counts 4, 3, 2 of 9; the first validation id is never predicted
    expected = -(np.log(4 / 9) + np.log(2 / 9)) / 2
    assert unigram_nats_per_char(ids, np.array([1, 0, 2]), 3) == pytest.approx(expected, rel=1e-12)
    last = [json.loads(line) for line in (two_charlm_runs[1] / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["val_nats_per_char"] < last["val_unigram_nats_per_char"]


def test_report_compares_runs_side_by_side(two_charlm_runs, tmp_path, capsys):
    out = tmp_path / "both.html"
    code, stdout, _ = run_cli(capsys, "report", *two_charlm_runs, "--out", out, "--title", "two rates")
    assert code == 0 and str(out) in stdout
    page = out.read_text(encoding="utf-8")
    assert "<title>two rates</title>" in page
    assert len(images_of(page)) == 3  # the shared validation plot and each run's loss curves
    summary = page[page.index("<h2>Summary</h2>") : page.index('<div class="runs">')]
    assert ">lr<" in summary and ">seed<" not in summary  # only the settings that differ
    assert "slow" in summary and "fast" in summary


def test_report_bad_input(two_charlm_runs, tmp_path, capsys):
    assert_user_error(capsys, "report", tmp_path / "nowhere", match="does not exist")
    (tmp_path / "empty").mkdir()
    assert_user_error(capsys, "report", tmp_path / "empty", match="holds no run")
    assert_user_error(
        capsys, "report", two_charlm_runs[0], "--out", tmp_path / "no" / "dir" / "r.html", match="does not exist"
    )
    broken = tmp_path / "broken"
    shutil.copytree(two_charlm_runs[0], broken)
    (broken / "checkpoint.json").write_text("{not json")
    assert_user_error(capsys, "report", broken, match="not valid JSON")


def test_demo_quick(tmp_path, capsys):
    """The demo end to end at its quick size: a run per task, a table, one report with every task."""
    out = tmp_path / "demo"
    code, stdout, _ = run_cli(capsys, "demo", "--quick", "--out", out, "--quiet")
    assert code == 0
    for task in ("charlm", "denoise", "forecast", "series"):
        assert (out / task / "report.html").exists()
    table = stdout.splitlines()
    assert table[0].split()[:2] == ["task", "model"]
    assert [line.split()[0] for line in table[2:6]] == ["charlm", "denoise", "forecast", "series"]
    assert "Kalman" in stdout and "persistence" in stdout and "unigram" in stdout and "ridge" in stdout
    page = (out / "report.html").read_text(encoding="utf-8")
    # charlm loss; denoise loss, traces; forecast loss, forecast; series loss, forecast, error by step
    assert len(images_of(page)) == 8
    assert "Sample before training" in page
    # A directory holding a training run is not the demo's to fill.
    assert_user_error(capsys, "demo", "--quick", "--out", out / "charlm", match="holds a training run")


# --------------------------------------------------------------------------- in a real browser


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


CHECK_HEAD = (
    "<script>window.__errors=[];window.addEventListener('error',function(e){window.__errors.push("
    "String(e.message||(e.target&&e.target.tagName)))},true);var __ce=console.error;console.error="
    "function(){window.__errors.push([].join.call(arguments,' '));__ce.apply(console,arguments)};</script>"
)
CHECK_TAIL = (
    "<script>window.addEventListener('load',function(){var im=[].slice.call(document.images);"
    "var r={images:im.length,loaded:im.filter(function(i){return i.complete&&i.naturalWidth>0}).length,"
    "errors:window.__errors,page_width:document.documentElement.scrollWidth,"
    "window_width:window.innerWidth};var p=document.createElement('pre');p.id='rnnlab-check';"
    "p.textContent=JSON.stringify(r);document.body.appendChild(p)});</script>"
)


def _browser(chromium, args, tmp_path, timeout=120):
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(
    _chromium() is None, reason="no Chromium here (Debian: apt-get install chromium; .ci/run installs it)"
)
@pytest.mark.parametrize("width", [1280, 390])
def test_report_in_headless_chromium(two_charlm_runs, tmp_path, capsys, width):
    chromium = _chromium()
    report = tmp_path / "report.html"
    assert run_cli(capsys, "report", *two_charlm_runs, "--out", report)[0] == 0
    page = report.read_text(encoding="utf-8")
    # A copy with a checker: the report itself has no script; this one records errors and image loads.
    checked = tmp_path / "checked.html"
    checked.write_text(
        page.replace("<head>", "<head>" + CHECK_HEAD, 1).replace("</body>", CHECK_TAIL + "</body>"), encoding="utf-8"
    )
    dom = _browser(
        chromium,
        [f"--window-size={width},1000", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
        tmp_path,
    )
    found = re.search(r'<pre id="rnnlab-check">(.*?)</pre>', dom.stdout, re.S)
    assert found, (dom.returncode, dom.stderr[-2000:])
    check = json.loads(html.unescape(found.group(1)))
    assert check["images"] == len(images_of(page)) == 3
    assert check["loaded"] == check["images"], check
    assert check["errors"] == [], check
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert console_errors == [], console_errors
    # Readable at this width: the page itself never scrolls sideways (wide tables scroll in their box).
    assert check["page_width"] <= check["window_width"], check

    shot = tmp_path / "shot.png"
    _browser(chromium, [f"--window-size={width},1600", f"--screenshot={shot}", report.as_uri()], tmp_path)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[1] == width
    not_white = (pixels < 0.9).any(axis=-1).mean()
    assert 0.02 < not_white < 0.9, not_white  # text and plots on a white page, not a blank or black one
    assert pixels.std() > 0.05
