"""Benchmarks are entry points too: their --smoke-test runs the whole script on tiny work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["codes.py"])
def test_benchmark_smoke_test(script, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARITY_RAY_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke-test", "--no-progress", "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "berrut non-systematic (F)" in result.stdout and "learned mlp/mlp (F)" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("{")


def own_copy(experiment: str, tmp_path) -> str:
    """A copy of the shared trained experiment: a benchmark's simulations land in it, not in the original."""
    import shutil

    return str(shutil.copytree(experiment, tmp_path / "experiment"))


@pytest.mark.slow
def test_serve_tail_smoke_test(tmp_path, trained_experiment):
    """The tail benchmark end to end on digits: every mode interleaved, the comparison printed, JSON last."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARITY_RAY_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serve_tail.py"), "--smoke-test", "--json",
                             "--experiment", own_copy(trained_experiment, tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("coded ") for line in lines) and "tail gap, replication / coded" in result.stdout
    import json

    summary = json.loads(lines[-1])
    assert set(summary["comparisons"][0]["tail"]) == {"coded", "coded-hedged", "replication", "hedged", "none"}
    for mode in summary["comparisons"][0]["tail"].values():
        assert mode["sent"] == mode["direct"] + mode["decoded"] + mode["failed"] + (mode["sent"] - mode["measured"])


@pytest.mark.slow
def test_sweep_benchmark_smoke_test(tmp_path, trained_experiment):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARITY_RAY_CACHE": str(tmp_path / "cache"), "RAY_AUTH_MODE": "disabled"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sweep.py"), "--smoke-test", "--json",
                             "--experiment", own_copy(trained_experiment, tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "speed: 20,000 queries over 100 replicas" in result.stdout and "validation (" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("{")


@pytest.mark.slow  # ~15 s CPU: three tiny digits runs in one process
def test_time_to_accuracy_smoke_test(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARITY_RAY_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "time_to_accuracy.py"), "--smoke-test", "--no-progress",
                             "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["target"] for row in report["targets"]] == ["published@2", "published@4"]
    assert report["recipes"]["fast"]["lr_schedule"] == "cosine" and set(report["curves"]) == {"published", "fast"}


@pytest.mark.slow  # ResNet-18 on 64 random images, twice, on one CPU thread
def test_gpu_throughput_smoke_test_runs_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARITY_RAY_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"), "--device", "cpu", "--smoke-test",
                             "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["device"] == "cpu" and report["trainer_images_per_second"] > 0 and report["bare_images_per_second"] > 0


def run_benchmark(script: str, tmp_path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARITY_RAY_CACHE": str(tmp_path / "cache"), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke-test", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # 25-40 s: a digits base model, five parity epochs, five reference batches
def test_train_speed_smoke_test(tmp_path):
    result = run_benchmark("train_speed.py", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training images/s" in result.stdout and "speedup" in result.stdout
    assert "targets (smoke test on digits, not meaningful): speedup_ge_3x" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["workload"].startswith("digits ") and report["smoke_test"] is True
    assert report["parity_ray"]["epochs"] == 5 and report["reference"]["batches"] == 5
    assert report["parity_ray"]["images_per_second"] > 0 and report["reference"]["images_per_second"] > 0
    assert set(report["targets"]) == {"speedup_ge_3x", "startup_le_5s", "degraded_ge_0_90_within_budget"}


@pytest.mark.slow  # 60-100 s: a local Ray, two digits trials through Tune, the same two in-process
def test_tune_overhead_smoke_test(tmp_path):
    result = run_benchmark("tune_overhead.py", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trials completed under Tune         2/2" in result.stdout
    assert "median overhead (vs_inprocess) <= 3 s" in result.stdout and "(smoke test, not meaningful)" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["status"] for row in report["trials"]] == ["COMPLETED", "COMPLETED"]
    assert all(row["overhead_vs_inprocess"] is not None for row in report["trials"])
    assert report["targets"]["all_trials_completed"] is True and "median_overhead_le_3s" in report["targets"]
    assert report["median_overhead_vs_inprocess_seconds"] is not None and report["smoke_test"] is True


@pytest.mark.slow  # 2-2.5 min: `parity-ray quickstart --smoke-test` (digits grid, Serve simulation, report)
def test_quickstart_time_smoke_test(tmp_path):
    result = run_benchmark("quickstart_time.py", tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "quickstart end to end:" in result.stdout and "target <= 300 s" in result.stdout
    assert "smoke test, not meaningful" in result.stdout and "replication" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["target_seconds"] == 300.0 and report["wall_seconds"] > 0 and report["smoke_test"] is True
    assert set(report["steps"]) == {"ray_start", "tune", "simulate", "report"}
