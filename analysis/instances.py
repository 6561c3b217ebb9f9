"""Per-instance views of an experiment: decodes that differ from the base model, run vs run, lineage.

These back the report's instance explorer, run-vs-run comparison and lineage tree, and the
notebooks call them directly:

>>> p = analysis.differing_decodes(tables.predictions, run_id)   # lost / fixed / different mistake
>>> cmp = analysis.compare_runs(tables.predictions, run_a, run_b)  # both right / only A / only B / both wrong
>>> analysis.lineage(tables.runs, tables.base_models)              # dataset -> base model -> code -> k, r -> run

Both schema versions of ``predictions.parquet`` are read: v1 (one row per group x erased
position x parity) and v2 (one row per group x erasure pattern x rebuilt slot, with top-5 lists).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .tables import DIFFERING, with_outcomes

COMPARISON = ["both_right", "only_a", "only_b", "both_wrong"]


# --------------------------------------------------------------------------- runs: schema-tolerant columns


def code_family(runs: pd.DataFrame) -> pd.Series:
    """``code_family`` (schema v2: ``parity-models``, ``learned``, ``berrut``, ...) or, before it, the encoder name."""
    if "code_family" in runs:
        return runs["code_family"].where(runs["code_family"].notna(), runs["encoder"]).astype(str)
    return runs["encoder"].astype(str)


def is_systematic(run: pd.Series) -> bool:
    """Whether the code keeps the k data queries as workers 0..k-1 (every code before schema v2 does)."""
    value = run.get("systematic") if hasattr(run, "get") else None
    return True if value is None or (isinstance(value, float) and np.isnan(value)) else bool(value)


def erasure_levels(run: pd.Series) -> Dict[int, float]:
    """Degraded-mode accuracy by number of unavailable workers: ``{1: acc, 2: acc, ...}`` (v1: only e=1)."""
    levels = {}
    for e in (1, 2, 3):
        value = run.get(f"degraded_accuracy_e{e}")
        if value is not None and value == value:
            levels[e] = float(value)
    if not levels and run.get("degraded_accuracy") is not None and run.get("degraded_accuracy") == run.get("degraded_accuracy"):
        levels[1] = float(run["degraded_accuracy"])
    return levels


# --------------------------------------------------------------------------- decodes that differ


def differing_decodes(predictions: pd.DataFrame, run_id: Optional[str] = None) -> pd.DataFrame:
    """The decodes whose answer differs from the base model's on the same image.

    One row per decode (``outcome`` is ``lost_by_decoding``, ``fixed_by_decoding`` or
    ``different_mistake``), sorted by KL(base ‖ decoded), largest first; ``run_id`` keeps one run.
    """
    p = predictions if run_id is None else predictions[predictions["run_id"] == run_id]
    p = with_outcomes(p)
    p = p[p["outcome"].isin(DIFFERING)]
    p = p.assign(outcome=p["outcome"].astype(str))
    return p.sort_values(["kl_base_decoded", "run_id", "group_id"], ascending=[False, True, True],
                         kind="stable").reset_index(drop=True)


def group_members(predictions: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """The test images of each test k-group of a run: index ``group_id``, one column per slot (0..k-1)."""
    p = predictions.loc[predictions["run_id"] == run_id, ["group_id", "position", "test_index"]]
    members = p.drop_duplicates(["group_id", "position"]).pivot(index="group_id", columns="position", values="test_index")
    members.columns = [int(c) for c in members.columns]
    return members.sort_index()


def top5(row: pd.Series, which: str) -> List[tuple]:
    """``[(class, probability), ...]`` of the base or decoded output (schema v2); top-1 only before it."""
    classes, probabilities = row.get(f"{which}_top5"), row.get(f"{which}_top5_probabilities")
    if classes is not None and probabilities is not None and not (isinstance(classes, float)):
        return [(int(c), float(p)) for c, p in zip(classes, probabilities)]
    return [(int(row[f"{which}_prediction"]), float(row[f"{which}_top_probability"]))]


# --------------------------------------------------------------------------- run vs run


@dataclass
class RunComparison:
    """Two runs on the same test images: who gets each image right (see :func:`compare_runs`)."""

    run_a: str
    run_b: str
    erasures: int
    table: pd.DataFrame  # one row per outcome in COMPARISON: instances, fraction
    instances: pd.DataFrame  # one row per test image both runs decoded
    flips: pd.DataFrame = field(repr=False)  # the instances right in exactly one run


def instance_summary(predictions: pd.DataFrame, erasures: int = 1) -> pd.DataFrame:
    """Per run x test image at ``erasures`` unavailable workers: how often its decodes are right.

    ``correct`` is the fraction of the image's decodes (every pattern, slot and wrap-around
    copy) that give the true label; ``prediction`` the answer its decodes give most often.
    """
    p = predictions if "decoded_correct" in predictions and "erasures" in predictions else with_outcomes(predictions)
    p = p[p["erasures"] == erasures]
    keys = ["run_id", "test_index"]
    grouped = p.groupby(keys, sort=True)
    table = grouped.agg(label=("label", "first"), base_prediction=("base_prediction", "first"),
                        decodes=("decoded_correct", "size"), correct=("decoded_correct", "mean"),
                        mean_kl=("kl_base_decoded", "mean"))
    counts = p.groupby(keys + ["decoded_prediction"]).size().rename("n").reset_index()
    counts = counts.sort_values(keys + ["n", "decoded_prediction"], ascending=[True, True, False, True], kind="stable")
    table["prediction"] = counts.drop_duplicates(keys).set_index(keys)["decoded_prediction"]
    return table.reset_index()


def compare_runs(predictions: pd.DataFrame, run_a: str, run_b: str, erasures: int = 1,
                 predictions_b: Optional[pd.DataFrame] = None) -> RunComparison:
    """Per test image, whether run A and run B get it right after decoding (``erasures`` unavailable).

    A run gets an image right when most of its decodes of that image give the true label. The
    runs may come from two experiments (pass the second one's table as ``predictions_b``); only
    images both decoded are compared, so the runs should share a dataset.
    """
    a = instance_summary(predictions[predictions["run_id"] == run_a], erasures)
    other = predictions if predictions_b is None else predictions_b
    b = instance_summary(other[other["run_id"] == run_b], erasures)
    if a.empty or b.empty:
        missing = run_a if a.empty else run_b
        raise ValueError(f"run '{missing}' has no decodes with {erasures} erasure(s) in the predictions")
    columns = ["test_index", "label", "base_prediction", "correct", "prediction", "mean_kl", "decodes"]
    both = a[columns].merge(b[columns], on="test_index", suffixes=("_a", "_b"))
    right_a, right_b = both["correct_a"] > 0.5, both["correct_b"] > 0.5
    both.insert(1, "outcome", np.select([right_a & right_b, right_a & ~right_b, ~right_a & right_b], COMPARISON[:3],
                                        default=COMPARISON[3]))
    both = both.rename(columns={"label_a": "label"}).drop(columns=["label_b"])
    counts = both["outcome"].value_counts().reindex(COMPARISON, fill_value=0)
    table = pd.DataFrame({"outcome": COMPARISON, "instances": counts.values,
                          "fraction": counts.values / max(len(both), 1)})
    flips = both[both["outcome"].isin(["only_a", "only_b"])].sort_values(
        ["outcome", "test_index"], kind="stable").reset_index(drop=True)
    return RunComparison(run_a, run_b, erasures, table, both, flips)


# --------------------------------------------------------------------------- lineage


LINEAGE_COLUMNS = ["dataset", "base_model_id", "arch", "base_test_accuracy", "base_train_seconds", "code_family",
                   "k", "r", "run_id", "status", "encoder", "decoder", "loss", "available_accuracy",
                   "degraded_accuracy", "accuracy_drop", "reconstruction_accuracy", "epochs_done", "train_seconds"]


def lineage(runs: pd.DataFrame, base_models: pd.DataFrame) -> pd.DataFrame:
    """Every run under its base model: dataset -> base model -> code family -> (k, r) -> run.

    One row per run with its base model's accuracy and training time; runs without a base
    model (``UNAVAILABLE``, or an ``ERROR`` before it was prepared) have a null
    ``base_model_id``. Sorted so that a tree reads top-down.
    """
    table = runs.copy()
    table["code_family"] = code_family(runs)
    base = base_models.rename(columns={"test_accuracy": "base_test_accuracy", "train_seconds": "base_train_seconds"})
    if "base_model_id" not in table:
        table["base_model_id"] = None
    base = base[["base_model_id", "arch", "base_test_accuracy", "base_train_seconds"]] if not base.empty else \
        pd.DataFrame(columns=["base_model_id", "arch", "base_test_accuracy", "base_train_seconds"])
    table = table.merge(base, on="base_model_id", how="left")
    table["arch"] = table["arch"].where(table["arch"].notna(), table["model"])
    table["accuracy_drop"] = table["available_accuracy"] - table["degraded_accuracy"]
    extra = [c for c in table.columns if c.startswith("degraded_accuracy_e")
             or c in ("systematic", "worker", "redundancy", "parity_arch", "parity_params", "parity_flops")]
    table = table[LINEAGE_COLUMNS + extra]
    return table.sort_values(["dataset", "base_model_id", "code_family", "k", "r", "run_id"], na_position="last",
                             kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- images


class ImagesUnavailable(Exception):
    """The test images (or the encoder) of a run cannot be rebuilt here; the message says why."""


@dataclass
class RunInputs:
    """What rebuilding a run's test images and coded queries needs."""

    dataset: str
    kind: str  # "image" or "spectrogram"
    test_x: "object"  # normalised test images, (N, C, H, W) tensor
    test_y: "object"
    mean: Sequence[float]
    std: Sequence[float]
    encoder: "object"
    k: int
    r: int
    systematic: bool
    key: str  # same key -> same test groups and coded queries (shared thumbnails)


AUDIO_HINTS = ("speech", "audio", "sound", "spectro", "esc50", "urban")


def display_kind(spec) -> str:
    """``spectrogram`` for audio datasets (a registered spec may say so with ``modality``), else ``image``."""
    modality = getattr(spec, "modality", None) or getattr(spec, "kind", None)
    if modality:
        return "spectrogram" if str(modality).lower() in ("audio", "spectrogram", "speech") else "image"
    return "spectrogram" if any(h in spec.name.lower() for h in AUDIO_HINTS) else "image"


_DATA_CACHE: Dict[tuple, object] = {}  # test splits by (dataset, data root, normalisation, ...); clear_cache() empties it


def clear_cache() -> None:
    """Forget the test splits :func:`run_inputs` kept (the report calls this when it is done)."""
    _DATA_CACHE.clear()


def _config(run: pd.Series) -> dict:
    config = json.loads(run["config_json"])
    try:
        from parity_ray.config import TrainConfig

        return TrainConfig.from_dict(config).resolved().to_dict()
    except Exception:  # a config of a newer or older parity_ray: use it as recorded
        return config


def run_inputs(run: pd.Series, data_root: Optional[str] = None) -> RunInputs:
    """The run's normalised test split and its encoder (learned weights loaded), or :class:`ImagesUnavailable`.

    ``data_root`` is where the test images are (else ``$PARITY_RAY_DATA`` and the user cache); the run's
    recorded data root is never followed, since it is the experiment's word, not the user's.
    """
    from parity_ray import storage
    from parity_ray.coders import create_encoder
    from parity_ray.data import get_dataset_spec, load_data
    from parity_ray.errors import UsageError
    from parity_ray.registry import check_stored_config
    from parity_ray.provenance import stable_hash
    from parity_ray.torch_files import load_torch_safely

    check_stored_config(run.get("config_json"), f"run '{run.get('run_id')}'")  # refused, not turned into "unavailable"
    try:
        config = _config(run)
        spec = get_dataset_spec(config["dataset"])
    except (UsageError, KeyError, ValueError, TypeError) as exc:
        raise ImagesUnavailable(f"dataset of run '{run['run_id']}' is not available here: {exc}") from None
    root = data_root  # never the run's recorded data root: the report's --data-root, or $PARITY_RAY_DATA and the cache
    norm = config.get("input_norm") or "dataset"
    cache_key = (spec.name, root, norm, config.get("val_size"), config.get("seed", 0))
    if cache_key not in _DATA_CACHE:
        try:
            bundle = load_data(spec.name, data_root=root, val_size=config.get("val_size"),
                               split_seed=int(config.get("seed") or 0), input_norm=norm)
        except (UsageError, OSError, ValueError) as exc:
            raise ImagesUnavailable(f"test images of '{spec.name}' are not available here: {exc}") from None
        # Only the test split is shown: keep it, not the train split (hundreds of MB for CIFAR).
        _DATA_CACHE[cache_key] = SimpleNamespace(test_x=bundle.test_x, test_y=bundle.test_y,
                                                 normalization=bundle.normalization)
    data = _DATA_CACHE[cache_key]
    k, r = int(config["k"]), int(config["r"])
    try:
        encoder = create_encoder(config["encoder"], k=k, r=r, input_shape=spec.input_shape).eval()
    except Exception as exc:  # noqa: BLE001  (a class-spec encoder that cannot be imported here)
        raise ImagesUnavailable(f"encoder '{config['encoder']}' cannot be built here: {exc}") from None
    weights = ""
    if any(p.numel() for p in encoder.parameters()):
        # A learned encoder: its trained weights are in the run's checkpoint (null when the stored path lay
        # outside the experiment: results.load refused it), never drawn untrained.
        if not run.get("checkpoint_uri") or run.get("checkpoint_uri") != run.get("checkpoint_uri"):
            raise ImagesUnavailable(f"run '{run.get('run_id')}' has no readable checkpoint for its learned encoder")
        uri = storage.join(run["checkpoint_uri"], "checkpoints", "best.pt")
        try:
            checkpoint = load_torch_safely(storage.read_bytes(uri), uri)
        except (OSError, FileNotFoundError, UsageError) as exc:
            raise ImagesUnavailable(f"checkpoint '{uri}' of the learned encoder cannot be read: {exc}") from None
        state = checkpoint.get("encoder_state") or {}
        if state:
            encoder.load_state_dict(state)
            weights = stable_hash({k: float(v.float().sum()) for k, v in state.items()})
    key = stable_hash([spec.name, str(config["encoder"]), k, r, config.get("seed"), norm, len(data.test_y), weights])
    return RunInputs(dataset=spec.name, kind=display_kind(spec), test_x=data.test_x, test_y=data.test_y,
                     mean=data.normalization.mean, std=data.normalization.std, encoder=encoder, k=k, r=r,
                     systematic=is_systematic(run), key=key)


def coded_queries(inputs: RunInputs, members: Sequence[Sequence[int]]):
    """The coded queries the encoder builds from each group: ``(groups, workers, C, H, W)``.

    ``members`` are the groups' test indices (one row per group, k columns). Systematic codes
    return the r parity queries (workers k..k+r-1), non-systematic codes every coded worker.
    """
    import torch

    index = torch.from_numpy(np.array(members, dtype=np.int64))
    with torch.no_grad():
        return inputs.encoder(inputs.test_x[index].float())


def to_display(images, kind: str = "image", mean: Optional[Sequence[float]] = None,
               std: Optional[Sequence[float]] = None, stretch: bool = False) -> np.ndarray:
    """Images ``(N, C, H, W)`` as uint8 ``(N, H, W, 3)`` for display.

    Test images are de-normalised with ``mean``/``std``; coded queries (``stretch=True``) mix
    several images, so each is stretched to its own min..max instead. Spectrograms get a
    colour map with low frequencies at the bottom.
    """
    x = images.detach().float().cpu().numpy() if hasattr(images, "detach") else np.asarray(images, dtype=np.float32)
    if stretch:
        low = x.min(axis=(1, 2, 3), keepdims=True)
        high = x.max(axis=(1, 2, 3), keepdims=True)
        x = (x - low) / np.maximum(high - low, 1e-8)
    elif mean is not None and std is not None:
        x = x * np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1) + np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    x = np.clip(x, 0.0, 1.0)
    if kind == "spectrogram":
        from matplotlib import colormaps

        values = x.mean(axis=1)[:, ::-1, :]  # one channel, low frequencies at the bottom
        return (colormaps["viridis"](values)[..., :3] * 255).round().astype(np.uint8)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    return (x[:, :3].transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
