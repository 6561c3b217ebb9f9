"""Tune overhead: a search space's grid through Ray Tune vs the same trials run one by one in-process.

Workload: the ``quick`` space by default (digits and MNIST, base-mlp, k in {2, 3}, addition
and concatenation: 8 CPU trials). Two runs, back to back:

* Tune: ``run_experiment`` exactly as ``parity-ray tune --space quick`` runs it (a local Ray,
  the base-model stage, the trials at ``--cpus-per-trial`` CPUs each, checkpoints, tables).
  Per trial, ``wall_seconds`` (Tune's ``time_total_s``) and ``train_seconds`` come from the
  experiment's ``runs`` table.
* in-process: the base models trained once into a scratch cache (timed), then every runnable
  cell of the same expanded grid through ``trainer.train`` back to back, with the trial's
  thread count, each call timed.

Per-trial overhead, reported as medians over the trials:

* (b) vs the same trial in-process: Tune wall minus the in-process wall of that trial. Data
  loading, base outputs, evaluation and checkpoints are paid by both runners, so this is what
  Tune itself adds; the target is judged on it.
* (a) vs training time: Tune wall minus the trial's pure training-step seconds (everything
  that is not an optimisation step: data, evaluation, checkpoints, and Tune).
* (c), for context: Tune's ``time_total_s`` starts once the trial's worker is up, so (a) and (b)
  miss worker start-up and teardown. (c) charges them: the Tune trials phase's wall time times
  the concurrent trial slots, minus the in-process trials' summed wall, per trial (CPU
  contention between concurrent trials counts as overhead here too).

Speedup: the in-process trials' summed wall time over the Tune grid's wall time (Ray start,
base models, trials and tables included); also shown with the in-process base-model training
added, i.e. the whole grid each way.

Target on 2 CPU cores: median per-trial overhead (b) <= 3 s.

    python benchmarks/tune_overhead.py [--set epochs=3] [--json]
    python benchmarks/tune_overhead.py --smoke-test    # 2 digits trials, 2 batches each: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_OVERHEAD_SECONDS = 3.0
# --smoke-test: the space's digits cells at k=2 (two trials in the quick space), each cut to the
# platform's smoke size (one epoch of two batches, a one-epoch base model) on both sides.
SMOKE_OVERRIDES = ["dataset=digits", "epochs=1", "k=2"]
# The config keys that decide which base model a cell needs (as the experiment's base stage groups them).
BASE_KEYS = ("dataset", "model", "seed", "val_size", "input_norm", "base_epochs", "base_weights", "data_root")


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_tune(options) -> Dict[str, Any]:
    """The grid through ``run_experiment``; phases timed from its log lines."""
    from parity_ray import results
    from parity_ray.tune.experiment import run_experiment

    marks: Dict[str, float] = {}
    started = time.perf_counter()

    def log(message: str) -> None:
        # "base models: preparing ..." is logged once Ray is up; "tune: ..." once the base models are ready.
        if message.startswith("base models:"):
            marks.setdefault("base_stage", time.perf_counter())
        elif message.startswith("tune:"):
            marks.setdefault("trials", time.perf_counter())
        stderr(f"[tune] {message}")

    summary = run_experiment(options, log=log)
    wall = time.perf_counter() - started
    runs = results.load(options.uri).runs
    phases = {}
    if "base_stage" in marks and "trials" in marks:
        phases = {
            "ray_start_and_checks": marks["base_stage"] - started,
            "base_models": marks["trials"] - marks["base_stage"],
            "trials_and_tables": started + wall - marks["trials"],
        }
    trials = {
        row["run_id"]: {
            "status": row["status"],
            "error": row["error"] if isinstance(row["error"], str) else None,  # NaN when the trial completed
            "wall_seconds": _float(row["wall_seconds"]),
            "train_seconds": _float(row["train_seconds"]),
        }
        for row in runs.to_dict("records")
    }
    return {"uri": options.uri, "wall_seconds": wall, "phases": phases, "summary": summary, "trials": trials}


def run_in_process(args, cells) -> Dict[str, Any]:
    """Base models once (timed), then each cell's ``train`` call back to back (each timed)."""
    import torch

    from parity_ray.base import prepare_base_model
    from parity_ray.config import TrainConfig
    from parity_ray.data import load_data
    from parity_ray.trainer import train
    from parity_ray.machine import resolve_device

    threads = max(1, int(args.cpus_per_trial))
    base_seconds: Dict[str, float] = {}
    trials: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="parity-overhead-inproc-") as scratch:
        base_cache, out = str(Path(scratch, "base_models")), str(Path(scratch, "runs"))
        common = {"base_cache": base_cache, "num_threads": threads, "out": out}

        seen = set()
        for cell in cells:
            key = json.dumps({k: cell.config.get(k) for k in BASE_KEYS}, sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            config = TrainConfig.from_dict({**cell.config, **common}).validate().resolved()
            torch.set_num_threads(threads)
            device = resolve_device(config.device)
            data = load_data(config.dataset, data_root=config.data_root, download=config.download,
                             val_size=config.val_size, split_seed=config.seed, input_norm=config.input_norm,
                             device=device)
            begun = time.perf_counter()
            _model, info = prepare_base_model(config, data, device, log=lambda _m: None)
            base_seconds[info.id] = time.perf_counter() - begun
            stderr(f"[in-process] base model {info.id}: {base_seconds[info.id]:.1f} s")

        for cell in cells:
            config = TrainConfig.from_dict({**cell.config, **common, "name": cell.run_id})
            begun = time.perf_counter()
            result = train(config, progress=False, log=lambda _m: None)
            wall = time.perf_counter() - begun
            trials[cell.run_id] = {
                "wall_seconds": wall,
                "train_seconds": result.summary["train_seconds"],
                "startup_seconds": result.summary["startup_seconds"],
                "epochs": result.summary["epochs"],
            }
            stderr(f"[in-process] {cell.run_id}: {wall:.1f} s (train {result.summary['train_seconds']:.1f} s)")
    return {"base_models_seconds": base_seconds, "trials": trials}


def _float(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN -> None


def _median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _fmt(value: Optional[float], width: int, digits: int = 1) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="quick", help="a search_spaces name or a .py file (grid axes only)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key for every trial, e.g. --set epochs=3 (repeatable)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--max-concurrent-trials", type=int, default=None,
                        help="cap Tune's concurrency (default: as many trials as the CPUs fit)")
    parser.add_argument("--storage", default=None, help="Tune experiment storage (default: a temp dir, removed after)")
    parser.add_argument("--name", default="overhead", help="experiment name under --storage")
    parser.add_argument("--data-root", default=None,
                        help="dataset root (default: $PARITY_RAY_DATA, else ../shared/data beside the repo)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="two tiny digits trials each way: checks the script, judges nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.set = SMOKE_OVERRIDES + list(args.set)

    data_root = args.data_root or os.environ.get("PARITY_RAY_DATA")
    if not data_root:
        guess = Path(__file__).resolve().parents[2] / "shared" / "data"
        data_root = str(guess) if guess.is_dir() else None
    if data_root:
        os.environ["PARITY_RAY_DATA"] = data_root  # set before Ray starts, so its workers inherit it

    from parity_ray.errors import UsageError
    from parity_ray.tune.spaces import expand

    try:
        space = expand(args.space, args.set, args.smoke_test)
    except UsageError as exc:
        stderr(f"error: {exc}")
        return 2
    if space.samplers:
        stderr(f"error: space '{args.space}' samples {sorted(space.samplers)}; the in-process side needs a grid-only space")
        return 2
    cells = space.runnable
    if not cells:
        stderr(f"error: space '{args.space}' has no cell that can run here")
        return 2
    stderr(f"{len(cells)} trial(s) of space '{space.name}' (overrides: {args.set or 'none'}), "
           f"{args.cpus_per_trial:g} CPU each, {os.cpu_count()} CPUs here")

    from parity_ray.tune.experiment import TuneOptions, _local_base_cache

    temp_storage = args.storage is None
    options = TuneOptions(
        space=args.space,
        name=args.name,
        storage=args.storage or tempfile.mkdtemp(prefix="parity-overhead-tune-"),
        cpus_per_trial=args.cpus_per_trial,
        max_concurrent_trials=args.max_concurrent_trials,
        overrides=list(args.set),
        smoke_test=args.smoke_test,
        progress=False,
    )
    try:
        try:
            tune = run_tune(options)
        except UsageError as exc:
            stderr(f"error: {exc}")
            return 2
        local = run_in_process(args, cells)
    finally:
        if temp_storage:
            shutil.rmtree(options.storage, ignore_errors=True)
            # The experiment's node-local copy of its base models lives in the user cache, keyed by the URI.
            shutil.rmtree(_local_base_cache(options.uri).parent, ignore_errors=True)

    rows = []
    for cell in cells:
        t = tune["trials"].get(cell.run_id, {})
        p = local["trials"][cell.run_id]
        wall = t.get("wall_seconds") if t.get("status") == "COMPLETED" else None
        rows.append({
            "run_id": cell.run_id,
            "status": t.get("status", "MISSING"),
            "error": t.get("error"),
            "tune_wall_seconds": t.get("wall_seconds"),
            "tune_train_seconds": t.get("train_seconds"),
            "inprocess_wall_seconds": p["wall_seconds"],
            "inprocess_train_seconds": p["train_seconds"],
            "inprocess_startup_seconds": p["startup_seconds"],
            "overhead_vs_train": wall - t["train_seconds"] if wall is not None and t.get("train_seconds") is not None else None,
            "overhead_vs_inprocess": wall - p["wall_seconds"] if wall is not None else None,
        })

    median_a = _median([r["overhead_vs_train"] for r in rows if r["overhead_vs_train"] is not None])
    median_b = _median([r["overhead_vs_inprocess"] for r in rows if r["overhead_vs_inprocess"] is not None])
    sequential_trials = sum(p["wall_seconds"] for p in local["trials"].values())
    sequential_base = sum(local["base_models_seconds"].values())
    speedup = sequential_trials / tune["wall_seconds"]
    speedup_whole = (sequential_trials + sequential_base) / tune["wall_seconds"]
    completed = sum(r["status"] == "COMPLETED" for r in rows)
    # (c) Tune's time_total_s starts once a trial's actor is up, so it misses worker start-up and
    # teardown; this one charges them too: slot-seconds of the trials phase beyond the in-process walls.
    slots = max(1, int((os.cpu_count() or 1) // args.cpus_per_trial))
    if args.max_concurrent_trials:
        slots = min(slots, args.max_concurrent_trials)
    slots = min(slots, len(rows))
    trials_phase = tune["phases"].get("trials_and_tables")
    amortized = (trials_phase * slots - sequential_trials) / len(rows) if trials_phase is not None else None
    judged_on, judged = ("vs_inprocess", median_b) if median_b is not None else ("vs_train", median_a)

    width = max(len("run_id"), *(len(r["run_id"]) for r in rows))
    print(f"{'run_id':<{width}}  {'status':<10}{'tune wall':>10}{'in-proc':>10}{'train s':>9}{'startup':>9}"
          f"{'ovh(a)':>9}{'ovh(b)':>9}")
    for r in rows:
        print(f"{r['run_id']:<{width}}  {r['status']:<10}{_fmt(r['tune_wall_seconds'], 10)}"
              f"{_fmt(r['inprocess_wall_seconds'], 10)}{_fmt(r['tune_train_seconds'], 9)}"
              f"{_fmt(r['inprocess_startup_seconds'], 9)}{_fmt(r['overhead_vs_train'], 9, 2)}"
              f"{_fmt(r['overhead_vs_inprocess'], 9, 2)}")
        if r["error"]:
            print(f"{'':<{width}}  error: {r['error']}")
    print("  tune wall = Tune's time_total_s of the trial; in-proc = wall of the same train() call in-process;")
    print("  train s = training-step seconds (Tune trial); startup = in-process data + base outputs seconds;")
    print("  ovh(a) = tune wall - train s; ovh(b) = tune wall - in-proc")
    print()
    print(f"trials completed under Tune         {completed}/{len(rows)}")
    print(f"median per-trial overhead (b)       {_fmt(median_b, 6, 2)} s  vs the same trial in-process "
          f"(target <= {TARGET_OVERHEAD_SECONDS:g} s)")
    print(f"median per-trial overhead (a)       {_fmt(median_a, 6, 2)} s  vs the trial's training-step time")
    print(f"mean per-trial cost beyond in-proc  {_fmt(amortized, 6, 2)} s  (c): (trials+tables phase x {slots} slots"
          f" - in-process trials) / {len(rows)}; includes worker start-up, which Tune's time_total_s leaves out")
    phases = tune["phases"]
    phase_text = (f"  (Ray start {phases['ray_start_and_checks']:.1f} s, base models {phases['base_models']:.1f} s, "
                  f"trials + tables {phases['trials_and_tables']:.1f} s)") if phases else ""
    print(f"Tune grid wall, Ray start included  {tune['wall_seconds']:6.1f} s{phase_text}")
    print(f"in-process, trials back to back     {sequential_trials:6.1f} s  "
          f"(+ {sequential_base:.1f} s training {len(local['base_models_seconds'])} base model(s) beforehand)")
    print(f"speedup from concurrent trials      {speedup:6.2f}x  trials in-process / Tune grid "
          f"({speedup_whole:.2f}x with the base models on both sides)")
    target_met = judged is not None and judged <= TARGET_OVERHEAD_SECONDS
    print(f"target: median overhead ({judged_on}) <= {TARGET_OVERHEAD_SECONDS:g} s: {'met' if target_met else 'NOT met'}"
          + (" (smoke test, not meaningful)" if args.smoke_test else "")
          + ("" if completed == len(rows) else f"; {len(rows) - completed} trial(s) did not complete"))

    report = {
        "space": space.name,
        "overrides": list(args.set),
        "cpus_per_trial": args.cpus_per_trial,
        "max_concurrent_trials": args.max_concurrent_trials,
        "cpu_count": os.cpu_count(),
        "trials": rows,
        "median_overhead_vs_inprocess_seconds": median_b,
        "median_overhead_vs_train_seconds": median_a,
        "mean_slot_seconds_beyond_inprocess": amortized,
        "concurrent_slots": slots,
        "tune_wall_seconds": tune["wall_seconds"],
        "tune_phases_seconds": phases,
        "inprocess_trials_seconds": sequential_trials,
        "inprocess_base_models_seconds": local["base_models_seconds"],
        "speedup": speedup,
        "speedup_with_base_models": speedup_whole,
        "targets": {
            f"median_overhead_le_{TARGET_OVERHEAD_SECONDS:g}s": target_met,
            "all_trials_completed": completed == len(rows),
        },
        "judged_on": judged_on,
    }
    if args.smoke_test:
        report["smoke_test"] = True
    if args.json:
        print(json.dumps(report, default=str))
    if args.smoke_test:  # the overhead judges nothing on tiny trials; every trial must still complete
        return 0 if report["targets"]["all_trials_completed"] else 1
    return 0 if all(report["targets"].values()) else 1


if __name__ == "__main__":
    from parity_ray.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
