"""Opening someone else's experiment is safe (docs/security.md): hostile copies of a real experiment,
each command that reads one, and a canary file that must stay absent.

One tiny real run is trained through the CLI and wrapped in an experiment by the real table writer
(tests/cli/test_safety.py); each hostile copy edits what an attacker with write access to the folder
can edit: the runs table's stored config, a data root it names, strings shown in the report.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest

from parity_ray import results
from tests.cli.runner import assert_usage_error, cli
from tests.cli.test_safety import RunsCode as Canary  # a pickle that creates its marker file when loaded
from tests.cli.test_safety import make_experiment, train_tiny_run

READERS = {  # every command that reads an experiment, as a user runs it (out: where it may write)
    "report": lambda exp, out: ["report", exp, "--out", str(out / "report")],
    "export": lambda exp, out: ["export", "--experiment", exp, "--run", "r1", "--out", str(out / "export")],
    "serve --write-config": lambda exp, out: ["serve", "--experiment", exp, "--run", "r1", "--write-config",
                                              str(out / "app.yaml")],
    "simulate": lambda exp, out: ["simulate", "--experiment", exp, "--run", "r1", "--queries", "4", "--warmup", "0"],
    "sweep": lambda exp, out: ["sweep", "--experiment", exp, "--run", "r1", "--service", "constant:ms=1", "--workers", "0",
                               "--queries", "100"],
}


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return make_experiment(root / "honest", train_tiny_run(root))


def hostile_copy(honest: str, folder: Path, **config_changes) -> str:
    """A copy of the honest experiment whose run's stored config (``config_json``) is edited; the
    readable columns (``encoder``, ...) still say what they said."""
    copy = Path(shutil.copytree(honest, folder))
    tables = {name: pd.read_parquet(copy / "tables" / f"{name}.parquet") for name in results.TABLES}
    runs = tables["runs"]
    runs["config_json"] = [json.dumps({**json.loads(runs.config_json.iloc[0]), **config_changes})]
    results.write_tables(str(copy), tables)
    return str(copy)


def _everything_under(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("command", sorted(READERS))
@pytest.mark.parametrize("key", ["encoder", "parity_model", "model"])
def test_a_stored_class_spec_is_refused_by_every_reader_and_runs_nothing(honest, tmp_path, command, key):
    canary = tmp_path / "canary"
    experiment = hostile_copy(honest, tmp_path / "exp", **{key: {"cls": "os.system", "command": f"touch {canary}"}})
    before = _everything_under(Path(experiment))
    out = tmp_path / "out"
    line = assert_usage_error(cli(*READERS[command](experiment, out)), "run 'r1'", "os.system", "--trust-code")
    assert key in line
    assert not canary.exists()  # nothing ran
    assert not out.exists() and _everything_under(Path(experiment)) == before  # nothing written, inside or out


def test_the_notebook_helpers_refuse_a_stored_class_spec_too(honest, tmp_path):
    from parity_ray import analysis
    from parity_ray.analysis import instances
    from parity_ray.errors import UsageError

    canary = tmp_path / "canary"
    experiment = hostile_copy(honest, tmp_path / "exp", encoder={"cls": "os.system", "command": f"touch {canary}"})
    run = analysis.load(experiment).runs.iloc[0]
    with pytest.raises(UsageError, match="names code to import"):
        instances.run_inputs(run)
    assert not canary.exists()


def test_trust_code_imports_what_a_stored_class_spec_names_and_says_so(honest, tmp_path):
    """The opt-in works, and says what it imports: a stored class-spec of a real (harmless) model class."""
    experiment = hostile_copy(honest, tmp_path / "exp", parity_model={"cls": "parity_ray.models.BaseMLP"})
    out = tmp_path / "app.yaml"
    refused = cli("serve", "--experiment", experiment, "--run", "r1", "--write-config", str(out))
    assert_usage_error(refused, "parity_model {'cls': 'parity_ray.models.BaseMLP'}")
    trusted = cli("serve", "--experiment", experiment, "--run", "r1", "--write-config", str(out), "--trust-code")
    assert trusted.returncode == 0, trusted.stderr
    assert "--trust-code: run 'r1'" in trusted.stderr and "parity_ray.models.BaseMLP" in trusted.stderr
    import yaml

    args = yaml.safe_load(out.read_text())["applications"][0]["args"]
    assert args["trust_code"] is True  # so `serve run` trusts it too
    assert args["frontend_replicas"] == 2  # the default, written: `serve run` starts two frontends


def test_a_stored_data_root_is_never_followed_nor_its_pickles_loaded(honest, tmp_path, monkeypatch):
    """A cifar10 run whose stored data root points at "CIFAR batches" planted in the experiment folder."""
    canary = tmp_path / "canary"
    experiment = Path(shutil.copytree(honest, tmp_path / "exp"))
    planted = experiment / "data" / "cifar-10-batches-py"
    planted.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(planted / name, "wb") as fh:
            pickle.dump({"data": Canary(canary), "labels": [0]}, fh, protocol=2)
    hostile = hostile_copy(str(experiment), tmp_path / "exp2", dataset="cifar10", data_root=str(experiment / "data"))
    monkeypatch.delenv("PARITY_RAY_DATA", raising=False)
    result = cli("report", hostile, "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr  # the report is written, its explorer says the images are missing
    assert not canary.exists()
    # ... and the restricted reader refuses the planted batches even when a user points at them
    line = assert_usage_error(cli("simulate", "--experiment", hostile, "--run", "r1", "--data-root",
                                  str(experiment / "data"), "--queries", "4", "--warmup", "0"), "cannot read CIFAR batch")
    assert "posix.system" in line or "os.system" in line
    assert not canary.exists()


WEIGHT_READERS = ["export", "serve --write-config", "simulate", "sweep"]  # the commands that read a run's files


@pytest.mark.parametrize("command", WEIGHT_READERS)
@pytest.mark.parametrize("column", ["checkpoint_uri", "weights_uri"])
def test_a_stored_path_outside_the_experiment_is_refused_by_every_reader(honest, tmp_path, command, column):
    """A table pointing a run's checkpoint (or its base model's weights) at a file elsewhere on the machine:
    one line, exit 2, the outside file never read (it is a planted pickle: loading it would make the canary)."""
    canary = tmp_path / "canary"
    outside = tmp_path / "elsewhere" / "checkpoints"
    outside.mkdir(parents=True)
    torch_file = outside / "best.pt"
    with open(torch_file, "wb") as fh:
        pickle.dump(Canary(canary), fh, protocol=2)
    experiment = Path(shutil.copytree(honest, tmp_path / "exp"))
    tables = {name: pd.read_parquet(experiment / "tables" / f"{name}.parquet") for name in results.TABLES}
    if column == "checkpoint_uri":
        tables["runs"]["checkpoint_uri"] = str(outside.parent)
    else:
        tables["base_models"]["weights_uri"] = str(torch_file)
    results.write_tables(str(experiment), tables)
    out = tmp_path / "out"
    assert_usage_error(cli(*READERS[command](str(experiment), out)), "lies outside the experiment", str(outside.parent))
    assert not canary.exists() and not out.exists()


def test_a_moved_experiment_reads_its_own_files_not_the_originals(honest, tmp_path):
    """Stored paths name the original folder; a copy (moved, shared, unpacked elsewhere) reads its own copy,
    and still serves after the original is gone."""
    from parity_ray.serving import resolve_run

    original = Path(shutil.copytree(honest, tmp_path / "a" / "honest"))
    tables = {name: pd.read_parquet(original / "tables" / f"{name}.parquet") for name in results.TABLES}
    tables["runs"]["checkpoint_uri"] = [str(original / "trials" / Path(tables["runs"].checkpoint_uri.iloc[0]).name)]
    results.write_tables(str(original), tables)  # as an experiment written at a/honest records its run
    moved = Path(shutil.copytree(original, tmp_path / "b" / "honest-copy"))
    shutil.rmtree(original)
    run = resolve_run(str(moved), "r1")
    assert run.parity_checkpoint_uri.startswith(str(moved / "trials"))


def test_the_report_page_survives_a_stored_comment_opener(tmp_path):
    """``<!--<script>`` in a stored string cannot stop the page's scripts: the embedded JSON escapes ``<``."""
    from parity_ray.analysis.report import build_report
    from tests.analysis.synthetic import write_grid

    import numpy as np

    folder = write_grid(tmp_path / "exp", np.arange(40) % 10, dataset="digits", schema=2, runs=2,
                        grid={"k": [2], "r": [1], "encoder": ["addition"], "loss": ["mse"], "lr": [0.001, 0.0003]})
    tables = {name: pd.read_parquet(folder / "tables" / f"{name}.parquet") for name in results.TABLES}
    tables["runs"]["loss"] = "<!--<script>"
    results.write_tables(str(folder), tables)
    build_report(str(folder), out=str(tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text()
    scripts = page.split("<script")[1:]
    assert scripts and not any("<!--" in s.split("</script>")[0] for s in scripts)
    for data_file in (tmp_path / "report" / "data").glob("*.js"):
        assert "<" not in data_file.read_text()


@pytest.mark.parametrize("dangling", [False, True])
def test_a_report_link_leading_outside_is_refused_and_nothing_outside_changes(honest, tmp_path, dangling):
    experiment = Path(shutil.copytree(honest, tmp_path / "exp"))
    elsewhere = tmp_path / "someone-elses"
    if not dangling:
        elsewhere.mkdir()
        (elsewhere / "keep.txt").write_text("mine")
    (experiment / "report").symlink_to(elsewhere)
    assert_usage_error(cli("report", str(experiment)), "leads outside the experiment", "nothing was written")
    assert (sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]) if not dangling else not elsewhere.exists()


@pytest.mark.parametrize("table", ["tables", "tables/sweeps"])
def test_a_table_folder_link_leading_outside_is_refused(honest, tmp_path, table):
    from parity_ray.errors import UsageError

    experiment = Path(shutil.copytree(honest, tmp_path / "exp"))
    elsewhere = tmp_path / "elsewhere"
    if table == "tables":
        shutil.move(experiment / "tables", elsewhere)
    else:
        elsewhere.mkdir()
    (experiment / table).symlink_to(elsewhere)
    rows = pd.DataFrame([{c: None for c in results.SWEEP_COLUMNS}])
    with pytest.raises(UsageError, match="leads outside the experiment"):
        results.write_sweep(str(experiment), "sweep-x", rows)
    assert not list(elsewhere.glob("**/sweep-x*"))


def test_control_characters_in_stored_strings_reach_the_terminal_escaped():
    from parity_ray.analysis.report import format_summary

    text = format_summary({"status": {"COMPLETED\x1b[2J": 1}, "experiment": "e\x1b]0;owned\x07", "runs": 1,
                           "simulations": 0, "figures": [], "explorer_runs": 0, "thumbnail_sheets": 0,
                           "report": "r", "seconds": 0.0})
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2j" in text.lower() and "\\x07" in text


def test_no_shipped_code_turns_rays_authentication_off():
    """Ray's token authentication (on by default for a local Ray since 2.59) is never disabled by the
    library, the Serve layer, the analysis or the benchmarks; only the tests' own environment does."""
    from tests.cli.runner import REPO

    shipped = [p for folder in ("parity_ray", "actors", "analysis", "search_spaces", "benchmarks")
               for p in (REPO / folder).rglob("*.py") if p.is_file()]
    assert len(shipped) > 30
    offenders = [str(p.relative_to(REPO)) for p in shipped if "RAY_AUTH_MODE" in p.read_text()
                 and "disabled" in p.read_text().split("RAY_AUTH_MODE", 1)[1][:40]]
    assert offenders == []


def test_chart_labels_from_stored_strings_are_plain_text_in_the_browser(tmp_path):
    """A stored ``<a href=...>`` in a run's encoder column is shown as text in the Plotly charts: no live link."""
    import numpy as np

    from parity_ray.analysis.report import build_report
    from tests.analysis.browser import Browser
    from tests.analysis.synthetic import write_grid
    from tests.analysis.test_report import CHROMIUM, _require_browser

    _require_browser()
    evil = '<a href="https://example.invalid/x">click</a>'
    folder = write_grid(tmp_path / "exp", np.arange(40) % 10, dataset="digits", schema=2, runs=2,
                        grid={"k": [2], "r": [1], "encoder": ["addition", "concatenation"], "loss": ["mse"], "lr": [0.001]})
    tables = {name: pd.read_parquet(folder / "tables" / f"{name}.parquet") for name in results.TABLES}
    tables["runs"].loc[0, "encoder"] = evil
    results.write_tables(str(folder), tables)
    build_report(str(folder), out=str(tmp_path / "report"))
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open((tmp_path / "report" / "index.html").as_uri())
        browser.wait_for("document.body.dataset.charts !== undefined && +document.body.dataset.charts > 0")
        links = browser.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot a')).map(a => "
                                 "a.getAttribute('href') || a.getAttribute('xlink:href')).filter(Boolean)")
        assert not any("example.invalid" in link for link in links), links
        legend = browser.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot .legendtext'))"
                                  ".map(t => t.textContent).join(' | ')")
        assert '<a href="https://example.invalid/x">click</a>' in legend  # shown, as the characters it is
        assert browser.errors() == []


@pytest.mark.parametrize("command,table", [("sweep", "sweeps"), ("simulate", "queries")])
def test_a_linked_table_folder_is_refused_before_any_work(honest, tmp_path, command, table):
    """simulate (before Ray starts) and sweep (before any cell runs) refuse their table folder linked elsewhere."""
    experiment = Path(shutil.copytree(honest, tmp_path / "exp"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (experiment / "tables" / table).symlink_to(elsewhere)
    result = cli(*READERS[command](str(experiment), tmp_path / "out"))
    assert_usage_error(result, "leads outside the experiment", "nothing was written")
    assert list(elsewhere.iterdir()) == []
