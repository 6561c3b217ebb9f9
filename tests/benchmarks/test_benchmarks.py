"""Benchmarks are entry points too: their --smoke-test runs the whole script on tiny work.

Each script's ``main(argv)`` runs in this process, on the session's Ray and the session's base-model
cache (a base model another test trained is reused, as a user's second run reuses it). The sweep
benchmark's smoke test is ``tests/serve/test_sweep.py::test_sweep_matches_a_real_serve_run``. The
quickstart benchmark times ``parity-ray quickstart`` as a real subprocess, which is also the
suite's end-to-end check of that command without MNIST. The README test (tests/docs) runs every
benchmark's ``--smoke-test`` as the README writes it, ``serve_tail`` and ``tune_overhead`` only there.
"""

from __future__ import annotations


from tests.cli.runner import run_benchmark


def test_codes_smoke_test(capsys):
    """Every code family trained a little on digits (a few seconds)."""
    code, out, report, err = run_benchmark("codes.py", "--smoke-test", "--no-progress", "--json", capsys=capsys)
    assert code == 0, err[-3000:]
    assert "berrut non-systematic (F)" in out and "learned mlp/mlp (F)" in out
    assert report is not None


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


def test_locator_smoke_test(capsys):
    """The error locator against the previous one: exact on F = identity, measured on a digits MLP."""
    code, out, report, err = run_benchmark("locator.py", "--smoke-test", "--json", capsys=capsys)
    assert code == 0, err[-3000:]
    assert report["identity_exact"] is True
    assert {row["F"] for row in report["rows"]} == {"identity", "base-mlp on digits"}
    assert all(0.0 <= row["previous"] <= 1.0 for row in report["rows"])


def test_a_benchmark_refuses_bad_input_in_one_line(tmp_path):
    """A benchmark run as a script answers bad input as the CLI does: one line naming it, exit 2."""
    import subprocess
    import sys

    from tests.cli.runner import REPO

    for argv, says in [(["--experiment", str(tmp_path / "nope"), "--smoke-test"], "holds no experiment tables"),
                       (["--mode", "coded,bogus", "--smoke-test"], "--mode: unknown bogus; valid choices: ")]:
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sweep.py"), *argv], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2 and says in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr and says in done.stderr.strip().splitlines()[-1] and ": error: " in done.stderr.strip().splitlines()[-1]
        assert not list(tmp_path.iterdir()), "nothing written"
