"""Paths a user gives to ``tune`` are resolved where the command runs, not in a trial's working folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parity_ray.errors import UsageError
from parity_ray.tune.experiment import TuneOptions, resolve_paths_on_the_driver


def test_relative_paths_become_absolute_before_any_trial(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    (tmp_path / "shared").mkdir()
    tmp_path = tmp_path / "work"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARITY_RAY_DATA", "data")
    options = TuneOptions(space="quick", name="x", overrides=["data_root=../shared", "base_weights=w.pt", "k=[2,3]",
                                                              "base_cache=s3://b/cache", "epochs=2"])
    resolved = resolve_paths_on_the_driver(options)
    assert resolved.overrides == [f"data_root={(tmp_path / '../shared').resolve()}", f"base_weights={tmp_path / 'w.pt'}",
                                  "k=[2,3]", "base_cache=s3://b/cache", "epochs=2"]
    assert os.environ["PARITY_RAY_DATA"] == str(tmp_path / "data")


def test_the_data_root_flag_is_an_absolute_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    resolved = resolve_paths_on_the_driver(TuneOptions(space="quick", name="x", data_root="d"))
    assert resolved.overrides == [f"data_root={tmp_path / 'd'}"] and resolved.data_root is None
    with pytest.raises(UsageError, match="--data-root or --set data_root"):
        resolve_paths_on_the_driver(TuneOptions(space="quick", name="x", data_root="d", overrides=["data_root=e"]))


def test_a_data_root_that_is_not_a_folder_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """The issue's case: `tune ... --set data_root=<missing>` was 8 errored trials and exit 1; now one
    line naming the path as given, exit 2, and no experiment folder."""
    from tests.cli.runner import assert_usage_error, cli

    monkeypatch.chdir(tmp_path)
    for flags in (["--set", "data_root=../nowhere/data"], ["--data-root", "../nowhere/data"]):
        assert_usage_error(cli("tune", "quick", "--name", "bad", "--storage", str(tmp_path / "results"), *flags,
                               "--smoke-test"), "data root '../nowhere/data' does not exist or is not a folder")
        assert not (tmp_path / "results" / "bad").exists()


@pytest.mark.slow
def test_tune_reads_a_relative_data_root_as_written(local_ray, tmp_path, monkeypatch):
    """The README's form: ``--set data_root=<relative>`` with MNIST cells, trials in Ray's own folder."""
    from tests.cli.runner import cli

    shared = Path(os.environ.get("PARITY_RAY_DATA", "../shared/data")).resolve()
    if not (shared / "mnist").exists() and not (shared / "MNIST").exists():
        pytest.skip("MNIST is not in the shared data folder")
    monkeypatch.delenv("PARITY_RAY_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(shared, tmp_path)
    result = cli("tune", "quick", "--name", "rel", "--storage", "results", "--smoke-test", "--no-progress",
                 "--set", "dataset=mnist", "--set", "k=2", "--set", "encoder=addition", "--data-root", relative, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"COMPLETED": 1' in result.stdout and "ERROR" not in result.stdout.splitlines()[-1]
