"""``parity-ray report``: a static HTML report, checked as files, in a real headless browser, on S3,
and refused in one line for bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import build_report
from parity_ray import results, storage
from tests.cli.test_cli import assert_usage_error, cli
from tests.experiment.test_s3 import s3_server  # noqa: F401  (a fixture: a real S3 server on loopback)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FIGURES = ["accuracy.png", "learning_curves.png", "erasures.png", "latency_cdf.png"]
TABLE_IDS = ["degraded-accuracy-table", "agreement-table", "kl-table", "position-table", "worst-classes-table",
             "latency-table"]


def _image_sources(page: str) -> list:
    return re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)


def _leftovers(folder: Path) -> list:
    return [p.name for p in folder.iterdir() if ".staging-" in p.name or ".old-" in p.name]


# --------------------------------------------------------------------------- the report


@pytest.mark.slow
def test_report_command_writes_a_static_report_beside_the_tables(small_experiment):
    result = cli("report", small_experiment.uri, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    folder = Path(small_experiment.uri, "report")
    assert summary["report"] == str(folder / "index.html")
    assert summary["runs"] == 4 and summary["status"] == {"COMPLETED": 2, "UNAVAILABLE": 2}
    assert summary["simulations"] == 1 and summary["figures"] == FIGURES
    assert "report" in result.stdout.splitlines()[-2]  # the human summary precedes the JSON line
    assert sorted(p.name for p in folder.iterdir()) == sorted(FIGURES + ["index.html"])
    page = (folder / "index.html").read_text()
    for table_id in TABLE_IDS:
        assert f'id="{table_id}"' in page
    assert _image_sources(page) == FIGURES  # relative links: the folder opens from disk, moved or not
    assert small_experiment.uri in page and "UNAVAILABLE" in page and "not registered" in page
    assert "parity_ray 0.1.0" in page  # versions in the header

    first = (folder / "index.html").stat().st_mtime_ns
    again = cli("report", small_experiment.uri)
    assert again.returncode == 0, again.stderr
    assert (folder / "index.html").stat().st_mtime_ns > first  # a second report replaces the first
    assert _leftovers(Path(small_experiment.uri)) == []


@pytest.mark.slow
def test_report_without_simulations_says_so(small_experiment, tmp_path):
    out = tmp_path / "nested" / "report"
    summary = build_report(small_experiment.no_simulation, out=str(out))
    assert summary["report"] == str(out / "index.html") and summary["simulations"] == 0
    page = (out / "index.html").read_text()
    assert 'id="no-simulations"' in page and "parity-ray simulate" in page
    assert "latency_cdf.png" not in page and not (out / "latency_cdf.png").exists()
    assert not Path(small_experiment.no_simulation, "report").exists()  # --out: nothing beside the tables


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_renders_in_a_headless_browser(small_experiment, tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        # CI installs the browser and sets PARITY_RAY_REQUIRE_BROWSER, so there it cannot skip quietly.
        if os.environ.get("PARITY_RAY_REQUIRE_BROWSER"):
            pytest.fail(f"no headless browser at {CHROMIUM}, and PARITY_RAY_REQUIRE_BROWSER is set")
        pytest.skip(f"no headless browser at {CHROMIUM} (apt-get install chromium)")
    out = tmp_path / "report"
    build_report(small_experiment.uri, out=str(out))
    url = (out / "index.html").as_uri()
    dom = _chromium(tmp_path / "profile-dom", "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    # The page's own script counts images that loaded from disk (naturalWidth > 0) and those that failed.
    assert f'data-images-loaded="{len(FIGURES)}"' in body and 'data-images-failed="0"' in body, body
    assert 'id="degraded-accuracy-table"' in dom.stdout and 'src="latency_cdf.png"' in dom.stdout
    for problem in ("Uncaught", "Failed to load resource"):
        assert problem not in dom.stderr

    shot = tmp_path / "shot.png"
    rendered = _chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000",
                         "--hide-scrollbars", url)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000  # a page of figures, not blank


@pytest.mark.slow
def test_report_of_an_s3_experiment_goes_to_its_report_prefix(small_experiment, s3_server, tmp_path):  # noqa: F811
    uri = "s3://parity-bucket/analysis/small"
    tables = Path(small_experiment.uri, "tables")
    for path in sorted(p for p in tables.rglob("*") if p.is_file()):  # the partitioned tables' folders too
        storage.write_bytes(storage.join(uri, "tables", *path.relative_to(tables).parts), path.read_bytes())
    loaded = results.load(uri)
    pd.testing.assert_frame_equal(loaded.runs, results.load(small_experiment.uri).runs)
    assert len(loaded.queries) == len(results.load(small_experiment.uri).queries) > 0  # partitioned, on S3

    summary = build_report(uri)
    assert summary["report"] == f"{uri}/report/index.html"
    assert storage.list_dir(f"{uri}/report") == sorted(FIGURES + ["index.html"])
    page = storage.read_bytes(summary["report"]).decode()
    assert _image_sources(page) == FIGURES and 'id="latency-table"' in page
    assert storage.read_bytes(f"{uri}/report/latency_cdf.png").startswith(b"\x89PNG")


# --------------------------------------------------------------------------- bad input


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


@pytest.mark.slow
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


@pytest.mark.slow
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
