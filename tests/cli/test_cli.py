"""The ``parity-ray`` command line as a user runs it: real files; ``main(argv)`` in process where the
output is all there is to check, a real subprocess for the entry point and a SIGKILL (tests/cli/runner.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from parity_ray.coders import list_decoders, list_encoders
from parity_ray.losses import list_losses
from parity_ray.models import list_models

from tests.cli.runner import REPO, assert_usage_error, cli, cli_process, process_env


def test_train_json_summary_is_last_stdout_line(tmp_path, data_root):
    """The entry point as a process: ``python -m parity_ray train ... --json``."""
    result = cli_process(
        "train", "--dataset", "digits", "--k", "3", "--encoder", "concatenation", "--epochs", "2",
        "--base-epochs", "5", "--out", str(tmp_path), "--json", "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("run_dir", "dataset", "model", "k", "r", "encoder", "decoder", "available_accuracy",
                "degraded_accuracy", "reconstruction_accuracy", "epochs", "startup_seconds", "train_seconds"):
        assert key in summary
    assert summary["k"] == 3 and summary["encoder"] == "concatenation" and summary["epochs"] == 2
    assert "degraded-mode accuracy" in result.stdout  # the human summary table precedes it
    assert Path(summary["run_dir"], "checkpoints", "best.pt").exists()


def test_config_file_yaml_with_flag_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: digits\nk: 2\nepochs: 5\nbase_epochs: 5\nloss: kl\n")
    result = cli("train", "--config", str(config), "--epochs", "1", "--out", str(tmp_path / "runs"), "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["loss"] == "kl" and summary["epochs"] == 1


def test_smoke_test_is_one_tiny_epoch(tmp_path, data_root):
    result = cli("train", "--dataset", "mnist", "--data-root", data_root, "--out", str(tmp_path), "--smoke-test", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["device"] == "cpu"


def test_foreign_weights_through_the_cli(tmp_path, data_root, foreign_mlp):
    result = cli(
        "train", "--dataset", "mnist", "--model", "base-mlp", "--base-weights", foreign_mlp, "--input-norm", "none",
        "--data-root", data_root, "--out", str(tmp_path), "--epochs", "1", "--max-train-batches", "5", "--json", "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["available_accuracy"] == 0.9793
    assert summary["base_model_source"] == "imported"


def test_quickstart_picks_the_next_free_name(tmp_path):
    from parity_ray.cli.quickstart import _free_name

    assert _free_name(str(tmp_path)) == "q1"
    (tmp_path / "q1").mkdir()
    (tmp_path / "q1" / "experiment.json").write_text("{}")
    assert _free_name(str(tmp_path)) == "q2"


def test_quickstart_keeps_to_digits_without_mnist_and_takes_it_when_found(tmp_path, monkeypatch, data_root):
    """No data root, no $PARITY_RAY_DATA, nothing in the cache: the quick grid's digits cells, said in
    one line; MNIST found in $PARITY_RAY_DATA: the whole grid (the README test runs it with --data-root)."""
    from parity_ray.cli.quickstart import _grid_overrides

    said = []
    monkeypatch.setenv("PARITY_RAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PARITY_RAY_DATA", raising=False)
    assert _grid_overrides(None, said.append) == ["dataset=digits", "epochs=40"]
    assert said == ["MNIST is not on this machine (pass --data-root or set PARITY_RAY_DATA): the grid keeps to its digits cells"]
    monkeypatch.setenv("PARITY_RAY_DATA", data_root)
    assert _grid_overrides(None, said.append) == [] and len(said) == 1


def test_quickstart_refuses_remote_storage(tmp_path):
    assert_usage_error(cli("quickstart", "--storage", "s3://bucket/prefix"), "--storage must be a local folder")


def test_list_names_every_registry():
    result = cli("list", "--json")
    kinds = json.loads(result.stdout)
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100"} <= set(kinds["datasets"])
    assert {"base-mlp", "lenet5", "resnet18"} <= set(kinds["models"])
    assert set(kinds["encoders"]) >= {"addition", "concatenation", "mlp", "conv", "berrut"}
    assert set(kinds["decoders"]) >= {"subtraction", "mlp", "berrut"}
    assert set(kinds["losses"]) >= {"mse", "kl", "ce"}
    assert set(kinds["augmentations"]) >= {"none", "crop-flip", "resized-crop-flip"}
    assert set(kinds["stragglers"]) >= {"none", "slow", "crash"}
    assert set(kinds["modes"]) >= {"coded", "coded-hedged", "replication", "hedged", "none"}
    try:
        from parity_ray.recipes import list_recipes
    except ImportError:
        assert "recipes" not in kinds
    else:
        assert kinds["recipes"] == list_recipes()
    text = cli("list").stdout
    for kind in kinds:
        assert text.count(f"{kind} ") == 1, kind  # one line per registry


# --------------------------------------------------------------------------- bad input

BAD_FLAGS = {
    "unknown dataset": (["--dataset", "mnsit"], ["unknown dataset 'mnsit'", "did you mean 'mnist'"]),
    # the valid choices are every registered name, in order
    "unknown model": (["--model", "vgg99"], ["unknown model 'vgg99'", ", ".join(list_models())]),
    "unknown encoder": (["--encoder", "xor"], ["unknown encoder 'xor'", ", ".join(list_encoders())]),
    "unknown decoder": (["--decoder", "magic"], ["unknown decoder 'magic'", ", ".join(list_decoders())]),
    "unknown loss": (["--loss", "hinge"], ["unknown loss 'hinge'", ", ".join(list_losses())]),
    "k below 2": (["--k", "1"], ["k must be >= 2"]),
    "k not a number": (["--k", "two"], ["invalid int value: 'two'"]),
    "concatenation cannot tile": (["--encoder", "concatenation", "--k", "7"], ["cannot tile k=7", "valid k for this input: 2, 3, 4"]),
    "unknown flag": (["--epoch", "3"], ["unrecognized arguments"]),
    "weights without preprocessing": (["--base-weights", "x.pt"], ["--input-norm dataset|none|MEANS/STDS"]),
    "bad class-spec": (["--model", '{"cls": "nowhere.Net"}'], ["cannot import module 'nowhere'"]),
    "r beyond a linear code": (["--k", "4", "--r", "5"], ["encoder 'addition' supports r <= 4"]),
    "byzantine it cannot locate": (["--encoder", "berrut", "--decoder", "berrut", "--parity-model", "base", "--epochs", "0",
                                    "--k", "4", "--r", "2", "--byzantine", "1"], ["cannot locate 1 Byzantine", "needs r >= 2E + 2 = 4",
                                                                                "valid byzantine for k=4, r=2: 0..0"]),
    "a slot parity model on a code without slots": (["--parity-model", "slot-mlp"], [
        "parity model 'slot-mlp' reads the k queries as slots", "encoder 'addition' does not lay out", "choose encoder 'projection'"]),
    "projection beyond a linear code": (["--encoder", "projection", "--parity-model", "slot-mlp", "--k", "4", "--r", "5"],
                                        ["encoder 'projection' supports r <= 4"]),
    "byzantine without berrut": (["--byzantine", "1", "--r", "2"], ["cannot locate Byzantine workers"]),
    "decoder reads not that encoder": (["--encoder", "addition", "--decoder", "berrut"], ["can only read the berrut encoder"]),
    "subtraction of a non-systematic code": (["--encoder", "berrut", "--decoder", "subtraction", "--no-systematic"],
                                             ["decoder 'subtraction' decodes systematic codes only"]),
    "corrected subtraction of a non-systematic code": (["--encoder", "berrut", "--decoder", "corrected-subtraction", "--no-systematic"],
                                                       ["decoder 'corrected-subtraction' decodes systematic codes only"]),
    "learned decoder of a code it cannot read": (["--encoder", "mlp", "--decoder", "mlp", "--no-systematic"],
                                                 ["encoder 'mlp' is systematic only"]),
    "epochs 0 for a code that trains": (["--epochs", "0"], ["--epochs 0 evaluates without training", "parity models"]),
    "epochs for a code that trains nothing": (["--encoder", "berrut", "--decoder", "berrut", "--parity-model", "base"],
                                              ["nothing to train", "--epochs 0"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags_exit_2_with_one_line_and_write_nothing(case, tmp_path):
    flags, fragments = BAD_FLAGS[case]
    out = tmp_path / "runs"
    result = cli("train", "--dataset", "digits", "--out", str(out), *flags)
    assert_usage_error(result, *fragments)
    assert not out.exists()


def test_missing_data_names_files_and_folders(tmp_path):
    out = tmp_path / "runs"
    (tmp_path / "nowhere").mkdir()  # a data root that exists but lacks the files
    result = cli("train", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "nowhere"), "--no-download", "--out", str(out))
    line = assert_usage_error(result, "dataset 'fashion-mnist' not found", "train-images-idx3-ubyte", str(tmp_path / "nowhere"))
    assert "PARITY_RAY_DATA" in line
    assert not out.exists()


def test_corrupt_weights_file(tmp_path, data_root):
    bad = tmp_path / "model.t7"
    bad.write_bytes(os.urandom(2048))
    out = tmp_path / "runs"
    result = cli("train", "--dataset", "mnist", "--data-root", data_root, "--base-weights", str(bad), "--input-norm", "none", "--out", str(out))
    assert_usage_error(result, "is not a readable PyTorch state_dict")
    assert not out.exists()


def test_mismatched_weights_file(tmp_path, data_root, foreign_mlp):
    out = tmp_path / "runs"
    result = cli("train", "--dataset", "mnist", "--model", "lenet5", "--data-root", data_root,
                 "--base-weights", foreign_mlp, "--input-norm", "none", "--out", str(out))
    assert_usage_error(result, "does not match model 'lenet5'", "missing keys")
    assert not out.exists()


@pytest.mark.parametrize(
    "content,fragments",
    [
        ('{"dataset": "digits", "epochz": 3}', ["unknown config key 'epochz'", "did you mean 'epochs'"]),
        ('{"dataset": "digits", "k": "two"}', ["config key 'k' must be int"]),
        ('{"dataset": "digits", "k": 2', ["is not valid JSON"]),
    ],
)
def test_bad_config_file(tmp_path, content, fragments):
    config = tmp_path / "bad.json"
    config.write_text(content)
    out = tmp_path / "runs"
    assert_usage_error(cli("train", "--config", str(config), "--out", str(out)), *fragments)
    assert not out.exists()


def test_output_dir_holding_a_different_run(tmp_path):
    common = ["train", "--dataset", "digits", "--base-epochs", "3", "--epochs", "1", "--out", str(tmp_path), "--name", "r1", "--no-progress"]
    assert cli(*common).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "r1").rglob("*")}
    result = cli(*common, "--k", "3")
    assert_usage_error(result, "holds a different run", "k: 2 -> 3")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "r1").rglob("*")} == before
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert_usage_error(cli("train", "--dataset", "digits", "--out", str(tmp_path), "--name", "stranger"), "holds no parity-ray run")


def test_sigkill_mid_run_then_rerun_resumes_exactly(tmp_path):
    """Kill the process between epochs, run the same command again: same numbers as uninterrupted."""
    import signal
    import time

    args = ["train", "--dataset", "digits", "--base-epochs", "5", "--epochs", "40", "--no-progress", "--json"]
    straight = cli(*args, "--out", str(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen([sys.executable, "-m", "parity_ray", *args, "--out", str(tmp_path / "b")], cwd=REPO, env=process_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = None
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list((tmp_path / "b").glob("*/checkpoints/latest.pt"))
        if found and torch.load(found[0], weights_only=True)["epoch"] >= 3:
            latest = found[0]
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert latest is not None
    killed_at = torch.load(latest, weights_only=True)["epoch"]
    assert killed_at < 40, "the run finished before it could be killed; make it longer"
    resumed = cli(*args, "--out", str(tmp_path / "b"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    rows = lambda root: [json.loads(line) for line in next(root.glob("*/metrics.jsonl")).read_text().splitlines()]
    assert rows(tmp_path / "b") == rows(tmp_path / "a")


def test_berrut_with_epochs_0_through_the_cli(tmp_path):
    """The issue's first command on digits: no training, every artifact written, both measures per e."""
    result = cli("train", "--dataset", "digits", "--model", "lenet5", "--k", "4", "--r", "2", "--encoder", "berrut",
                 "--decoder", "berrut", "--epochs", "0", "--base-epochs", "3",
                 "--out", str(tmp_path), "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 0 and summary["code_family"] == "berrut" and summary["systematic"] is False
    assert summary["worker"] == "base"  # no --parity-model: an evaluate-only Berrut code runs F on every worker
    for e in (1, 2):
        assert 0 <= summary[f"degraded_accuracy_e{e}"] <= 1 and 0 <= summary[f"all_accuracy_e{e}"] <= 1
    assert summary["degraded_accuracy"] == summary["degraded_accuracy_e1"]
    assert "degraded_accuracy_e3" not in summary
    run_dir = Path(summary["run_dir"])
    for name in ("summary.json", "metrics.jsonl", "predictions.parquet", "config.json"):
        assert (run_dir / name).exists()
    assert "e=2" in result.stdout  # the human summary lists every e


def test_every_config_flag_says_what_it_does_and_its_default():
    """--help comes from the config fields' own documentation, one source of truth."""
    import dataclasses

    from parity_ray.config import TrainConfig, field_docs

    docs = field_docs()
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(docs)
    text = "".join(cli("train", "--help").stdout.split())  # argparse wraps lines, also at hyphens
    for field in dataclasses.fields(TrainConfig):
        assert f"--{field.name.replace('_', '-')}" in text
        assert "".join(docs[field.name].split()) in text, field.name
    assert "(default:'addition')" in text and "(default:30)" in text


def test_report_help_takes_one_experiment_or_several():
    result = cli("report", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "PATH [PATH ...]" in text and "report A B --out DIR" in text
    assert "(required with several experiments)" in text
    # Several experiments and no --out: one line, exit 2, before anything is read or written.
    assert_usage_error(cli("report", "results/a", "results/b"), "a report of 2 experiments", "--out DIR")
