"""The training core: registry matrix, determinism, exact resume, checkpoints, losses."""

from __future__ import annotations

import json
import math

import pytest
import torch

from parity_ray import UsageError
from parity_ray.coders import erasure_patterns, list_encoders
from parity_ray.config import TrainConfig
from parity_ray.data import get_dataset_spec, list_datasets, load_data
from parity_ray.losses import create_loss, list_losses
from parity_ray.models import MODELS, create_model, list_models
from parity_ray.evaluation import forward_groups
from parity_ray.pipeline import FrozenBaseWorkers, ParityModels, build_code
from parity_ray.trainer import train

DIGITS = dict(dataset="digits", model="base-mlp", k=2, seed=1, base_epochs=20)


# The dataset each model was made for; a model not listed here is tried on digits.
HOME_DATASET = {"base-mlp": "mnist", "lenet5": "mnist", "resnet18": "cifar10", "resnet152": "cifar100",
                "vgg11": "speech-commands", "tv-resnet18": "cats-v-dogs"}


def _reads_slots(model: str) -> bool:
    """A parity model that reads k slots side by side (slot-mlp) is refused on any other encoder's coded query."""
    return bool(getattr(MODELS.resolve(model)[0], "reads_slots", False))


def dataset_model_encoder_matrix():
    """Every classification dataset with a small model, every model on its own dataset, every encoder:
    each plugin meets the others without the full product (ResNet-152 on 224 x 224 is minutes on CPU)."""
    datasets = [d for d in list_datasets() if get_dataset_spec(d).task == "classification"]
    triples = {(d, "lenet5", "addition") for d in datasets}
    triples |= {(HOME_DATASET.get(m, "digits"), m, "projection" if _reads_slots(m) else "addition") for m in list_models()}
    triples |= {(d, "lenet5", e) for d in ("digits", "cifar10") for e in list_encoders()}
    return sorted(triples)


@pytest.mark.parametrize("dataset,model,encoder", dataset_model_encoder_matrix())
def test_one_batch_forward_backward_for_every_dataset_model_coder(dataset, model, encoder, roots):
    """Every registered dataset, model and encoder trains one batch on CPU, end to end."""
    spec = get_dataset_spec(dataset)
    try:
        data = load_data(dataset, data_root=roots[dataset], val_size=2, download=False)
    except UsageError as exc:  # a dataset with an official validation split keeps it
        assert "official validation split" in str(exc)
        data = load_data(dataset, data_root=roots[dataset], download=False)
    n = min(8, len(data.train_y)) // 2 * 2
    base = create_model(model, input_shape=spec.input_shape, num_classes=spec.num_classes).eval()
    with torch.no_grad():
        base_outputs = base(data.train_x[:n])
    decoder = "berrut" if encoder == "berrut" else ("mlp" if encoder in ("mlp", "conv") else "subtraction")  # projection: subtraction
    config = TrainConfig.from_dict({"dataset": dataset, "model": model, "k": 2, "r": 1, "encoder": encoder,
                                    "decoder": decoder}).resolved()
    code = build_code(config, spec, base, "cpu")
    groups = torch.arange(n).view(n // 2, 2)
    patterns = erasure_patterns(code.n, 1)
    loss, batch = forward_groups(groups, data.train_x[:n], base_outputs, data.train_y[:n], code, create_loss("mse"), patterns)
    loss.backward()
    assert batch.decoded.shape == (n // 2, code.n, 2, spec.num_classes)
    grads = [p.grad for p in code.trainable_parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def run(tmp_path, name, **overrides):
    config = TrainConfig.from_dict({**DIGITS, "out": str(tmp_path), "name": name, **overrides})
    return train(config, progress=False, log=lambda _msg: None)


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    a = run(tmp_path, "a", epochs=3)
    b = run(tmp_path, "b", epochs=3)
    assert a.history == b.history
    c = run(tmp_path, "c", epochs=3, seed=2)
    assert [r["loss"] for r in c.history] != [r["loss"] for r in a.history]


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_continues_at_next_epoch_exactly(tmp_path, ema_decay):
    straight = run(tmp_path, "straight", epochs=4, ema_decay=ema_decay)
    first = run(tmp_path, "resumed", epochs=2, ema_decay=ema_decay)
    assert [r["epoch"] for r in first.history] == [1, 1, 1, 2, 2, 2]
    resumed = run(tmp_path, "resumed", epochs=4, ema_decay=ema_decay)
    assert resumed.history == straight.history  # no duplicated rows, identical numbers
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == straight.history
    assert resumed.summary["degraded_accuracy"] == straight.summary["degraded_accuracy"]


def test_a_weight_average_is_what_is_scored_and_kept_as_best(tmp_path):
    """With ema_decay, epochs are scored with the averaged weights; best.pt holds them, latest.pt the live ones."""
    plain = run(tmp_path, "plain", epochs=3)
    averaged = run(tmp_path, "ema", epochs=3, ema_decay=0.95)
    train_rows = lambda r: [row["loss"] for row in r.history if row["split"] == "train"]  # noqa: E731
    assert train_rows(plain) == train_rows(averaged)  # the same optimisation: the average only watches it
    assert [row["loss"] for row in plain.history if row["split"] == "val"] != \
        [row["loss"] for row in averaged.history if row["split"] == "val"]  # ... but scores other weights
    folder = averaged.run_dir / "checkpoints"
    best = torch.load(folder / "best.pt", weights_only=True)
    latest = torch.load(folder / "latest.pt", weights_only=True)
    assert latest["weight_average"]["steps"] > 0 and "weight_average" not in best
    if best["epoch"] == latest["epoch"]:  # the average, not the live weights, is what best.pt keeps
        live = [t for t in latest["parity_state"].values() if t.is_floating_point()]
        kept = [t for t in best["parity_state"].values() if t.is_floating_point()]
        assert any(not torch.equal(a, b) for a, b in zip(live, kept))
        assert all(torch.equal(a, b) for a, b in zip(latest["weight_average"]["tensors"], kept))
    with pytest.raises(UsageError, match="ema_decay"):
        TrainConfig.from_dict({**DIGITS, "ema_decay": 1.0}).validate()


def test_checkpoints_carry_config_seed_and_versions(tmp_path):
    result = run(tmp_path, "ck", epochs=2)
    for name in ("latest.pt", "best.pt"):
        ckpt = torch.load(result.run_dir / "checkpoints" / name, weights_only=True)
        assert ckpt["config"]["k"] == 2 and ckpt["config"]["batch_size"] == 64  # resolved defaults
        assert ckpt["seed"] == 1
        assert ckpt["versions"]["torch"] == torch.__version__ and "ray" in ckpt["versions"]
        assert ckpt["base_model"]["source"] == "trained"
    best = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == result.summary["best_epoch"]
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["data"]["split"]["val"] == 300 and record["versions"]["parity_ray"]


def test_base_model_is_trained_once_and_reused(tmp_path):
    cache = tmp_path / "cache"
    first = run(tmp_path, "one", epochs=1, base_cache=str(cache))
    models = list(p for p in cache.iterdir() if p.is_dir())
    assert len(models) == 1 and (models[0] / "model.pt").exists()
    stamp = (models[0] / "model.pt").stat().st_mtime_ns
    second = run(tmp_path, "two", epochs=1, k=3, base_cache=str(cache))
    assert (models[0] / "model.pt").stat().st_mtime_ns == stamp
    assert first.summary["base_model_id"] == second.summary["base_model_id"]
    assert first.summary["available_accuracy"] == second.summary["available_accuracy"] > 0.9


def test_a_different_run_in_the_same_folder_is_refused(tmp_path):
    run(tmp_path, "taken", epochs=1)
    with pytest.raises(UsageError, match=r"holds a different run \(.*k: 2 -> 3"):
        run(tmp_path, "taken", epochs=1, k=3)


@pytest.mark.parametrize("loss", list_losses())
def test_every_loss_learns(tmp_path, loss):
    result = run(tmp_path, f"loss-{loss}", epochs=15, loss=loss)
    assert result.summary["degraded_accuracy"] > 0.3  # chance is 0.1
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)


def test_r2_trains_two_parity_models(tmp_path):
    result = run(tmp_path, "r2", epochs=15, r=2)
    best = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert any(k.startswith("models.1.") for k in best["parity_state"])
    assert result.summary["r"] == 2 and result.summary["degraded_accuracy"] > 0.5


def test_lr_schedule_and_sgd(tmp_path):
    result = run(tmp_path, "sched", epochs=2, optimizer="sgd", lr=0.01, lr_schedule="cosine")
    assert result.summary["epochs"] == 2


# --------------------------------------------------------------------------- codes of every family


def test_r2_scores_every_erasure_pattern(tmp_path):
    result = run(tmp_path, "r2-patterns", epochs=2, r=2)
    for key in ("degraded_accuracy_e1", "degraded_accuracy_e2", "all_accuracy_e1", "all_accuracy_e2"):
        assert 0.0 <= result.summary[key] <= 1.0
    assert result.summary["degraded_accuracy"] == result.summary["degraded_accuracy_e1"]
    # nothing failed: a systematic code answers with F itself, so e = 0 is F's accuracy on the scored groups
    assert result.summary["all_accuracy_e0"] == pytest.approx(result.summary["available_accuracy"], abs=0.01)
    assert result.summary["all_accuracy_e0"] >= result.summary["all_accuracy_e1"] >= result.summary["all_accuracy_e2"]
    assert 0.05 < result.summary["majority_accuracy"] < 0.2  # digits: ten nearly balanced classes
    # all-k answers include the exact ones, so they beat the rebuilt ones alone
    assert result.summary["all_accuracy_e1"] > result.summary["degraded_accuracy_e1"]
    import pandas as pd

    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    singles = predictions[predictions.erasures == 1]
    # every single data erasure of every test group (a parity erasure rebuilds nothing)
    assert len(singles) == 2 * predictions.group_id.nunique()
    assert set(singles.pattern) == {"0", "1"}
    doubles = predictions[predictions.erasures == 2]
    assert doubles.groupby("group_id").pattern.nunique().max() == 1 and len(doubles) > 0
    assert len(predictions.base_top5.iloc[0]) == 5


def test_a_code_with_nothing_to_train_evaluates_with_epochs_0(tmp_path):
    result = run(tmp_path, "berrut", epochs=0, k=4, encoder="berrut", decoder="berrut", parity_model="base", model="lenet5")
    assert result.summary["epochs"] == 0 and result.summary["best_epoch"] == 0
    assert result.summary["systematic"] is False and result.summary["code_family"] == "berrut"
    assert result.summary["degraded_accuracy"] > 0.3  # chance is 0.1
    # non-systematic: every output is rebuilt, so both measures agree, and even with nothing failed every
    # answer is decoded: all_accuracy_e0 is what that costs against F alone
    assert result.summary["all_accuracy_e1"] == pytest.approx(result.summary["degraded_accuracy_e1"])
    assert 0.3 < result.summary["all_accuracy_e0"] <= 1.0  # every answer decoded (it may even beat F alone here)
    for name in ("summary.json", "metrics.jsonl", "predictions.parquet", "checkpoints/best.pt"):
        assert (result.run_dir / name).exists()
    again = run(tmp_path, "berrut", epochs=0, k=4, encoder="berrut", decoder="berrut", parity_model="base", model="lenet5")
    assert again.history == result.history  # a rerun resumes: nothing evaluated twice


def test_byzantine_figures_leave_the_erasure_figures_alone(tmp_path):
    """The same run with and without --byzantine: identical erasure figures and predictions; only the
    byzantine_* figures are added, and the code label says which is which."""
    import pandas as pd

    from parity_ray.coders import code_label

    common = dict(epochs=0, k=4, r=4, encoder="berrut", decoder="berrut", parity_model="base", model="lenet5")
    plain = run(tmp_path, "plain", **common)
    byzantine = run(tmp_path, "byzantine", byzantine=1, **common)
    erasure = [key for key in plain.summary if key.startswith(("degraded_accuracy", "all_accuracy", "reconstruction_"))]
    assert erasure and {key: plain.summary[key] for key in erasure} == {key: byzantine.summary[key] for key in erasure}
    def erasure_only(history):  # every split's figures (validation ranks runs), the byzantine_* ones aside
        return [{key: value for key, value in row.items() if not key.startswith("byzantine")} for row in history]

    assert erasure_only(plain.history) == erasure_only(byzantine.history)
    assert 0.0 <= byzantine.summary["byzantine_located"] <= 1.0 and "byzantine_accuracy" not in plain.summary
    read = [pd.read_parquet(result.run_dir / "predictions.parquet") for result in (plain, byzantine)]
    pd.testing.assert_frame_equal(*read)
    labels = [code_label(TrainConfig.from_dict({**DIGITS, **common, **extra}).resolved()) for extra in ({}, {"byzantine": 1})]
    assert labels == ["berrut (non-systematic, F)", "berrut (non-systematic, F, byzantine 1)"]


def test_berrut_evaluated_with_no_worker_named_runs_f_and_trained_berrut_trains_fs_architecture():
    """`--encoder berrut --decoder berrut --epochs 0` (the issue's command) needs no --parity-model: its workers are F."""
    evaluated = TrainConfig.from_dict({**DIGITS, "encoder": "berrut", "decoder": "berrut", "epochs": 0}).validate().resolved()
    assert evaluated.parity_model == "base" and evaluated.run_name().endswith("-berrut-ns-F-mse-s1")
    trained = TrainConfig.from_dict({**DIGITS, "encoder": "berrut", "decoder": "berrut", "epochs": 2}).validate().resolved()
    assert trained.parity_model == "base-mlp"  # with epochs, berrut in front of trained workers of F's architecture
    addition = TrainConfig.from_dict({**DIGITS, "epochs": 0}).resolved()
    assert addition.parity_model == "base-mlp"  # a parity-model code still needs its parity model (refused below)


@pytest.mark.parametrize("overrides,message", [
    (dict(epochs=0), "this code trains its parity models"),
    (dict(epochs=3, encoder="berrut", decoder="berrut", parity_model="base"), "nothing to train"),
    (dict(epochs=0, encoder="mlp", decoder="mlp", parity_model="base"), "trains its encoder and decoder"),
])
def test_epochs_must_match_what_the_code_trains(tmp_path, overrides, message):
    with pytest.raises(UsageError, match=message):
        run(tmp_path, "refused", **overrides)
    assert not (tmp_path / "refused").exists()


def test_the_worker_a_config_asks_for_is_the_one_that_runs(roots):
    """The original's learned configs left the worker random and frozen; here F is F and trained is trained."""
    spec = get_dataset_spec("digits")
    data = load_data("digits", data_root=roots["digits"], val_size=8, download=False)
    torch.manual_seed(0)
    base = create_model("lenet5", input_shape=spec.input_shape, num_classes=spec.num_classes).eval()
    x = data.train_x[:8].view(4, 2, *spec.input_shape)

    as_f = build_code(TrainConfig.from_dict({"dataset": "digits", "model": "lenet5", "encoder": "mlp", "decoder": "mlp",
                                             "parity_model": "base"}).resolved(), spec, base, "cpu")
    assert isinstance(as_f.workers, FrozenBaseWorkers) and not list(as_f.workers.parameters())
    coded = as_f.encoder(x)
    with torch.no_grad():
        assert torch.equal(as_f.workers(coded), base(coded.flatten(0, 1)).view(4, 1, -1))
    assert as_f.state()["parity_state"] == {}  # F's weights live in the lineage, not in every checkpoint

    trained = build_code(TrainConfig.from_dict({"dataset": "digits", "model": "lenet5"}).resolved(), spec, base, "cpu")
    assert isinstance(trained.workers, ParityModels)
    assert all(p.requires_grad for p in trained.workers.parameters())
    first = next(iter(trained.workers.models[0].state_dict().values()))
    assert not torch.equal(first, next(iter(base.state_dict().values())))  # random init (the paper's)

    warm = build_code(TrainConfig.from_dict({"dataset": "digits", "model": "lenet5", "parity_init": "base"}).resolved(),
                      spec, base, "cpu")
    for key, value in base.state_dict().items():
        assert torch.equal(warm.workers.models[0].state_dict()[key], value)


def _learned_encoders_for_f() -> list:
    from parity_ray.coders import ENCODERS

    return [name for name in list_encoders()
            if getattr(ENCODERS.get(name), "family", "") == "learned" and not getattr(ENCODERS.get(name), "packs_slots", False)]


@pytest.fixture(scope="module")
def trained_digits_f(roots):
    """A base-mlp F trained on real digits for 200 steps (~0.97 test accuracy, under a second)."""
    spec = get_dataset_spec("digits")
    data = load_data("digits", data_root=roots["digits"], val_size=8, download=False)
    torch.manual_seed(0)
    base = create_model("base-mlp", input_shape=spec.input_shape, num_classes=spec.num_classes)
    optimizer = torch.optim.Adam(base.parameters(), lr=1e-2)
    for _ in range(200):
        batch = torch.randint(0, len(data.train_x), (128,))
        loss = torch.nn.functional.cross_entropy(base(data.train_x[batch]), data.train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return spec, data, base.eval()


@pytest.mark.parametrize("k", [2, 12])
@pytest.mark.parametrize("encoder", _learned_encoders_for_f())
def test_f_tells_coded_queries_apart_from_a_learned_encoders_start(trained_digits_f, encoder, k):
    """Why mlp/mlp collapsed as k grew: from the published random start, F answered the same few
    classes whatever the k queries were (conv: one class for every coded query, at every k; mlp: 3-6),
    so neither the decoder nor the gradient through the frozen F had a signal. On a real batch, F's
    answers on the coded queries must spread over the classes as its answers on plain queries do."""
    spec, data, base = trained_digits_f
    torch.manual_seed(0)
    queries = data.train_x[: 64 * k].view(64, k, *spec.input_shape)
    code = build_code(TrainConfig.from_dict({"dataset": "digits", "model": "base-mlp", "k": k, "r": 1, "encoder": encoder,
                                             "decoder": "mlp", "parity_model": "base"}).resolved(), spec, base, "cpu")
    with torch.no_grad():
        coded = base(code.encoder(queries)[:, 0]).softmax(dim=1)
        plain = base(queries[:, 0]).softmax(dim=1)
    assert len(set(coded.argmax(dim=1).tolist())) >= 8
    assert coded.std(dim=0).sum() > 0.5 * plain.std(dim=0).sum()


@pytest.mark.parametrize("encoder,decoder,worker", [("mlp", "mlp", "base"), ("conv", "mlp", "base"), ("mlp", "subtraction", "base"),
                                                    ("projection", "corrected-subtraction", "slot-mlp"),
                                                    ("berrut", "berrut", None)])
def test_a_learned_code_loss_falls_on_a_tiny_real_batch(roots, encoder, decoder, worker):
    spec = get_dataset_spec("digits")
    data = load_data("digits", data_root=roots["digits"], val_size=8, download=False)
    torch.manual_seed(0)
    base = create_model("base-mlp", input_shape=spec.input_shape, num_classes=spec.num_classes).eval()
    with torch.no_grad():
        base_outputs = base(data.train_x[:64])
    config = TrainConfig.from_dict({"dataset": "digits", "model": "base-mlp", "k": 4, "r": 1, "encoder": encoder,
                                    "decoder": decoder, "parity_model": worker, "loss": "kl"}).resolved()
    code = build_code(config, spec, base, "cpu")
    optimizer = torch.optim.Adam(code.trainable_parameters(), lr=3e-3)
    groups = torch.arange(64).view(16, 4)
    patterns = erasure_patterns(code.n, 1)
    losses = []
    for _ in range(40):
        loss, _batch = forward_groups(groups, data.train_x[:64], base_outputs, data.train_y[:64], code, create_loss("kl"), patterns)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses[::10]


def test_many_erasure_patterns_are_scored_over_a_stated_sample(tmp_path):
    """k = 12, r = 14 (ApproxIFER's Byzantine redundancy): C(26, 13) = 10.4 million patterns at e = 13;
    each e is scored over at most max_patterns of them, recorded as patterns_scored_e<e> in the run's
    figures and its runs row, and the run ends in seconds."""
    import time

    from parity_ray.run_tables import code_columns

    config = dict(epochs=0, k=12, r=14, encoder="berrut", decoder="berrut", parity_model="base", max_patterns=40,
                  byzantine=1, max_eval_groups=16)
    started = time.perf_counter()
    result = run(tmp_path, "many", **config)
    assert time.perf_counter() - started < 120
    scored = {e: result.summary[f"patterns_scored_e{e}"] for e in range(1, 15)}
    assert scored == {e: min(40, math.comb(26, e)) for e in range(1, 15)}
    assert 0.0 <= result.summary["degraded_accuracy_e13"] <= 1.0 and 0.0 <= result.summary["byzantine_located"] <= 1.0
    columns = code_columns({**DIGITS, **config}, result.history[-1] | {"patterns_scored_e14": 40.0})
    assert columns["patterns_scored_e14"] == 40 and columns["patterns_scored_e1"] == 26


def test_sampled_patterns_estimate_the_exhaustive_figure(tmp_path):
    """At k = 4, r = 3 (35 patterns at e = 3) a sample of 12 gives the exhaustive accuracy within
    sampling error, and the e = 1 figures (7 patterns, all scored either way) do not move."""
    common = dict(epochs=0, k=4, r=3, encoder="berrut", decoder="berrut", parity_model="base")
    every = run(tmp_path, "every", **common)
    sampled = run(tmp_path, "sampled", max_patterns=12, **common)
    assert every.summary["patterns_scored_e3"] == 35 and sampled.summary["patterns_scored_e3"] == 12
    assert sampled.summary["degraded_accuracy_e1"] == every.summary["degraded_accuracy_e1"]
    assert abs(sampled.summary["degraded_accuracy_e3"] - every.summary["degraded_accuracy_e3"]) < 0.05


def test_num_threads_holds_for_the_run_only(tmp_path):
    """A run's num_threads is put back when it ends: a later run in the same process (a notebook, the
    test suite's in-process CLI) computes as it would alone (a leaked 1 broke exact resumption)."""
    before = torch.get_num_threads()
    run(tmp_path, "threads", epochs=1, max_train_batches=1, num_threads=2 if before == 1 else 1)
    assert torch.get_num_threads() == before
