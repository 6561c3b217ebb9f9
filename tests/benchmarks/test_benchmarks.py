"""Benchmarks are entry points too: their --smoke-test runs the whole script on tiny work.

Each script's ``main(argv)`` runs in this process, on the session's Ray and the session's base-model
cache (a base model another test trained is reused, as a user's second run reuses it). The sweep
benchmark's smoke test is ``tests/serve/test_sweep.py::test_sweep_matches_a_real_serve_run``. The
quickstart benchmark times ``parity-ray quickstart`` as a real subprocess, which is also the
suite's end-to-end check of that command.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.cli.runner import run_benchmark
from tests.conftest import experiment_copy


def test_codes_smoke_test(capsys):
    """Every code family trained a little on digits (a few seconds)."""
    code, out, report, err = run_benchmark("codes.py", "--smoke-test", "--no-progress", "--json", capsys=capsys)
    assert code == 0, err[-3000:]
    assert "berrut non-systematic (F)" in out and "learned mlp/mlp (F)" in out
    assert report is not None


@pytest.mark.slow
def test_serve_tail_smoke_test(tmp_path, trained_experiment, local_ray, capsys):
    """The tail benchmark end to end on digits: the three modes its targets compare, interleaved, the
    comparison printed, JSON last (every registered mode runs in tests/serve/test_modes.py)."""
    code, out, summary, err = run_benchmark("serve_tail.py", "--smoke-test", "--json", "--experiment",
                                       experiment_copy(trained_experiment, tmp_path), capsys=capsys)
    assert code == 0, err[-3000:]
    lines = out.strip().splitlines()
    assert any(line.startswith("coded ") for line in lines) and "tail gap, replication / coded" in out
    assert set(summary["comparisons"][0]["tail"]) == {"coded", "replication", "hedged"}
    assert summary["comparisons"][0]["deadline_ms"] == 50.0 and "deadline 50.0 ms (given)" in out
    for mode in summary["comparisons"][0]["tail"].values():
        assert mode["sent"] == mode["direct"] + mode["decoded"] + mode["failed"] + (mode["sent"] - mode["measured"])


def test_time_to_accuracy_smoke_test(capsys):
    code, out, report, err = run_benchmark("time_to_accuracy.py", "--smoke-test", "--no-progress", "--json", capsys=capsys)
    assert code == 0, err[-3000:]
    assert [row["target"] for row in report["targets"]] == ["published@2", "published@4"]
    assert report["recipes"]["fast"]["lr_schedule"] == "cosine" and set(report["curves"]) == {"published", "fast"}


def test_gpu_throughput_smoke_test_runs_on_cpu(capsys):
    """ResNet-18 on 64 random images, twice, on one CPU thread."""
    code, out, report, err = run_benchmark("gpu_throughput.py", "--device", "cpu", "--smoke-test", "--json", capsys=capsys)
    assert code == 0, err[-3000:]
    assert report["device"] == "cpu" and report["trainer_images_per_second"] > 0 and report["bare_images_per_second"] > 0


def test_train_speed_smoke_test(capsys):
    """A digits base model, five parity epochs, five reference batches."""
    code, out, report, err = run_benchmark("train_speed.py", "--smoke-test", "--json", capsys=capsys)
    assert code == 0, err[-3000:]
    assert "training images/s" in out and "speedup" in out
    assert "targets (smoke test on digits, not meaningful): speedup_ge_3x" in out
    assert report["workload"].startswith("digits ") and report["smoke_test"] is True
    assert report["parity_ray"]["epochs"] == 5 and report["reference"]["batches"] == 5
    assert report["parity_ray"]["images_per_second"] > 0 and report["reference"]["images_per_second"] > 0
    assert set(report["targets"]) == {"speedup_ge_3x", "startup_le_5s", "degraded_ge_0_90_within_budget"}


@pytest.mark.slow  # two digits trials through Tune on the session's Ray, the same two in process
def test_tune_overhead_smoke_test(local_ray, capsys):
    code, out, report, err = run_benchmark("tune_overhead.py", "--smoke-test", "--json", capsys=capsys)
    assert code == 0, err[-3000:]
    assert "trials completed under Tune         2/2" in out
    assert "median overhead (vs_inprocess) <= 3 s" in out and "(smoke test, not meaningful)" in out
    assert [row["status"] for row in report["trials"]] == ["COMPLETED", "COMPLETED"]
    assert all(row["overhead_vs_inprocess"] is not None for row in report["trials"])
    assert report["targets"]["all_trials_completed"] is True and "median_overhead_le_3s" in report["targets"]
    assert report["median_overhead_vs_inprocess_seconds"] is not None and report["smoke_test"] is True


@pytest.mark.slow  # 2-2.5 min: `parity-ray quickstart --smoke-test` as a real process (digits grid, Serve, report)
def test_quickstart_runs_the_whole_workflow_offline_within_its_time(tmp_path, capfd, monkeypatch):
    """Tune grid -> simulation -> report in one command, timed; with no MNIST here the grid keeps to digits."""
    monkeypatch.delenv("PARITY_RAY_DATA", raising=False)
    code, out, report, err = run_benchmark("quickstart_time.py", "--smoke-test", "--json", "--storage", str(tmp_path),
                                      capsys=capfd)
    assert code == 0, err[-3000:]
    assert "quickstart end to end:" in out and "target <= 300 s" in out
    assert "smoke test, not meaningful" in out and "replication" in out
    assert report["target_seconds"] == 300.0 and report["wall_seconds"] > 0 and report["smoke_test"] is True
    assert set(report["steps"]) == {"ray_start", "tune", "simulate", "report"}

    summary = report["quickstart"]
    assert "MNIST is not on this machine" in err
    experiment = tmp_path / "q1"
    assert summary["experiment"] == str(experiment) and summary["report"] == str(experiment / "report" / "index.html")
    runs = pd.read_parquet(experiment / "tables" / "runs.parquet")
    assert set(runs.status) == {"COMPLETED"} and set(runs.dataset) == {"digits"} and len(runs) == 4
    simulations = pd.read_parquet(experiment / "tables" / "simulations")  # one file per simulation in the folder
    assert list(simulations["mode"]) == ["coded", "replication"]
    assert (simulations.sent == simulations.measured + 2).all()
    assert (simulations.direct + simulations.decoded + simulations.failed == simulations.measured).all()
    assert "degraded" in (experiment / "report" / "index.html").read_text()
    assert "report" in out and "coded" in out


def test_locator_smoke_test(capsys):
    """The error locator against the previous one: exact on F = identity, measured on a digits MLP."""
    code, out, report, err = run_benchmark("locator.py", "--smoke-test", "--json", capsys=capsys)
    assert code == 0, err[-3000:]
    assert report["identity_exact"] is True
    assert {row["F"] for row in report["rows"]} == {"identity", "base-mlp on digits"}
    assert all(0.0 <= row["previous"] <= 1.0 for row in report["rows"])
