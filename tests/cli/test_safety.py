"""Files the CLI reads are used or refused: exported runs, tampered checkpoints, explicit paths.

One tiny run with a learned code (mlp encoder and decoder) is trained through the CLI, and a
one-run experiment is written around it through the real table writer (no Tune), so the
``--experiment E --run ID`` paths read real files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from parity_ray import results
from tests.cli.runner import assert_usage_error, cli

TRAIN = ["train", "--dataset", "digits", "--encoder", "mlp", "--decoder", "mlp", "--k", "2", "--epochs", "1",
         "--base-epochs", "2", "--no-progress"]


class RunsCode:
    """A pickle that runs a shell command when it is loaded without weights_only (what an attacker plants)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def make_experiment(folder: Path, run_dir: Path) -> str:
    """A one-run experiment (tables written by results.write_tables) holding a copy of ``run_dir`` (an
    experiment's stored paths are read only inside it, as Tune lays them out)."""
    record = json.loads((run_dir / "config.json").read_text())
    run_dir = Path(shutil.copytree(run_dir, folder / "trials" / run_dir.name))
    runs = pd.DataFrame([{"experiment": folder.name, "run_id": "r1", "status": "COMPLETED", "error": None,
                          "dataset": "digits", "model": "base-mlp", "k": 2, "config_json": json.dumps(record["config"]),
                          "base_model_id": "b1", "degraded_accuracy": 0.5, "available_accuracy": 0.9,
                          "checkpoint_uri": str(run_dir)}])
    base = pd.DataFrame([{"base_model_id": "b1", "input_norm": json.dumps(record["data"]["normalization"]),
                          "weights_uri": record["base_model"]["weights"]}])
    (folder / "experiment.json").write_text(json.dumps({"name": folder.name}))  # as run_experiment records it
    results.write_tables(str(folder), {"runs": runs, "base_models": base,
                                       "epochs": pd.DataFrame(columns=["run_id"]),
                                       "predictions": pd.DataFrame(columns=["run_id"])})
    return str(folder)


def train_tiny_run(root: Path) -> Path:
    """The tiny learned-code run of ``TRAIN``, trained through the CLI under ``root/runs``; its run folder."""
    result = cli(*TRAIN, "--out", str(root / "runs"), "--json")
    assert result.returncode == 0, result.stderr
    return Path(json.loads(result.stdout.strip().splitlines()[-1])["run_dir"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    run_dir = train_tiny_run(root)
    return root, run_dir, make_experiment(root / "made", run_dir)


def served_run(experiment: str):
    from parity_ray.serving import resolve_run

    return resolve_run(experiment, "r1")


# --------------------------------------------------------------------------- export


def test_export_of_a_run_folder_reproduces_the_run_exactly(trained, tmp_path):
    from parity_ray.actors.codes import _build_coders
    from parity_ray.coders import ENCODERS
    from parity_ray.export import load_part
    from parity_ray.models import MODELS
    from parity_ray.serving import load_model

    _, run_dir, experiment = trained
    out = tmp_path / "export"
    result = cli("export", str(run_dir), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["parts"] == ["parity_0.json", "encoder.json", "decoder.json"]
    umask = os.umask(0)
    os.umask(umask)
    # ordinary modes (as open/mkdir give), not mkstemp's private 0600/0700: an export is handed on
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {p.name: 0o666 & ~umask for p in out.iterdir()}
    for part in ("parity_0", "encoder", "decoder"):
        state = torch.load(out / f"{part}.pt", weights_only=True)
        assert state and all(torch.is_tensor(v) for v in state.values())  # a plain state_dict
        manifest = json.loads((out / f"{part}.json").read_text())
        assert manifest["k"] == 2 and manifest["r"] == 1 and manifest["input_shape"] == [1, 8, 8]
        assert manifest["versions"]["torch"] and manifest["state_dict"] == f"{part}.pt"

    run = served_run(experiment)
    x = torch.randn(16, 1, 8, 8)
    worker = load_model(run, "parity", 0)
    assert torch.equal(load_part(str(out / "parity_0.json"))(x), worker(x))
    # by hand, from the JSON alone: registry + kwargs, then the state_dict
    manifest = json.loads((out / "parity_0.json").read_text())
    assert manifest["registry"] == "model" and manifest["name"] == "base-mlp"
    model = MODELS.create(manifest["spec"], **{**manifest["kwargs"], "input_shape": tuple(manifest["input_shape"])})
    model.load_state_dict(torch.load(out / "parity_0.pt", weights_only=True))
    assert torch.equal(model.eval()(x), worker(x))

    encoder, decoder = _build_coders(run)
    groups = torch.randn(4, 2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_part(str(out / "encoder.json"))(groups), encoder(groups))
    manifest = json.loads((out / "encoder.json").read_text())
    assert ENCODERS.get(manifest["name"]) is type(encoder)
    outputs, available = torch.randn(4, 3, 10), torch.tensor([[True, False, True]] * 4)
    with torch.no_grad():
        assert torch.equal(load_part(str(out / "decoder.json")).decode(outputs, available), decoder.decode(outputs, available))


def test_export_of_an_experiment_run_by_id_or_best(trained, tmp_path):
    _, run_dir, experiment = trained
    assert cli("export", str(run_dir), "--out", str(tmp_path / "folder")).returncode == 0
    for run in ("best", "r1"):
        out = tmp_path / run
        result = cli("export", "--experiment", experiment, "--run", run, "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert json.loads((out / "export.json").read_text())["run_id"] == "r1"
        for part in ("parity_0", "encoder", "decoder"):
            mine, theirs = (torch.load(d / f"{part}.pt", weights_only=True) for d in (out, tmp_path / "folder"))
            assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_export_bad_input_is_one_line_and_writes_nothing(trained, tmp_path):
    root, run_dir, experiment = trained
    out = tmp_path / "out"
    assert_usage_error(cli("export", "--out", str(out)), "needs a run folder")
    assert_usage_error(cli("export", str(run_dir), "--experiment", experiment, "--out", str(out)), "not both")
    assert_usage_error(cli("export", str(tmp_path / "nope"), "--out", str(out)), "does not exist", str(tmp_path / "nope"))
    assert_usage_error(cli("export", str(root), "--out", str(out)), "is not a run folder")
    assert_usage_error(cli("export", "--experiment", experiment, "--run", "r9", "--out", str(out)), "unknown run 'r9'")
    assert not out.exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    assert_usage_error(cli("export", str(run_dir), "--out", str(full)), "is not an empty folder")
    assert [p.name for p in full.iterdir()] == ["mine.txt"]


# --------------------------------------------------------------------------- tampered files


def plant(path: Path, marker: Path, keep: dict = None) -> None:
    """Overwrite ``path`` with a checkpoint-looking dict carrying a pickled callable."""
    torch.save({**(keep or {}), "epoch": 1, "hook": RunsCode(marker)}, path)


@pytest.mark.parametrize("where", ["resume", "serve", "simulate", "export", "base-weights"])
def test_a_tampered_checkpoint_is_refused_and_runs_nothing(trained, tmp_path, where):
    root, run_dir, _ = trained
    marker = tmp_path / "pwned"
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    before, refusal = None, "cannot be loaded safely"
    if where == "resume":
        plant(copy / "checkpoints" / "latest.pt", marker)
        before = sorted(p.name for p in copy.rglob("*"))
        result = cli(*TRAIN, "--epochs", "2", "--out", str(tmp_path / "runs"))
        fragment = "latest.pt"
    elif where == "base-weights":
        evil = tmp_path / "model.pt"
        plant(evil, marker)
        result = cli("train", "--dataset", "digits", "--base-weights", str(evil), "--input-norm", "none",
                     "--out", str(tmp_path / "new"))
        fragment, refusal = str(evil), "is not a readable PyTorch state_dict"
        assert not (tmp_path / "new").exists()
    else:
        plant(copy / "checkpoints" / "best.pt", marker)
        experiment = make_experiment(tmp_path / "exp", copy)
        fragment = "best.pt"
        if where == "serve":
            result = cli("serve", "--experiment", experiment, "--run", "r1", "--write-config", str(tmp_path / "app.yaml"))
            assert not (tmp_path / "app.yaml").exists()
        elif where == "simulate":
            result = cli("simulate", "--experiment", experiment, "--run", "r1", "--queries", "4", "--warmup", "0")
            assert not (tmp_path / "exp" / "tables" / "queries").exists()
        else:
            result = cli("export", str(copy), "--out", str(tmp_path / "export"))
            assert not (tmp_path / "export").exists()
    line = assert_usage_error(result, refusal, fragment)
    assert "GLOBAL" in line and "system" in line  # names what it refused
    assert not marker.exists()  # nothing ran
    if before is not None:
        assert sorted(p.name for p in copy.rglob("*")) == before


def test_the_planted_pickle_does_run_code_when_loaded_unsafely(tmp_path):
    """The payload of these tests is real: torch.load without weights_only would run it."""
    marker = tmp_path / "pwned"
    plant(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


# --------------------------------------------------------------------------- explicit paths


def test_explicit_data_root_is_used_or_refused(tmp_path, data_root):
    out = tmp_path / "runs"
    missing = tmp_path / "missing"
    assert_usage_error(cli("train", "--dataset", "digits", "--data-root", str(missing), "--out", str(out)),
                       f"data root '{missing}' does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    # MNIST is in $PARITY_RAY_DATA, but the run was pointed at another folder: no fallback
    env_before = os.environ.get("PARITY_RAY_DATA")
    os.environ["PARITY_RAY_DATA"] = data_root
    try:
        result = cli("train", "--dataset", "mnist", "--data-root", str(empty), "--no-download", "--out", str(out))
    finally:
        os.environ.pop("PARITY_RAY_DATA") if env_before is None else os.environ.update(PARITY_RAY_DATA=env_before)
    line = assert_usage_error(result, "dataset 'mnist' not found", str(empty))
    assert data_root not in line
    assert not out.exists()


def test_explicit_data_root_of_other_commands(trained, tmp_path):
    _, _, experiment = trained
    missing = str(tmp_path / "missing")
    assert_usage_error(cli("quickstart", "--storage", str(tmp_path / "results"), "--data-root", missing), missing)
    assert_usage_error(cli("quickstart", "--storage", str(tmp_path / "results"), "--data-root", str(tmp_path)),
                       "holds no MNIST")
    assert not (tmp_path / "results").exists()
    assert_usage_error(cli("simulate", "--experiment", experiment, "--data-root", missing), missing)
    assert_usage_error(cli("report", experiment, "--data-root", missing, "--out", str(tmp_path / "report")), missing)
    assert not (tmp_path / "report").exists()


def test_explicit_weights_config_and_experiment_paths(trained, tmp_path):
    root, _, experiment = trained
    out = tmp_path / "runs"
    assert_usage_error(cli("train", "--dataset", "digits", "--base-weights", str(tmp_path / "w.pt"), "--input-norm", "none",
                           "--out", str(out)), f"weights file '{tmp_path / 'w.pt'}' does not exist")
    assert_usage_error(cli("train", "--config", str(tmp_path / "c.yaml"), "--out", str(out)),
                       f"config file '{tmp_path / 'c.yaml'}' does not exist")
    assert not out.exists()
    assert_usage_error(cli("simulate", "--experiment", str(tmp_path / "gone")), f"experiment '{tmp_path / 'gone'}' does not exist")
    # a parent folder of experiments is not an experiment: never merged, never written into
    assert_usage_error(cli("serve", "--experiment", str(root), "--write-config", str(tmp_path / "a.yaml")),
                       "holds no experiment tables")
    assert not (tmp_path / "a.yaml").exists()


def test_resume_needs_the_storage_it_names(tmp_path):
    storage = tmp_path / "elsewhere"
    result = cli("tune", "quick", "--name", "q1", "--storage", str(storage), "--resume", "--set", "dataset=digits")
    assert_usage_error(result, "--resume: no experiment 'q1'", str(storage))
    assert not storage.exists()
