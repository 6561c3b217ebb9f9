"""Analysis tables computed from an experiment's result tables (schema: ``docs/tables.md``).

Every function takes the DataFrames that :func:`load` returns and gives back a plain
DataFrame (or a small bundle of them), so notebooks, the report and tests share one
computation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from parity_ray import results, storage

EXPERIMENT_ENV = "PARITY_RAY_EXPERIMENT"
CELL_KEYS = ["dataset", "model", "k", "r", "encoder", "decoder", "loss"]
REPO = Path(__file__).resolve().parents[1]


def load(path: str) -> results.Tables:
    """An experiment's tables (local folder, its ``tables/`` folder, or an ``s3://`` URI).

    Raises :class:`parity_ray.errors.UsageError` (one line) when ``path`` holds no
    experiment or a table has another schema version.
    """
    return results.load(str(path))


def experiment_path(default: str) -> str:
    """The experiment a notebook analyses: ``$PARITY_RAY_EXPERIMENT`` if set, else ``default``.

    A relative local path that does not exist from the working directory is tried from
    the repository root, since Jupyter runs a notebook in its own folder
    (``analysis/notebooks/``) while ``results/...`` paths are written from the root.
    """
    path = os.environ.get(EXPERIMENT_ENV) or default
    if storage.is_remote(path) or Path(path).is_absolute() or Path(path).exists():
        return path
    from_root = REPO / path
    return str(from_root) if from_root.exists() else path


# --------------------------------------------------------------------------- accuracy


def degraded_accuracy_table(runs: pd.DataFrame, failed: str = "mark") -> pd.DataFrame:
    """Available vs degraded-mode accuracy per dataset x model x k x coder: the paper's main result.

    One row per run, sorted by cell. ``failed="mark"`` keeps runs that did not complete
    (``UNAVAILABLE``, ``ERROR``, ``INCOMPLETE``) with their status and reason in ``note``, so a
    grid's holes stay visible; ``failed="drop"`` keeps only ``COMPLETED`` runs.
    """
    if failed not in ("mark", "drop"):
        raise ValueError(f"failed must be 'mark' or 'drop', not {failed!r}")
    table = runs.copy()
    if failed == "drop":
        table = table[table["status"] == "COMPLETED"]
    table["accuracy_drop"] = table["available_accuracy"] - table["degraded_accuracy"]
    table["note"] = np.where(table["status"] == "COMPLETED", "", table["error"].fillna("").astype(str))
    table["redundancy"] = table["r"] / table["k"]
    if "code_family" not in table:
        table["code_family"] = table["encoder"]
    if "all_accuracy_e0" not in table:
        table["all_accuracy_e0"] = np.nan  # tables written before the no-failure figure existed
    columns = CELL_KEYS + ["redundancy", "code_family", "status", "available_accuracy", "all_accuracy_e0", "degraded_accuracy", "accuracy_drop",
                           "reconstruction_accuracy", "degraded_top5", "best_epoch", "epochs_done", "run_id", "note"]
    table = table[columns].sort_values(CELL_KEYS + ["run_id"], kind="stable").reset_index(drop=True)
    for column in ("best_epoch", "epochs_done"):
        table[column] = table[column].astype("Int64")  # NaN for runs that never trained, not 8.0
    return table


CODE_CELL = ["dataset", "model", "k", "r", "byzantine"]  # a Byzantine run is compared with its own kind only


def code_label(row) -> str:
    """``berrut (non-systematic, F)``-style label of a runs row, as ``coders.code_label`` labels a config."""
    encoder, decoder = str(row.get("encoder")), str(row.get("decoder"))
    name = encoder if decoder in (encoder, "subtraction", "None", "nan") else f"{encoder}/{decoder}"
    systematic = row.get("systematic")
    kind = "" if systematic is None or systematic != systematic else ("systematic, " if systematic else "non-systematic, ")
    worker = {"base": "F", "trained": "trained"}.get(row.get("worker"), "trained")
    arch = row.get("parity_arch")
    if worker == "trained" and isinstance(arch, str) and arch != str(row.get("model")):
        worker += f" {arch}"  # a parity model of another architecture is another code
    byzantine = row.get("byzantine")
    byzantine = f", byzantine {int(byzantine)}" if byzantine == byzantine and byzantine else ""  # NaN: older rows
    return f"{name} ({kind}{worker}{byzantine})"


PARITY_COST = ["parity_arch", "parity_params", "parity_flops"]  # the runs table's cost of each coded query


def code_comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every completed code at each (dataset, model, k, r), grouped by redundancy r/k and code family.

    Each code's worker on the coded queries and its cost (``parity_arch``, ``parity_params``,
    ``parity_flops`` per coded query) stand beside its accuracy.

    ``all_accuracy_e0`` (every answer through the code with all workers back: what the code costs
    with no failure), both measures for each e = 1..r (``degraded_accuracy_e<e>``: rebuilt outputs
    only; ``all_accuracy_e<e>``: every answer as served), ``best``: the winner of its cell, chosen as
    everywhere on validation (``results.selection_column``; the test measures are what is shown; no
    winner without a validation figure), and ``below_base_rate``: the e whose rebuilt accuracy is
    below always answering the most frequent class (``majority_accuracy``), e.g. ``"e1,e2"``.
    """
    done = runs[runs["status"] == "COMPLETED"].copy()
    if done.empty:
        return pd.DataFrame(columns=CODE_CELL + ["redundancy", "code_family", "code", "best"])
    done["byzantine"] = (done["byzantine"] if "byzantine" in done else pd.Series(0, index=done.index)).fillna(0).astype("int64")
    done["redundancy"] = done["r"] / done["k"]
    if "code_family" not in done:
        done["code_family"] = done["encoder"]
    done["code"] = [code_label(row) for row in done.to_dict("records")]
    measures = [c for c in done.columns if c.startswith(("degraded_accuracy_e", "all_accuracy_e")) and done[c].notna().any()]
    measures.sort(key=lambda c: (int(c.rsplit("_e", 1)[1]), c.startswith("all")))
    if "majority_accuracy" not in done:
        done["majority_accuracy"] = np.nan
    cost = [c for c in PARITY_COST if c in done]  # beside the accuracy: a larger parity model is never a hidden win
    table = done[CODE_CELL + ["redundancy", "code_family", "code"] + cost + ["available_accuracy", "majority_accuracy"]
                 + measures + ["run_id"]]
    key = "degraded_accuracy_e1" if "degraded_accuracy_e1" in table else "degraded_accuracy"
    if key not in table:
        table = table.assign(**{key: done["degraded_accuracy"]})
    chooser = results.selection_column(done)
    # The winner is chosen on validation only; rows without a validation figure (older tables) get none.
    score = done[chooser] if chooser in done else pd.Series(np.nan, index=done.index)
    table = table.assign(_score=score.to_numpy(dtype="float64"))
    best = table.groupby(CODE_CELL)["_score"].transform("max")
    table = table.assign(best=np.where(table["_score"].notna() & (table["_score"] == best), "best", "")).drop(columns="_score")
    table = table.assign(below_base_rate=_below_base_rate(table))
    return table.sort_values(["dataset", "model", "redundancy", "k", "code_family", key],
                             ascending=[True, True, True, True, True, False], kind="stable").reset_index(drop=True)


def _below_base_rate(table: pd.DataFrame) -> list:
    """Per row, the e (``"e1,e2"``) whose degraded accuracy is below the majority-class base rate; "" if none."""
    rebuilt = [c for c in table.columns if c.startswith("degraded_accuracy_e")]
    below = table[rebuilt].astype("float64").lt(table["majority_accuracy"].astype("float64"), axis=0)  # NaN: False
    return [",".join(c.rsplit("_", 1)[1] for c in rebuilt if row[c]) for _, row in below.iterrows()]


NAMED_KEYS = ("k", "r", "seed", "lr", "weight_decay", "batch_size", "epochs", "momentum", "lr_gamma", "lr_step")
EXTRA_KEYS = ["parity_model", "lr", "weight_decay", "batch_size", "epochs", "optimizer", "lr_schedule", "input_norm"]


def varying_keys(runs: pd.DataFrame, keys: Sequence[str]) -> list:
    """The ``keys`` whose value differs between ``runs``."""
    return [key for key in keys if key in runs and runs[key].astype(str).nunique() > 1]


def run_labels(runs: pd.DataFrame) -> Dict[str, str]:
    """Short legend labels per run_id: only the cell keys that differ between runs.

    ``"k=2 addition"`` reads better in a legend than a run id. When two runs share a cell
    (a learning rate or another setting differs), the settings that differ are added
    (``"addition lr=0.001"``); when nothing tells them apart, the run id is used. Runs of
    several experiments are labelled ``"<experiment>: addition"``.
    """
    varying = varying_keys(runs, CELL_KEYS + ["seed"])
    # Runs of several experiments (``results.load`` of a list): the experiment's name leads.
    several = "experiment" in runs and runs["experiment"].astype(str).nunique() > 1

    def make(keys):
        labels = {}
        for row in runs.itertuples(index=False):
            parts = [f"{key}={getattr(row, key)}" if key in NAMED_KEYS else str(getattr(row, key)) for key in keys]
            text = " ".join(parts) if parts else row.run_id
            labels[row.run_id] = f"{row.experiment}: {text}" if several and parts else text
        return labels

    labels = make(varying)
    for key in varying_keys(runs, EXTRA_KEYS):  # two runs share a cell: name what else differs, until unique
        if len(set(labels.values())) == len(labels):
            break
        if key not in varying:
            varying.append(key)
            labels = make(varying)
    if len(set(labels.values())) < len(labels):
        labels = {run_id: run_id for run_id in labels}
    return labels


def qualify_ids(loaded: results.Tables) -> results.Tables:
    """The tables of several experiments (``results.load`` of a list) with unambiguous ids.

    A run id names a config, so two experiments may hold the same one (and the same base model,
    simulation or sweep id). Each id becomes ``<experiment>/<id>`` in every table, so that the
    functions here, which key on ``run_id``, keep the experiments' runs apart. Tables of one
    experiment (no ``experiment`` column, or one value in it) are returned as they are.
    """
    import dataclasses

    runs = loaded.runs
    if "experiment" not in runs or runs["experiment"].nunique() < 2:
        return loaded
    ids = ("run_id", "base_model_id", "simulation_id", "sweep_id")
    changed = {}
    for field in dataclasses.fields(loaded):
        frame = getattr(loaded, field.name)
        if not isinstance(frame, pd.DataFrame) or frame.empty or "experiment" not in frame:
            continue
        frame = frame.copy()
        prefix = frame["experiment"].astype(str) + "/"
        for column in ids:
            if column in frame:
                present = frame[column].notna()
                frame.loc[present, column] = prefix[present] + frame.loc[present, column].astype(str)
        changed[field.name] = frame
    return dataclasses.replace(loaded, **changed)


# --------------------------------------------------------------------------- learning curves


def learning_curves(epochs: pd.DataFrame, splits: Optional[Sequence[str]] = None,
                    metrics: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Per-epoch metrics in wide form: one row per run x split x epoch, one column per metric."""
    long = epochs
    if splits is not None:
        long = long[long["split"].isin(list(splits))]
    if metrics is not None:
        long = long[long["metric"].isin(list(metrics))]
    wide = long.pivot_table(index=["run_id", "split", "epoch"], columns="metric", values="value", aggfunc="last")
    wide.columns.name = None
    return wide.reset_index().sort_values(["run_id", "split", "epoch"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- erasures


@dataclass
class ErasureBreakdown:
    """Where decoding fails, from ``predictions.parquet`` (test set, best checkpoint)."""

    by_class: pd.DataFrame  # run x true label: accuracies and the class decodes are most confused with
    by_position: pd.DataFrame  # run x erased position x parity used
    agreement: pd.DataFrame  # run: decoded vs base model, decode by decode, in four outcomes
    instances: pd.DataFrame  # run x test image: how often its decodes are right / agree with the base
    kl: pd.DataFrame  # run: distribution of KL(base || decoded), nats


def erasure_breakdown(predictions: pd.DataFrame) -> ErasureBreakdown:
    """Which classes and erasure positions fail, and how decoded outputs compare with the base model.

    Every row of ``predictions`` is one decode (a test image's output rebuilt after its
    position was erased); the base model's own prediction for the same image is on the row.
    Both schema versions are read: v1 (``position`` + ``parity``) and v2 (``erasures`` +
    ``pattern`` + ``position``).
    """
    p = with_outcomes(predictions)
    return ErasureBreakdown(
        by_class=_by_class(p),
        by_position=_by_position(p),
        agreement=_agreement(p),
        instances=_instances(p),
        kl=_kl_summary(p),
    )


# Each decode vs the base model on the same image: right/wrong x right/wrong, and for two wrong
# answers whether decoding reproduced the base model's mistake.
OUTCOMES = ["both_correct", "lost_by_decoding", "fixed_by_decoding", "same_mistake", "different_mistake"]
# The outcomes in which the decoded answer differs from the base model's: what the explorer shows.
DIFFERING = ["lost_by_decoding", "fixed_by_decoding", "different_mistake"]
# Regression (boxes): a box hits when its IoU with the true box is at least 0.75 (parity_ray.boxes).
BOX_OUTCOMES = ["both_hit", "lost_by_decoding", "fixed_by_decoding", "both_miss"]
BOX_DIFFERING = BOX_OUTCOMES[1:]  # what the explorer shows of a regression run


def with_outcomes(predictions: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` in the schema-v2 shape, whatever its version, with each decode's outcome.

    Adds ``erasures`` (1) and ``pattern`` (the erased position, as text) to a v1 table, and the
    booleans ``decoded_correct``, ``base_correct``, ``agrees`` and the categorical ``outcome``
    (one of :data:`OUTCOMES`).
    """
    p = predictions.copy()
    if "erasures" not in p:
        p["erasures"] = np.int16(1)
    if "pattern" not in p:
        p["pattern"] = p["position"].astype(str) if len(p) else pd.Series(dtype=str)
    p["decoded_correct"] = p["decoded_prediction"] == p["label"]
    p["base_correct"] = p["base_prediction"] == p["label"]
    p["agrees"] = p["decoded_prediction"] == p["base_prediction"]
    outcome = np.select(
        [p["base_correct"] & p["decoded_correct"], p["base_correct"] & ~p["decoded_correct"],
         ~p["base_correct"] & p["decoded_correct"], p["agrees"]],
        OUTCOMES[:4],
        default=OUTCOMES[4],
    )
    p["outcome"] = pd.Categorical(outcome, categories=OUTCOMES)
    return p


def with_box_outcomes(boxes: pd.DataFrame, threshold: Optional[float] = None) -> pd.DataFrame:
    """Box predictions (regression runs) with each decode's outcome against the true box.

    Adds the booleans ``base_hit`` and ``decoded_hit`` (IoU with the true box at least
    ``threshold``, 0.75 by default as the localisation accuracy counts it), ``agrees`` (decoded
    box within ``threshold`` IoU of the base model's) and the categorical ``outcome``: one of
    :data:`BOX_OUTCOMES` (``both_hit``, ``lost_by_decoding``, ``fixed_by_decoding``, ``both_miss``).
    """
    if threshold is None:
        from parity_ray.boxes import IOU_THRESHOLD as threshold
    p = boxes.copy()
    if "erasures" not in p:
        p["erasures"] = np.int16(1)
    if "pattern" not in p:
        p["pattern"] = p["position"].astype(str) if len(p) else pd.Series(dtype=str)
    p["base_hit"] = p["iou_base_true"] >= threshold
    p["decoded_hit"] = p["iou_decoded_true"] >= threshold
    p["agrees"] = p["iou_decoded_base"] >= threshold
    outcome = np.select([p["base_hit"] & p["decoded_hit"], p["base_hit"] & ~p["decoded_hit"],
                         ~p["base_hit"] & p["decoded_hit"]], BOX_OUTCOMES[:3], default=BOX_OUTCOMES[3])
    p["outcome"] = pd.Categorical(outcome, categories=BOX_OUTCOMES)
    return p


def _by_class(p: pd.DataFrame) -> pd.DataFrame:
    grouped = p.groupby(["run_id", "label"])
    table = grouped.agg(decodes=("decoded_correct", "size"), degraded_accuracy=("decoded_correct", "mean"),
                        base_accuracy=("base_correct", "mean"), reconstruction_accuracy=("agrees", "mean"),
                        failures=("decoded_correct", lambda s: int((~s).sum())))
    wrong = p[~p["decoded_correct"]]
    # The class a failing decode most often lands on shows which classes the code confuses.
    confused = wrong.groupby(["run_id", "label"])["decoded_prediction"].agg(lambda s: s.value_counts().index[0])
    table["most_confused_with"] = confused.reindex(table.index).astype("Int64")
    return table.reset_index()


def _by_position(p: pd.DataFrame) -> pd.DataFrame:
    # v1: erased position x parity used; v2: number of erasures x erased workers x rebuilt slot.
    keys = ["run_id"] + [c for c in ("erasures", "pattern", "position", "parity") if c in p]
    if "parity" in p:
        keys.remove("pattern")  # v1's pattern is the position again
        keys.remove("erasures")
    grouped = p.groupby(keys)
    table = grouped.agg(decodes=("decoded_correct", "size"), degraded_accuracy=("decoded_correct", "mean"),
                        reconstruction_accuracy=("agrees", "mean"), mean_kl=("kl_base_decoded", "mean"),
                        median_kl=("kl_base_decoded", "median"))
    return table.reset_index()


def _agreement(p: pd.DataFrame) -> pd.DataFrame:
    counts = p.groupby(["run_id", "outcome"], observed=False).size().unstack(fill_value=0)
    counts = pd.DataFrame({name: counts[name] if name in counts else 0 for name in OUTCOMES}, index=counts.index)
    grouped = p.groupby("run_id")
    table = pd.DataFrame({
        "decodes": grouped.size(),
        "instances": grouped["test_index"].nunique(),
        "base_accuracy": grouped["base_correct"].mean(),
        "degraded_accuracy": grouped["decoded_correct"].mean(),
        "agreement_with_base": grouped["agrees"].mean(),
    }).join(counts)
    table.columns.name = None
    return table.reset_index()


def _instances(p: pd.DataFrame) -> pd.DataFrame:
    grouped = p.groupby(["run_id", "test_index"])
    table = grouped.agg(label=("label", "first"), base_prediction=("base_prediction", "first"),
                        decodes=("decoded_correct", "size"), decoded_correct=("decoded_correct", "mean"),
                        agreement_with_base=("agrees", "mean"), mean_kl=("kl_base_decoded", "mean"))
    return table.reset_index()


def _kl_summary(p: pd.DataFrame) -> pd.DataFrame:
    grouped = p.groupby("run_id")["kl_base_decoded"]
    table = grouped.describe(percentiles=[0.5, 0.9, 0.99])[["mean", "50%", "90%", "99%", "max"]]
    table.columns = ["mean_kl", "median_kl", "p90_kl", "p99_kl", "max_kl"]
    # KL separates decodes that keep the base model's answer from those that change it.
    by_agreement = p.groupby(["run_id", "agrees"])["kl_base_decoded"].mean().unstack()
    table["mean_kl_agreeing"] = by_agreement.get(True)
    table["mean_kl_disagreeing"] = by_agreement.get(False)
    return table.reset_index()


# --------------------------------------------------------------------------- latency

LATENCY_COLUMNS = ["simulation_id", "repeat", "mode", "run_id", "straggler", "rate", "clients", "deadline_ms", "measured",
                   "direct", "decoded", "failed", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "mean_ms",
                   "throughput_qps", "accuracy", "decoded_accuracy", "agreement_with_base"]


def latency_summary(simulations: pd.DataFrame) -> pd.DataFrame:
    """Tail latency, throughput and accuracy per simulation x mode (empty when none ran).

    Within a simulation the modes keep the order it ran them in (its ``--mode`` list): no hand-kept
    list of mode names decides it (one used to, and sorted ``coded-hedged`` last)."""
    if simulations.empty:
        return pd.DataFrame(columns=LATENCY_COLUMNS)
    table = simulations.reindex(columns=LATENCY_COLUMNS).sort_values("simulation_id", kind="stable")
    return table.reset_index(drop=True)


SPREAD_FIGURES = {"p50_ms": "p50_ms", "p99_ms": "p99_ms", "p999_ms": "p999_ms", "gap_ms": None}  # gap: p99.9 - p50


def latency_spread(simulations: pd.DataFrame) -> pd.DataFrame:
    """Per simulation x mode run more than once (``simulate --repeat N``): each tail figure's median
    and range over the repetitions (``gap_ms`` is p99.9 - p50), the figure that decides a comparison
    and how far it moved between repetitions. Empty when no simulation was repeated."""
    columns = ["simulation_id", "mode", "repeats"] + [f"{f}{s}" for f in SPREAD_FIGURES for s in ("", "_min", "_max")]
    if simulations.empty or "repeat" not in simulations.columns:
        return pd.DataFrame(columns=columns)
    rows = []
    for (simulation_id, mode), group in simulations.groupby(["simulation_id", "mode"], sort=False):
        if group["repeat"].nunique() < 2:
            continue
        values = {f: group[c].astype("float64") if c else group["p999_ms"].astype("float64") - group["p50_ms"].astype("float64")
                  for f, c in SPREAD_FIGURES.items()}
        row = {"simulation_id": simulation_id, "mode": mode, "repeats": int(group["repeat"].nunique())}
        for figure, series in values.items():
            row[figure], row[f"{figure}_min"], row[f"{figure}_max"] = series.median(), series.min(), series.max()
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def latency_cdf(queries: pd.DataFrame, simulation_ids: Optional[Iterable[str]] = None) -> pd.DataFrame:
    """Empirical latency CDF per simulation x mode over measured, answered queries.

    Warm-up queries are left out (as in ``simulations.parquet``); failed queries have no
    latency of their own and appear as the CDF not reaching 1 (``fraction`` is over every
    measured query).
    """
    columns = ["simulation_id", "mode", "run_id", "latency_ms", "fraction"]
    if queries.empty:
        return pd.DataFrame(columns=columns)
    measured = queries[~queries["warmup"]]
    if simulation_ids is not None:
        measured = measured[measured["simulation_id"].isin(list(simulation_ids))]
    frames = []
    for (simulation_id, mode), group in measured.groupby(["simulation_id", "mode"], sort=False):
        answered = np.sort(group.loc[group["path"] != "failed", "latency_ms"].to_numpy(dtype=float))
        frames.append(pd.DataFrame({
            "simulation_id": simulation_id, "mode": mode, "run_id": group["run_id"].iloc[0],
            "latency_ms": answered, "fraction": np.arange(1, len(answered) + 1) / len(group),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


SIMULATION_CONTEXT = ["simulation_id", "run_id", "rate", "clients", "straggler"]


def simulation_context(simulations: pd.DataFrame, queries: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per simulation: what sets it apart from another (its served run, rate or clients and
    straggler spec), so a per-mode table never adds up queries of different simulations unnoticed."""
    frames = []
    if not simulations.empty and "simulation_id" in simulations:
        frames.append(simulations.reindex(columns=SIMULATION_CONTEXT))
    if queries is not None and not queries.empty and "simulation_id" in queries:
        frames.append(queries.reindex(columns=SIMULATION_CONTEXT))  # rate, straggler: null, filled from simulations
    if not frames:
        return pd.DataFrame(columns=SIMULATION_CONTEXT)
    table = pd.concat(frames, ignore_index=True)
    rows = []
    for simulation_id, group in table.groupby("simulation_id", sort=False):
        row = {"simulation_id": simulation_id}
        for column in SIMULATION_CONTEXT[1:]:
            values = list(dict.fromkeys(group[column].dropna()))  # null (None, NaN, NA) left out
            row[column] = ", ".join(map(str, values)) if column == "run_id" else (values[0] if values else None)
        rows.append(row)
    return pd.DataFrame(rows, columns=SIMULATION_CONTEXT).sort_values("simulation_id", kind="stable").reset_index(drop=True)


def simulation_labels(simulations: pd.DataFrame, queries: Optional[pd.DataFrame] = None) -> Dict[str, str]:
    """A short legend label per simulation: its load (rate or clients) and straggler spec, plus the served
    run and the simulation id's tail where those alone would not tell two simulations apart."""
    context = simulation_context(simulations, queries)

    def load(row) -> str:
        if pd.notna(row.rate):
            return f"{float(row.rate):g} qps"
        return f"{int(row.clients)} clients" if pd.notna(row.clients) else "load n/a"

    def straggler(row) -> str:
        return row.straggler if isinstance(row.straggler, str) and row.straggler else "no straggler"

    labels = {row.simulation_id: f"{load(row)}, {straggler(row)}" for row in context.itertuples(index=False)}
    if len(set(labels.values())) < len(labels) and context["run_id"].nunique() > 1:
        labels = {row.simulation_id: f"{labels[row.simulation_id]}, run {row.run_id}" for row in context.itertuples(index=False)}
    if len(set(labels.values())) < len(labels):
        labels = {sid: f"{label} [{str(sid)[-6:]}]" for sid, label in labels.items()}
    return labels


def _measured(queries: pd.DataFrame) -> pd.DataFrame:
    return queries[~queries["warmup"].astype(bool)] if "warmup" in queries else queries


def answer_paths(queries: pd.DataFrame, simulations: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """How measured queries were answered (``direct``, ``decoded``, ``failed``) per simulation x mode,
    with the simulation's run, rate and straggler beside it: queries of different simulations (other
    runs, rates, stragglers) are never added up."""
    keys = ["simulation_id", "mode"]
    if queries.empty:
        return pd.DataFrame(columns=SIMULATION_CONTEXT + ["mode", "direct", "decoded", "failed"])
    counts = _measured(queries).groupby(keys + ["path"], sort=False).size().unstack(fill_value=0)
    paths = ["direct", "decoded", "failed"]
    counts = counts.reindex(columns=paths + sorted(c for c in counts.columns if c not in paths), fill_value=0).reset_index()
    counts.columns.name = None
    return _with_context(counts, queries, simulations)


def latency_by_path(queries: pd.DataFrame, simulations: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Latency (p50, p99) and accuracy of measured queries per simulation x mode x answer path, with the
    simulation's run, rate and straggler beside it (never pooled across simulations)."""
    columns = SIMULATION_CONTEXT + ["mode", "path", "queries", "p50_ms", "p99_ms", "accuracy"]
    if queries.empty:
        return pd.DataFrame(columns=columns)
    measured = _measured(queries)
    table = measured.groupby(["simulation_id", "mode", "path"], sort=False).agg(
        queries=("latency_ms", "size"), p50_ms=("latency_ms", "median"),
        p99_ms=("latency_ms", lambda s: s.quantile(0.99)),
        accuracy=("correct", "mean") if "correct" in measured else ("latency_ms", lambda s: np.nan)).reset_index()
    return _with_context(table, queries, simulations)[columns]


def _with_context(table: pd.DataFrame, queries: pd.DataFrame, simulations: Optional[pd.DataFrame]) -> pd.DataFrame:
    """``table`` (keyed by simulation_id x mode) led by each simulation's run, rate and straggler."""
    context = simulation_context(simulations if simulations is not None else pd.DataFrame(), queries)
    if "run_id" in queries:  # the run each simulation x mode served (a simulation serves one run per mode)
        served = queries.groupby(["simulation_id", "mode"], sort=False)["run_id"].first().rename("run_id").reset_index()
        table = table.merge(served, on=["simulation_id", "mode"], how="left")
        context = context.drop(columns=["run_id"])
    else:
        table = table.assign(run_id=None)
        context = context.drop(columns=["run_id"])
    merged = table.merge(context, on="simulation_id", how="left")
    lead = [c for c in SIMULATION_CONTEXT + ["mode"] if c in merged]
    return merged[lead + [c for c in merged.columns if c not in lead]].reset_index(drop=True)


# --------------------------------------------------------------------------- sweeps (parity-ray sweep)

SWEEP_KEYS = ["sweep_id", "k", "r", "straggler", "cluster_size"]
DEFAULT_P999_TARGET_MS = 100.0


def sweep_tail(sweeps: pd.DataFrame) -> pd.DataFrame:
    """p99.9 (with its 95% interval, and p50, accuracy, cost) vs rate per mode, one line per sweep x k x r x
    straggler x cluster size. Tables written before intervals have none (null bounds)."""
    columns = SWEEP_KEYS + ["mode", "rate", "replicas", "requests_per_query", "p50_ms", "p99_ms", "p999_ms",
                            "p999_ms_lo", "p999_ms_hi", "failed", "accuracy"]
    if sweeps.empty:
        return pd.DataFrame(columns=columns)
    table = sweeps[sweeps["rate"].notna()].reindex(columns=columns).copy()
    return table.sort_values(SWEEP_KEYS + ["mode", "rate"], kind="stable").reset_index(drop=True)


def service_fits(sweeps: pd.DataFrame) -> pd.DataFrame:
    """Per sweep and batch size, the calibrated service model's tail fit (``--service-tail``): its kind,
    threshold, shape, scale, KS distance (and a whole-sample lognormal's), how often it draws past the
    largest measured time; ``qq_ms`` holds its Q-Q points (measured, fitted). Empty without fits."""
    import json as _json

    columns = ["sweep_id", "batch_size", "kind", "threshold_ms", "shape", "scale_ms", "exceedances", "ks",
               "ks_lognormal_whole", "max_measured_ms", "share_beyond_max", "p9999_ms", "qq_ms"]
    rows = []
    if "service" in sweeps:
        for sweep_id, text in sweeps.drop_duplicates("sweep_id")[["sweep_id", "service"]].itertuples(index=False):
            for size, fit in (_json.loads(text).get("tails") or {}).items():
                rows.append({"sweep_id": sweep_id, "batch_size": int(size), **{c: fit.get(c) for c in columns[2:]}})
    return pd.DataFrame(rows, columns=columns)


def sweep_target(sweeps: pd.DataFrame) -> float:
    """The p99.9 target the sweeps asked for (``--target-p999-ms``), else ``DEFAULT_P999_TARGET_MS``."""
    import json as _json

    for text in sweeps.get("settings", pd.Series(dtype=str)).dropna():
        value = _json.loads(text).get("target_p999_ms")
        if value:
            return float(value)
    return DEFAULT_P999_TARGET_MS


def cheapest_modes(sweeps: pd.DataFrame, target_ms: Optional[float] = None) -> pd.DataFrame:
    """At each rate (per sweep x k x r x straggler x cluster size): the cheapest mode whose p99.9 meets the
    target with no query failed.

    The rule: every mode of such a cell is given the same cluster (``cluster_size``); the replicas it
    deploys differ from another mode's only by how many whole apps fit (a cluster of 100 holds 33
    three-replica apps, 99 replicas, or 100 one-replica apps), not by what it costs. So the replica
    count never ranks modes: among the modes that meet the target, the cheapest sends the fewest
    requests per query (the work a query costs the cluster), then has the lowest p99.9; a tie after
    that goes to the mode deploying more replicas (the comparison closest to equal counts), then to
    the sweep's mode order. ``replicas`` is the winner's count and ``meeting`` lists every mode that
    meets the target with its own count (``none (100 replicas), replication (99 replicas)``);
    ``equal_replicas`` says whether those counts are all the same (``False``: read the winner beside
    the others' counts, the comparison is not at equal replicas). ``meets_by_interval`` says whether
    the winner's 95% interval lies wholly below the target."""
    target = sweep_target(sweeps) if target_ms is None else float(target_ms)
    tail = sweep_tail(sweeps)
    columns = SWEEP_KEYS + ["rate", "target_ms", "mode", "replicas", "requests_per_query", "p999_ms", "meets_by_interval",
                            "equal_replicas", "meeting"]
    rows = []
    for key, part in tail.groupby(SWEEP_KEYS + ["rate"], sort=True):
        ok = part[(part["p999_ms"] <= target) & (part["failed"] == 0)].copy()
        ok["_order"] = np.arange(len(ok))
        ok["_fewer"] = -ok["replicas"].astype("float64")
        best = ok.sort_values(["requests_per_query", "p999_ms", "_fewer", "_order"], kind="stable").head(1)
        row = dict(zip(SWEEP_KEYS + ["rate"], key), target_ms=target)
        if best.empty:
            row.update(mode="none meets it", replicas=None, requests_per_query=None, p999_ms=float(part["p999_ms"].min()),
                       meets_by_interval="", equal_replicas=None, meeting="")
        else:
            best = best.iloc[0]
            row.update(mode=best["mode"], replicas=int(best["replicas"]), requests_per_query=float(best["requests_per_query"]),
                       p999_ms=float(best["p999_ms"]), meets_by_interval=_meets(best, target),
                       equal_replicas=bool(ok["replicas"].nunique() == 1),
                       meeting=", ".join(f"{m} ({int(n)} replicas)" for m, n in sorted(zip(ok["mode"], ok["replicas"]))))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def format_cheapest(cheapest: pd.DataFrame) -> list:
    """``cheapest_modes`` as text lines (``parity-ray sweep --target-p999-ms``): per cell and rate the
    winner with its replica count, requests per query, p99.9 and whether its interval meets the
    target, then every mode meeting it with its own replica count."""
    if cheapest.empty:
        return []
    lines = [f"cheapest mode meeting p99.9 <= {float(cheapest['target_ms'].iloc[0]):g} ms per rate (fewest requests per "
             f"query, then lowest p99.9; replica counts differ only by app packing and do not rank):"]
    for row in cheapest.itertuples(index=False):
        where = f"k={row.k} r={row.r} cluster {row.cluster_size} [{row.straggler}] {row.rate:g} qps"
        if row.replicas is None or row.replicas != row.replicas:
            lines.append(f"  {where}: none meets it (lowest p99.9 {row.p999_ms:.1f} ms)")
            continue
        equal = "" if row.equal_replicas else "; replica counts differ"
        lines.append(f"  {where}: {row.mode} ({int(row.replicas)} replicas, {row.requests_per_query:.2f} requests/query, "
                     f"p99.9 {row.p999_ms:.1f} ms, meets by interval: {row.meets_by_interval}); meeting: {row.meeting}{equal}")
    return lines


def cheapest_records(cheapest: pd.DataFrame) -> list:
    """``cheapest_modes`` as JSON-ready dicts (null for a missing number), as ``sweep --json`` prints them."""
    return [{key: (None if isinstance(value, float) and value != value else
                   value.item() if hasattr(value, "item") else value) for key, value in row.items()}
            for row in cheapest.astype(object).to_dict("records")]


def _meets(row, target: float) -> str:
    """Whether the p99.9's 95% interval says the target is met: "yes" (all of it below), or "not
    distinguishable" at that many queries (it straddles the target); "no interval" for older tables."""
    high = row.get("p999_ms_hi")
    if high is None or high != high:
        return "no interval"
    return "yes" if high <= target else "not distinguishable"
