"""Every code family at the same redundancy (k = 8, r = 1: one unavailable worker), side by side.

MNIST and Fashion-MNIST with LeNet-5 bases trained here (once, cached), each code through the one
trainer: available accuracy (the base alone), degraded accuracy (the rebuilt outputs only: the
measure of ApproxIFER's published figure and of the parity-models paper) and all-k accuracy (every
answer as a client receives it), with the time each took, printed beside ApproxIFER's published
K = 8 figures (ResNet-18 bases listed at 0.99 / 0.97: MNIST 0.872, Fashion-MNIST 0.74) and the
parity models of the same figure (0.683 / 0.671).

Goal: the best code here (chosen on validation degraded accuracy) beats ApproxIFER's figure on both datasets in
test degraded accuracy (the exit status); the further goal, >= 0.95 on MNIST and >= 0.85 on Fashion-MNIST,
is printed as met or missed. Each row also names its parity model's parameters and FLOPs per coded
query, so a larger parity model (``lenet5-wide`` rows) is never a hidden win. "no failure" is every answer through the code with all workers back (all_accuracy_e0).

    python benchmarks/codes.py --data-root ../shared/data [--epochs 10] [--json]
    python benchmarks/codes.py --smoke-test          # digits, one epoch: checks the script
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity_ray.config import TrainConfig  # noqa: E402
from parity_ray.run_tables import parity_cost_columns  # noqa: E402
from parity_ray.trainer import train  # noqa: E402

PUBLISHED = {  # ApproxIFER (AAAI'22), K = 8, S = 1: (ApproxIFER, parity models in the same figure)
    "mnist": (0.872, 0.683),
    "fashion-mnist": (0.74, 0.671),
}

GOAL = {"mnist": 0.95, "fashion-mnist": 0.85}  # issue 23: past the published figures, near what F answers alone

# name -> config keys; the trained ones get --epochs, the others run with epochs 0.
CODES = {  # cheapest first, so an interrupted run still has the most rows
    "berrut non-systematic (F)": {"encoder": "berrut", "decoder": "berrut", "systematic": False, "parity_model": "base", "epochs": 0},
    "berrut systematic (F)": {"encoder": "berrut", "decoder": "berrut", "systematic": True, "parity_model": "base", "epochs": 0},
    "addition (parity model)": {"encoder": "addition", "decoder": "subtraction", "loss": "mse"},
    "concatenation (parity model)": {"encoder": "concatenation", "decoder": "subtraction", "loss": "mse"},
    "berrut systematic (trained parity model)": {"encoder": "berrut", "decoder": "berrut", "systematic": True, "loss": "kl"},
    "berrut non-systematic (trained workers)": {"encoder": "berrut", "decoder": "berrut", "systematic": False,
                                                "parity_init": "base", "loss": "kl"},
    "learned mlp/mlp (F)": {"encoder": "mlp", "decoder": "mlp", "parity_model": "base", "loss": "kl"},
    "learned conv/mlp (F)": {"encoder": "conv", "decoder": "mlp", "parity_model": "base", "loss": "kl"},
    # A larger parity model (issue 23, item 3): its parameters and FLOPs per coded query are in the row.
    "addition (lenet5-wide parity model)": {"encoder": "addition", "decoder": "subtraction", "loss": "mse",
                                            "parity_model": "lenet5-wide"},
    "concatenation (lenet5-wide parity model)": {"encoder": "concatenation", "decoder": "subtraction", "loss": "mse",
                                                 "parity_model": "lenet5-wide"},
    # A learned downsample-and-concatenate: k compressed queries side by side, a parity model that
    # reads each slot and sums (its cost per coded query grows with k, shown in the row).
    "projection (slot-mlp parity model)": {"encoder": "projection", "decoder": "subtraction", "loss": "mse",
                                           "parity_model": "slot-mlp"},
    # The same code trained on the labels (ce on the rebuilt output; no comma in a name: --codes splits on them): Fashion-MNIST's best (0.832 at 80 epochs).
    "projection ce (slot-mlp parity model)": {"encoder": "projection", "decoder": "subtraction", "loss": "ce",
                                               "parity_model": "slot-mlp"},
    # ... and decoded with a learned correction of each arrived output before the subtraction (the
    # rebuilt output's error was the sum of the other queries' mismatches g - F).
    "projection corrected (slot-mlp parity model)": {"encoder": "projection", "decoder": "corrected-subtraction",
                                                     "loss": "ce", "parity_model": "slot-mlp"},
}


def run_code(dataset: str, name: str, keys: dict, args, out: Path, k: int) -> dict:
    config = TrainConfig.from_dict({
        "dataset": dataset, "model": args.model, "k": k, "r": 1, "epochs": args.epochs, "seed": args.seed,
        "data_root": args.data_root, "out": str(out), "name": f"{dataset}-{len(list(out.iterdir()))}",
        "lr_schedule": "cosine", "num_threads": args.threads, **keys,
        **({"base_epochs": args.base_epochs} if args.base_epochs else {}),
        **({"max_train_batches": 4, "max_eval_groups": 64, "base_epochs": 1} if args.smoke_test else {}),
    })
    started = time.perf_counter()
    summary = train(config, progress=not args.no_progress, log=lambda m: print(f"    {m}", file=sys.stderr, flush=True)).summary
    row = {
        "dataset": dataset, "k": k, "code": name, "family": summary["code_family"], "epochs": summary["epochs"],
        "available_accuracy": summary["available_accuracy"], "degraded_accuracy": summary["degraded_accuracy_e1"],
        "all_accuracy": summary["all_accuracy_e1"], "no_failure_accuracy": summary.get("all_accuracy_e0"),
        "val_degraded_accuracy": summary.get("val_degraded_accuracy"), "majority_accuracy": summary.get("majority_accuracy"),
        "seconds": round(time.perf_counter() - started, 1),
        "train_seconds": summary["train_seconds"],
        **parity_cost_columns(config.to_dict()),
    }
    print(f"    -> {json.dumps(row)}", file=sys.stderr, flush=True)  # each row as it lands
    return row


def _count(value) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.1f} k"


def _mflops(value) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--datasets", default="mnist,fashion-mnist")
    parser.add_argument("--codes", default=",".join(CODES), help="comma-separated names from the table")
    parser.add_argument("--model", default="lenet5", help="the base model F (ResNet-18: resnet18, on a GPU)")
    parser.add_argument("--k", type=int, nargs="+", default=[8],
                        help="group sizes; several (e.g. --k 2 4 8 12) give the k-scaling table (published figures: k = 8)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs for the codes that train something")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for LeNet-sized work on a busy machine)")
    parser.add_argument("--base-epochs", type=int, default=None, help="epochs of the LeNet-5 bases trained here (default: the dataset's)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--smoke-test", action="store_true", help="digits, a few batches: checks the script")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    datasets = ["digits"] if args.smoke_test else args.datasets.split(",")
    if args.smoke_test:
        args.epochs, args.k = 1, [4]
    names = [n.strip() for n in args.codes.split(",") if n.strip()]
    unknown = [n for n in names if n not in CODES]
    if unknown:
        parser.error(f"unknown code(s) {unknown}; valid choices: {', '.join(CODES)}")

    rows = []
    with tempfile.TemporaryDirectory(prefix="codes-bench-") as tmp:
        for dataset in datasets:
            out = Path(tmp) / dataset
            out.mkdir()
            for k in args.k:
                for name in names:
                    print(f"{dataset} k={k}: {name}", file=sys.stderr, flush=True)
                    rows.append(run_code(dataset, name, CODES[name], args, out, k))

    print(f"\nk = {', '.join(map(str, args.k))}, r = 1 (one unavailable worker), {args.model} bases; "
          f"trained codes: {args.epochs} epochs")
    header = (f"{'dataset':<14} {'k':>3} {'code':<42} {'available':>9} {'no failure':>10} {'degraded':>9} {'all-k':>7} "
              f"{'val degr.':>9} {'seconds':>8} {'parity params':>13} {'MFLOPs/query':>12}")
    print(header + "\n" + "-" * len(header))
    verdicts = {}
    for dataset in datasets:
        for row in [r for r in rows if r["dataset"] == dataset]:
            below = row["majority_accuracy"] is not None and row["degraded_accuracy"] < row["majority_accuracy"]
            print(f"{dataset:<14} {row['k']:>3} {row['code']:<42} {row['available_accuracy']:>9.4f} {row['no_failure_accuracy']:>10.4f} "
                  f"{row['degraded_accuracy']:>9.4f} {row['all_accuracy']:>7.4f} {row['val_degraded_accuracy']:>9.4f} "
                  f"{row['seconds']:>8.1f} {_count(row['parity_params']):>13} {_mflops(row['parity_flops']):>12}"
                  f"{'  BELOW BASE RATE' if below else ''}")
        mine = [r for r in rows if r["dataset"] == dataset and r["k"] == 8]  # the published figures' k
        if dataset in PUBLISHED and mine:
            approxifer, parm = PUBLISHED[dataset]
            print(f"{dataset:<14} {8:>3} {'published: ApproxIFER (ResNet-18, K=8)':<42} {'':>9} {'':>10} {approxifer:>9.4f}")
            print(f"{dataset:<14} {8:>3} {'published: parity models (same figure)':<42} {'':>9} {'':>10} {parm:>9.4f}")
            best = max(mine, key=lambda r: r["val_degraded_accuracy"])  # chosen on validation; its test figure is judged
            met = best["degraded_accuracy"] > approxifer
            goal = GOAL.get(dataset)
            verdicts[dataset] = {"best_code": best["code"], "best_degraded_accuracy": best["degraded_accuracy"],
                                 "approxifer": approxifer, "met": met, "goal": goal,
                                 "goal_met": goal is not None and best["degraded_accuracy"] >= goal}
            print(f"  best on validation: {best['code']}, test {best['degraded_accuracy']:.4f} vs ApproxIFER {approxifer:.3f}: "
                  f"{'met' if met else 'MISSED'}; goal {goal}: {'met' if verdicts[dataset]['goal_met'] else 'missed'}")
    if args.json:
        print(json.dumps({"k": args.k, "epochs": args.epochs, "rows": rows, "targets": verdicts}, sort_keys=True))
    return 0 if all(v["met"] for v in verdicts.values()) else 1


if __name__ == "__main__":
    from parity_ray.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
