"""``parity-ray tune`` as a user runs it: progress, bad input, and a driver killed mid-grid.

Bad input is checked in process (``main(argv)``); the progress check and the SIGKILL run as real
processes, because what reaches the terminal and what survives a killed driver are the point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity_ray import results
from tests.cli.runner import REPO, assert_usage_error, cli, interruptible, process_env

FAST = ["--set", "dataset=digits", "--set", "base_epochs=5", "--set", "encoder=addition"]
SLOW = json.dumps({"cls": "tests.experiment.faulty.SlowMLP", "delay_s": 0.05})
EPOCHS = 12


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["nowhere.py"], ["search space file 'nowhere.py' does not exist"]),
        (["quik"], ["unknown search space 'quik'", "did you mean 'quick'"]),
        (["quick", "--set", "epoch=3"], ["--set key 'epoch' is not a config key", "did you mean 'epochs'"]),
        (["quick", "--set", "k=two"], ["config key 'k' must be int"]),
        (["quick", "--set", "dataset=mnsit"], ["dataset 'mnsit' is not registered", "did you mean 'mnist'"]),
        (["quick", "--gpus-per-trial", "1"], ["no node can ever run a trial needing 1 GPU"]),
        (["quick", "--cpus-per-trial", "64"], ["no node can ever run a trial needing 64 CPU"]),
        (["quick", "--resume"], ["--resume: no experiment 'x'"]),
    ],
)
def test_bad_tune_input_exits_2_and_writes_nothing(tmp_path, local_ray, args, fragments):
    storage = tmp_path / "results"
    result = cli("tune", *args, "--name", "x", "--storage", str(storage))
    assert_usage_error(result, *fragments)
    assert not (storage / "x").exists()


def _checkpoints(storage: Path) -> int:
    return len(list(storage.glob("*/*/checkpoint_*")))


@pytest.mark.slow
def test_driver_sigkill_then_resume_completes_with_one_row_per_trial(tmp_path, local_ray):
    storage = tmp_path / "results"
    # 12 epochs, each slowed to about half a second (SlowMLP): time to kill the driver mid-grid
    args = ["tune", "quick", *FAST, "--set", f"epochs={EPOCHS}", "--set", "k=[2,3]", "--set", f"parity_model={SLOW}",
            "--name", "killed", "--storage", str(storage)]
    proc = subprocess.Popen([sys.executable, "-m", "parity_ray", *args], cwd=REPO, env=process_env(RAY_AUTH_MODE="disabled"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and _checkpoints(storage) < 3:
            time.sleep(0.2)
        assert _checkpoints(storage) >= 3, "no checkpoint appeared"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started, by process group
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    assert not (storage / "killed" / "tables").exists()

    resumed = cli(*args, "--resume", "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["status"] == {"COMPLETED": 2}
    tables = results.load(str(storage / "killed"))
    assert len(tables.runs) == 2 and tables.runs.run_id.is_unique
    assert not tables.epochs.duplicated(["run_id", "epoch", "split", "metric"]).any()
    for run_id, group in tables.epochs.groupby("run_id"):
        assert sorted(group.epoch.unique()) == list(range(1, EPOCHS + 1)), run_id

    # resuming it with another space is refused, and changes nothing
    before = (storage / "killed" / "tables" / "runs.parquet").stat().st_mtime_ns
    other = cli(*args[:-4], "--set", "k=[2,4]", "--name", "killed", "--storage", str(storage), "--resume")
    assert_usage_error(other, "was started from space 'quick'", "not this one")
    assert (storage / "killed" / "tables" / "runs.parquet").stat().st_mtime_ns == before
    # starting it again without --resume is refused too
    assert_usage_error(cli(*args), "already exists", "--resume")


@pytest.mark.slow
def test_ctrl_c_while_base_models_train_stops_in_seconds_and_names_the_command_that_resumes(tmp_path):
    """SIGINT mid base-model stage (a base model slowed to ~0.2 s a batch): exit 130 within seconds,
    the last line is the exact command that resumes, and that command finishes the grid."""
    storage = tmp_path / "results"
    slow_base = json.dumps({"cls": "tests.experiment.faulty.SlowMLP", "delay_s": 0.2})
    args = ["tune", "quick", "--set", "dataset=digits", "--set", "base_epochs=1", "--set", "encoder=addition",
            "--set", "k=2", "--set", "epochs=1", "--set", f"model={slow_base}", "--name", "stopped",
            "--storage", str(storage), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "parity_ray", *args], cwd=REPO, env=process_env(RAY_AUTH_MODE="disabled"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=interruptible)
    try:
        for line in proc.stderr:  # until the base-model stage is under way
            if "base models: preparing" in line:
                break
        time.sleep(2.0)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)  # the driver's exit (its Ray's processes may hold stderr open a while longer)
        stopped_s = time.monotonic() - interrupted
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert stopped_s < 15, f"took {stopped_s:.1f} s to stop"
    last = err.strip().splitlines()[-1]
    assert last.startswith("parity-ray: interrupted; resume with: parity-ray tune quick ") and last.endswith(" --resume"), last
    assert not (storage / "stopped" / "tables").exists()

    import shlex

    resumed = cli(*shlex.split(last.split("resume with: parity-ray ", 1)[1]), "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["status"] == {"COMPLETED": 1}


# Progress lines as the README promises them: tests/docs/test_readme.py (the quick grid as a process).
