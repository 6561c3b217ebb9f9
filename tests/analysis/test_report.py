"""``parity-ray report``: a static HTML report, checked as files, in a real headless browser (over the
DevTools protocol: the explorer shows images, filters change the visible count, no console error;
screenshots saved), at grid scale, on S3, and refused in one line for bad input."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from parity_ray import analysis
from parity_ray.analysis import instances
from parity_ray.analysis.report import build_report
from parity_ray import results, storage
from tests.analysis.browser import Browser
from tests.cli.runner import assert_usage_error, cli
from tests.experiment.test_s3 import s3_server  # noqa: F401  (a fixture: a real S3 server on loopback)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FIGURES = ["accuracy.png", "learning_curves.png", "erasures.png", "latency_cdf.png"]
TABLE_IDS = ["degraded-accuracy-table", "agreement-table", "kl-table", "position-table", "worst-classes-table",
             "latency-table"]
STATIC = ["index.html", "plotly.min.js", "report.css", "report.js"]
CHARTS = 8  # accuracy, loss, curves, by class, by position, KL, latency CDF, latency tail


def _png_links(page: str) -> list:
    return re.findall(r'href="([^"/]+\.png)"', page)


def _listing(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _leftovers(folder: Path) -> list:
    return [p.name for p in folder.iterdir() if ".staging-" in p.name or ".old-" in p.name]


# --------------------------------------------------------------------------- the report


def test_report_command_writes_a_static_report_beside_the_tables(small_experiment):
    result = cli("report", small_experiment.uri, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    folder = Path(small_experiment.uri, "report")
    assert summary["report"] == str(folder / "index.html")
    assert summary["runs"] == 4 and summary["status"] == {"COMPLETED": 2, "UNAVAILABLE": 2}
    assert summary["simulations"] == 1 and summary["figures"] == FIGURES
    assert summary["explorer_runs"] == 2 and summary["thumbnail_sheets"] >= 2
    assert "report" in result.stdout.splitlines()[-2]  # the human summary precedes the JSON line
    files = _listing(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FIGURES + STATIC + ["data", "images"])
    assert [f for f in files if f.startswith("data/")] == ["data/run-0.js", "data/run-1.js"]
    sheets = [f for f in files if f.startswith("images/")]
    assert "images/digits/s0.png" in sheets and sum(f.startswith("images/coded-") for f in sheets) == 2  # one per code
    assert summary["files"] == len(files)
    page = (folder / "index.html").read_text()
    for table_id in TABLE_IDS + ["lineage-tree"]:
        assert f'id="{table_id}"' in page
    assert _png_links(page) == FIGURES  # relative links: the folder opens from disk, moved or not
    assert 'src="report.js"' in page and "http" not in page.split("<main>")[0]  # nothing from the network
    assert small_experiment.uri in page and "UNAVAILABLE" in page and "not found" in page
    assert "parity_ray 0.1.0" in page  # versions in the header

    first = (folder / "index.html").stat().st_mtime_ns
    again = cli("report", small_experiment.uri)
    assert again.returncode == 0, again.stderr
    assert (folder / "index.html").stat().st_mtime_ns > first  # a second report replaces the first
    assert _leftovers(Path(small_experiment.uri)) == []


def test_report_without_simulations_says_so(small_experiment, tmp_path):
    out = tmp_path / "nested" / "report"
    summary = build_report(small_experiment.no_simulation, out=str(out))
    assert summary["report"] == str(out / "index.html") and summary["simulations"] == 0
    page = (out / "index.html").read_text()
    assert 'id="no-simulations"' in page and "parity-ray simulate" in page
    assert "latency_cdf.png" not in page and not (out / "latency_cdf.png").exists()
    assert 'id="chart-latency-cdf"' not in page
    assert not Path(small_experiment.no_simulation, "report").exists()  # --out: nothing beside the tables


def _require_browser() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        # CI installs the browser and sets PARITY_RAY_REQUIRE_BROWSER, so there it cannot skip quietly.
        if os.environ.get("PARITY_RAY_REQUIRE_BROWSER"):
            pytest.fail(f"no headless browser at {CHROMIUM}, and PARITY_RAY_REQUIRE_BROWSER is set")
        pytest.skip(f"no headless browser at {CHROMIUM} (apt-get install chromium)")


def _set(browser: Browser, element_id: str, value) -> None:
    """Change a control the way a person does: set its value, fire the event the page listens to."""
    browser.evaluate(f"""(function () {{
        var el = document.getElementById({json.dumps(element_id)});
        el.value = {json.dumps(str(value))};
        el.dispatchEvent(new Event(el.tagName === "INPUT" ? "input" : "change"));
    }})()""")


def _count(browser: Browser, which: str = "explorerCount") -> int:
    return int(browser.evaluate(f"document.body.dataset.{which}"))


def _ready(browser: Browser, charts: int) -> None:
    browser.wait_for("document.body.dataset.explorerCount !== undefined && document.body.dataset.compareCount !== undefined")
    browser.wait_for(f"document.body.dataset.charts === '{charts}'", timeout=90)  # Plotly parsed, every chart drawn
    browser.wait_for("+document.body.dataset.thumbsDrawn > 0 || document.querySelector('.noimg') !== null")


def test_report_renders_in_a_headless_browser(small_experiment, tmp_path):
    _require_browser()
    out = tmp_path / "report"
    build_report(small_experiment.uri, out=str(out))
    loaded = analysis.load(small_experiment.uri)
    differing = analysis.differing_decodes(loaded.predictions)
    done = loaded.runs[loaded.runs["status"] == "COMPLETED"]["run_id"].tolist()
    first = differing[differing["run_id"] == done[0]]
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open((out / "index.html").as_uri())
        _ready(browser, CHARTS)
        browser.screenshot(tmp_path / "report.png")

        # The explorer lists the first run's differing decodes, with images drawn from the shared sheets.
        assert _count(browser) == len(first)
        data = json.loads(browser.evaluate("JSON.stringify(document.body.dataset)"))
        assert int(data["sheetsLoaded"]) >= 2 and data["sheetsFailed"] == "0", data
        cards = browser.evaluate("document.querySelectorAll('#ex-list .card').length")
        assert cards == min(len(first), 60)
        drawn = browser.evaluate("document.querySelectorAll('#ex-list canvas[data-drawn]').length")
        assert drawn >= 3 * cards  # k=2 group images + r=1 coded query per decode
        # A drawn thumbnail shows the image (grey levels of a digit), not a blank canvas.
        thumb = Image.open(io.BytesIO(browser.element_png("#ex-list canvas[data-drawn]"))).convert("L")
        assert thumb.size[0] >= 56 and len(thumb.getcolors(maxcolors=1 << 16)) > 3
        assert "worker 2" in browser.evaluate("document.querySelector('#ex-list .card').textContent")

        # Filters: each one narrows the visible count to what pandas counts.
        _set(browser, "ex-outcome", "fixed_by_decoding")
        assert _count(browser) == int((first["outcome"] == "fixed_by_decoding").sum()) != len(first)
        _set(browser, "ex-outcome", "")
        label = int(first["label"].value_counts().index[0])
        _set(browser, "ex-class", label)
        assert _count(browser) == int((first["label"] == label).sum()) < len(first)
        _set(browser, "ex-kl-min", 2)
        assert _count(browser) == int(((first["label"] == label) & (first["kl_base_decoded"] >= 2)).sum())
        browser.screenshot(tmp_path / "explorer-filtered.png", full_page=False)
        browser.evaluate("document.getElementById('ex-reset').click()")
        _set(browser, "ex-position", 1)
        assert _count(browser) == int((first["position"] == 1).sum())
        shown = browser.evaluate("document.getElementById('ex-status').textContent")
        assert f"{_count(browser)} of the {len(first)} differing decodes" in shown

        # The lineage tree links each run to its explorer.
        browser.evaluate("document.querySelectorAll('#lineage-tree a.explore')[1].click()")
        browser.wait_for(f"document.body.dataset.explorerCount === '{int((differing['run_id'] == done[1]).sum())}'")
        assert browser.evaluate("document.getElementById('ex-run').value") == "1"

        # Run vs run: the four outcomes add up to the test set; the flips are listed.
        comparison = analysis.compare_runs(loaded.predictions, done[0], done[1]).table.set_index("outcome")["instances"]
        cells = browser.evaluate("JSON.stringify(Array.from(document.querySelectorAll('#comparison-table td'))"
                                 ".map(function (td) { return [td.dataset.outcome, td.textContent]; }))")
        for outcome, text in json.loads(cells):
            assert text.startswith(f"{comparison[outcome]} (")
        assert _count(browser, "compareCount") == comparison["only_a"] + comparison["only_b"]
        _set(browser, "cmp-side", "only_b")
        assert _count(browser, "compareCount") == comparison["only_b"]
        browser.evaluate("document.getElementById('compare').scrollIntoView()")
        browser.screenshot(tmp_path / "compare.png", full_page=False)

        # Interactive charts: Plotly drew every one, with a legend (click toggles a series) that covers no data.
        legend = browser.evaluate("document.querySelectorAll('#chart-curves .legend .traces').length")
        assert legend == 4  # two runs x (val reconstruction, test degraded-mode)
        overlaps = browser.evaluate("""Array.from(document.querySelectorAll('.chart')).filter(function (chart) {
            var plot = chart.querySelector('.nsewdrag'), legend = chart.querySelector('.legend');
            if (!plot || !legend) return false;
            var a = plot.getBoundingClientRect(), b = legend.getBoundingClientRect();
            return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
        }).map(function (chart) { return chart.id; })""")
        assert overlaps == []
        # Nothing is wider than the page, on a wide screen or a narrow one: wide tables scroll in their box.
        for width in (1280, 700):
            browser.call("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1, mobile=False)
            browser.settle(1.0)
            assert browser.evaluate("document.documentElement.scrollWidth") <= width
        browser.screenshot(tmp_path / "narrow.png", full_page=False)
        assert browser.errors() == []
    for name in ("report.png", "explorer-filtered.png", "compare.png"):
        shot = tmp_path / name
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 30_000, name


def test_explorer_without_the_test_images_still_lists_the_decodes(small_experiment, tmp_path, monkeypatch):
    _require_browser()

    def unavailable(run, data_root=None):
        raise instances.ImagesUnavailable("test images of 'digits' are not available here: no data root")

    monkeypatch.setattr(instances, "run_inputs", unavailable)
    out = tmp_path / "report"
    summary = build_report(small_experiment.uri, out=str(out))
    assert summary["thumbnail_sheets"] == 0 and not (out / "images").exists()
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open((out / "index.html").as_uri())
        _ready(browser, CHARTS)
        note = browser.evaluate("(function (n) { return n.hidden ? '' : n.textContent; })(document.getElementById('ex-images-note'))")
        assert "Images are not shown for this run" in note and "no data root" in note
        assert browser.evaluate("document.querySelectorAll('#ex-list .noimg').length") > 0
        assert _count(browser) > 0
        browser.evaluate("document.getElementById('explorer').scrollIntoView()")
        browser.screenshot(tmp_path / "no-images.png", full_page=False)
        assert browser.errors() == []


@pytest.mark.slow  # paper scale: 72 runs x 10,000 test images, built and opened in the browser
def test_report_of_a_72_run_grid_opens_in_seconds(tmp_path, data_root):
    """72 runs x 10,000 MNIST test images: the page is usable within seconds; run data load on demand."""
    _require_browser()
    from parity_ray.data import load_data
    from tests.analysis.synthetic import write_grid

    labels = load_data("mnist", data_root=data_root).test_y.numpy()
    write_grid(tmp_path / "grid", labels, data_root=data_root)
    started = time.perf_counter()
    summary = build_report(str(tmp_path / "grid"), out=str(tmp_path / "report"), data_root=data_root)
    build_seconds = time.perf_counter() - started
    out = tmp_path / "report"
    assert summary["runs"] == summary["explorer_runs"] == 72
    assert (out / "index.html").stat().st_size < 2_000_000  # instance data stay out of the page
    assert max(f.stat().st_size for f in (out / "data").iterdir()) < 2_000_000
    # Thumbnails are shared: one set of sheets for the MNIST test images, one per code (k, r, encoder).
    assert len(list((out / "images").iterdir())) == 1 + 3 * 2 * 2
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open((out / "index.html").as_uri())
        browser.wait_for("document.body.dataset.explorerMs !== undefined")
        explorer_ms = int(browser.evaluate("document.body.dataset.explorerMs"))
        _ready(browser, 6)
        loaded_scripts = browser.evaluate("document.querySelectorAll('script[src^=\"data/\"]').length")
        assert loaded_scripts <= 3  # the explorer's run and the pair compared: not all 72
        before = _count(browser)
        _set(browser, "ex-outcome", "fixed_by_decoding")
        assert 0 < _count(browser) < before
        browser.screenshot(tmp_path / "grid.png", full_page=False)
        assert browser.errors() == []
    print(f"72-run report: built in {build_seconds:.1f} s, explorer usable {explorer_ms} ms after navigation")
    assert explorer_ms < 8000


def test_report_of_an_s3_experiment_goes_to_its_report_prefix(small_experiment, s3_server, tmp_path):  # noqa: F811
    uri = "s3://parity-bucket/analysis/small"
    tables = Path(small_experiment.uri, "tables")
    for path in sorted(p for p in tables.rglob("*") if p.is_file()):  # the partitioned tables' folders too
        storage.write_bytes(storage.join(uri, "tables", *path.relative_to(tables).parts), path.read_bytes())
    loaded, local = results.load(uri), results.load(small_experiment.uri).runs
    # the checkpoints stayed on the local disk: paths outside the S3 experiment are not read from it
    pd.testing.assert_frame_equal(loaded.runs.drop(columns="checkpoint_uri"), local.drop(columns="checkpoint_uri"))
    assert loaded.runs.checkpoint_uri.isna().all()
    assert {key for key in loaded.refused if key[0] == "run"} == {("run", r) for r in local.run_id[local.checkpoint_uri.notna()]}
    assert len(loaded.queries) == len(results.load(small_experiment.uri).queries) > 0  # partitioned, on S3

    summary = build_report(uri)
    assert summary["report"] == f"{uri}/report/index.html"
    assert storage.list_dir(f"{uri}/report") == sorted(FIGURES + STATIC + ["data", "images"])
    assert storage.list_dir(f"{uri}/report/data") == ["run-0.js", "run-1.js"]
    page = storage.read_bytes(summary["report"]).decode()
    assert _png_links(page) == FIGURES and 'id="latency-table"' in page
    assert storage.read_bytes(f"{uri}/report/latency_cdf.png").startswith(b"\x89PNG")


TWO_CODES = {"k": [2], "r": [1], "encoder": ["addition", "concatenation"], "loss": ["mse"], "lr": [0.001]}


def _two_experiments(folder: Path, runs: int = 2) -> tuple:
    """Two synthetic experiments over the digits test split holding the same run ids (one config, two seeds)."""
    from parity_ray.data import load_data
    from tests.analysis.synthetic import write_grid

    labels = load_data("digits").test_y.numpy()
    a = write_grid(folder / "exp-a", labels, dataset="digits", schema=2, grid=TWO_CODES, runs=runs, seed=0)
    b = write_grid(folder / "exp-b", labels, dataset="digits", schema=2, grid=TWO_CODES, runs=runs, seed=1)
    return a, b


def _cells(browser: Browser) -> dict:
    cells = browser.evaluate("JSON.stringify(Array.from(document.querySelectorAll('#comparison-table td'))"
                             ".map(function (td) { return [td.dataset.outcome, td.textContent]; }))")
    return {outcome: int(text.split(" ")[0].replace(",", "")) for outcome, text in json.loads(cells)}


def test_report_of_two_experiments_compares_runs_across_them(tmp_path):
    """parity-ray report A B --out DIR: one page; run vs run offers the runs of both (same run ids, told apart by
    their experiment) and lists the images that flip between a run of A and a run of B."""
    _require_browser()
    a, b = _two_experiments(tmp_path)
    out = tmp_path / "report"
    result = cli("report", str(a), str(b), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["experiments"] == [{"path": str(a), "name": "exp-a", "runs": 2}, {"path": str(b), "name": "exp-b", "runs": 2}]
    assert summary["runs"] == summary["explorer_runs"] == 4 and summary["report"] == str(out / "index.html")
    assert "exp-a: " in result.stdout and "exp-b: " in result.stdout  # the human summary names both
    assert not (a / "report").exists() and not (b / "report").exists()  # written only where --out says
    run_ids = results.load(str(a)).runs["run_id"].tolist()
    assert run_ids == results.load(str(b)).runs["run_id"].tolist()  # the same ids in both experiments
    predictions = {"exp-a": results.load(str(a)).predictions, "exp-b": results.load(str(b)).predictions}
    page = (out / "index.html").read_text()
    assert page.count('class="node experiment"') == 2 and 'id="experiment-list"' in page
    assert "exp-a vs exp-b" in page.split("</title>")[0]

    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open((out / "index.html").as_uri())
        _ready(browser, 6)
        runs = browser.evaluate("PR.manifest.runs.map(function (r) { return [r.i, r.experiment, r.run_id, r.label]; })")
        index = {(experiment, run_id.split("/", 1)[1]): i for i, experiment, run_id, _ in runs}
        assert sorted(index) == sorted((e, r) for e in ("exp-a", "exp-b") for r in run_ids)
        assert all(label.startswith(experiment + ": ") for _, experiment, _, label in runs)
        # Both pickers offer every run, under its experiment's name.
        for select in ("cmp-a", "ex-run"):
            groups = browser.evaluate(f"Array.from(document.querySelectorAll('#{select} optgroup')).map(function (g) {{ "
                                      f"return [g.label, g.querySelectorAll('option').length]; }})")
            assert groups == [["experiment exp-a", 2], ["experiment exp-b", 2]], (select, groups)

        def check(key_a, key_b):
            assert browser.evaluate("[+document.getElementById('cmp-a').value, +document.getElementById('cmp-b').value]") \
                == [index[key_a], index[key_b]]
            expected = analysis.compare_runs(predictions[key_a[0]], key_a[1], key_b[1], predictions_b=predictions[key_b[0]])
            counts = expected.table.set_index("outcome")["instances"]
            assert _cells(browser) == {o: int(counts[o]) for o in counts.index}
            assert _count(browser, "compareCount") == counts["only_a"] + counts["only_b"] > 0
            return expected

        # The first pair shown: two codes at the same k and r, from the two experiments.
        check(("exp-a", run_ids[0]), ("exp-b", run_ids[1]))
        legend = browser.evaluate("document.getElementById('cmp-legend').textContent")
        assert "experiment exp-a" in legend and "experiment exp-b" in legend
        # The same run id in both experiments is two runs: compare them with each other.
        _set(browser, "cmp-b", index[("exp-b", run_ids[0])])
        browser.wait_for(f"+document.getElementById('cmp-b').value === {index[('exp-b', run_ids[0])]} && "
                         f"document.getElementById('cmp-legend').textContent.indexOf('exp-b/{run_ids[0]}') >= 0")
        expected = check(("exp-a", run_ids[0]), ("exp-b", run_ids[0]))
        _set(browser, "cmp-side", "only_b")
        assert _count(browser, "compareCount") == int((expected.instances["outcome"] == "only_b").sum())
        _set(browser, "cmp-sort", "test")
        flips = browser.evaluate("Array.from(document.querySelectorAll('#cmp-list .card')).map(function (c) { "
                                 "return +c.dataset.testIndex; })")
        assert flips == sorted(expected.flips[expected.flips["outcome"] == "only_b"]["test_index"].tolist())[:60]
        browser.wait_for("document.querySelectorAll('#cmp-list canvas[data-drawn]').length > 0")
        browser.evaluate("document.getElementById('compare').scrollIntoView()")
        browser.settle(0.5)
        browser.screenshot(tmp_path / "compare-two-experiments.png", full_page=False)

        # A flip opens in the explorer of the run of experiment A that lost it.
        link = browser.evaluate("(function () { var a = document.querySelector('#cmp-list a[href^=\"#explore=\"]'); "
                                "a.click(); return a.getAttribute('href'); })()")
        run, ti = (int(v) for v in re.match(r"#explore=(\d+)&ti=(\d+)", link).groups())
        assert run == index[("exp-a", run_ids[0])]
        differing = analysis.differing_decodes(predictions["exp-a"], run_ids[0])
        want = int((differing["test_index"] == ti).sum())
        browser.wait_for(f"document.getElementById('ex-run').value === '{run}' && "
                         f"document.body.dataset.explorerCount === '{want}'")
        assert want > 0
        assert browser.errors() == []
    shot = tmp_path / "compare-two-experiments.png"
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 30_000


# --------------------------------------------------------------------------- bad input


def test_report_of_two_experiments_needs_an_out_folder(tmp_path):
    a, b = _two_experiments(tmp_path, runs=1)
    before = _listing(tmp_path)
    line = assert_usage_error(cli("report", str(a), str(b)), "2 experiments", "--out")
    assert "report" in line
    assert _listing(tmp_path) == before  # nothing written: no report/ in either experiment
    # A parent folder is not an experiment: each experiment is named.
    line = assert_usage_error(cli("report", str(a), str(tmp_path), "--out", str(tmp_path / "report")),
                              "not an experiment folder")
    assert _listing(tmp_path) == before and not (tmp_path / "report").exists()
    assert_usage_error(cli("report", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "report")),
                       "does not exist")
    assert _listing(tmp_path) == before


def test_report_refuses_a_negative_thumbnail_bound(tmp_path):
    assert_usage_error(cli("report", str(tmp_path), "--max-thumbnails", "-1"), "--max-thumbnails must be >= 0, got -1")
    assert list(tmp_path.iterdir()) == []


def test_report_of_a_folder_without_an_experiment(tmp_path):
    assert_usage_error(cli("report", str(tmp_path / "nope")), "holds no experiment tables")
    assert_usage_error(cli("report", str(tmp_path)), "holds no experiment tables")
    assert list(tmp_path.iterdir()) == []  # neither the path nor a report/ folder was created


def test_report_of_tables_with_another_schema_version(tmp_path):
    runs = pd.DataFrame({"run_id": ["digits-base-mlp-k2-r1-addition-0"], "status": ["COMPLETED"]})
    storage.write_parquet(runs, str(tmp_path / "tables" / "runs.parquet"),
                          {results.VERSION_KEY: 99, "parity_ray.table": "runs"})
    line = assert_usage_error(cli("report", str(tmp_path)), "schema version 99", f"version {results.SCHEMA_VERSION}")
    assert "runs.parquet" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tables"]


def test_report_targets_that_cannot_be_written(small_experiment, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    assert_usage_error(cli("report", small_experiment.uri, "--out", str(a_file)), "is a file, not a folder")
    assert_usage_error(cli("report", small_experiment.uri, "--out", str(a_file / "report")), "cannot be created")
    assert a_file.read_text() == "keep me"

    someones = tmp_path / "documents"
    someones.mkdir()
    (someones / "thesis.tex").write_text("keep me too")
    assert_usage_error(cli("report", small_experiment.uri, "--out", str(someones)), "holding other files")
    assert [p.name for p in someones.iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "documents"]  # no staging folder left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the permission check cannot fail")
def test_report_under_a_read_only_folder(small_experiment, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_usage_error(cli("report", small_experiment.uri, "--out", str(locked / "report")), "is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)
