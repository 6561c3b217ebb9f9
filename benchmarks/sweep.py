"""``parity-ray sweep``: speed at cluster scale, and the sweep against a measured Ray Serve run.

1. Speed: 1,000,000 queries over a 100-replica cluster (coded, k=4, r=1: 20 apps of 5 replicas;
   ``random:p=0.01,delay_ms=100``, 5,000 qps, hand-given lognormal service), as Ray tasks over this
   machine's cores; target: under 60 s.
2. Validation: a ``parity-ray simulate`` of every mode (``--serve-queries`` a mode, ``--serve-repeat``
   repetitions with fresh seeds), then a sweep calibrated from that very run at its settings (each
   repetition's seed; 20x the queries): p50 / p99 / p99.9 per mode, the sweep against the median of
   Serve's repetitions, whether each is within 15%, and Serve's own run-to-run spread (the largest
   relative distance of a repetition from that median) beside it.

    python benchmarks/sweep.py [--experiment results/q1] [--serve-queries 2000] [--serve-repeat 2] [--smoke-test] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Optional
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity_ray.actors.modes import presented_modes  # noqa: E402
from parity_ray.actors.sweep import SweepOptions, run_sweep  # noqa: E402

STRAGGLER = "slow:replica=0,p=0.3,delay_ms=100"
MODES = presented_modes()  # every registered mode, coded ones first


def speed(queries: int, workers, experiment: str) -> dict:
    options = SweepOptions(experiment=experiment, run=None, modes=["coded"], rates=[5000.0], ks=[4], rs=[1],
                           cluster_sizes=[100], queries=queries, warmup=0, stragglers=["random:p=0.01,delay_ms=100"],
                           service="lognormal:median_ms=5,sigma=0.3,busy_fraction=0.5", deadline_ms=20,
                           workers=workers, progress=False)
    started = time.perf_counter()
    summary = run_sweep(options, log=lambda _m: None)
    return {"queries": summary["queries"], "seconds": time.perf_counter() - started, "row": summary["rows"][0]}


def trained_experiment(storage: str, smoke: bool = False) -> str:
    from parity_ray.tune.experiment import TuneOptions, run_experiment
    from parity_ray.ray_session import ray_running

    with ray_running(num_cpus=2, log_to_driver=False):
        opts = TuneOptions(space="quick", name="sweep-bench", storage=storage, progress=False,
                           overrides=["dataset=digits", "encoder=addition", "k=2",
                                      *(["base_epochs=2", "epochs=2"] if smoke else ["base_epochs=20", "epochs=40"])])
        run_experiment(opts, log=lambda _m: None)
    return opts.uri


def validation(experiment: str, queries: int, rate: float, deadline_ms: float, repeat: int = 1,
               dataset: Optional[str] = None, data_root: Optional[str] = None, modes: Optional[list] = None,
               warmup: int = 50) -> list:
    modes = modes or MODES
    from parity_ray.actors.simulation import SimulationOptions, run_simulation
    from parity_ray.ray_session import ray_running

    sim = SimulationOptions(experiment=experiment, dataset=dataset, data_root=data_root, modes=modes, straggler=STRAGGLER, rate=rate, queries=queries,
                            warmup=warmup, deadline_ms=deadline_ms, timeout_s=5, progress=False, interleave_s=2.0,
                            cpus_per_replica=0.05, repeat=repeat)
    with ray_running(num_cpus=2, log_to_driver=False):
        measured = run_simulation(sim, log=lambda m: print(m, file=sys.stderr))
    target = f"{experiment}:{measured['simulation_id']}"
    swept: dict = {}
    for index in range(repeat):  # the sweep at each repetition's seed, as Serve ran it
        seed = sim.repetition(index).seed
        summary = run_sweep(SweepOptions(experiment=experiment, dataset=dataset, modes=modes, rates=[rate], stragglers=[STRAGGLER],
                                         queries=queries * 20, warmup=warmup, calibrate=target, deadline_ms=deadline_ms,
                                         timeout_s=5, workers=0, progress=False, seed=seed), log=lambda _m: None)
        for row in summary["rows"]:
            swept.setdefault(row["mode"], []).append(row)
    rows = []
    for mode in modes:
        serve_runs = [s for s in measured["modes"] if s["mode"] == mode]
        for key in ("p50_ms", "p99_ms", "p999_ms"):
            serve_values = np.array([s[key] for s in serve_runs], dtype=float)
            serve_v = float(np.median(serve_values))
            sweep_v = float(np.median([r[key] for r in swept[mode]]))
            error = abs(sweep_v - serve_v) / serve_v if serve_v else float("nan")
            own = float(np.max(np.abs(serve_values - serve_v)) / serve_v) if serve_v and repeat > 1 else None
            rows.append({"mode": mode, "stat": key, "serve_ms": serve_v, "serve_min_ms": float(serve_values.min()),
                         "serve_max_ms": float(serve_values.max()), "serve_spread": own, "sweep_ms": sweep_v,
                         "error": error, "within_15pct": bool(error <= 0.15),
                         "sweep_accuracy": swept[mode][0]["accuracy"]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", help="an experiment (digits or MNIST k=2 run); default: train a small one here")
    parser.add_argument("--dataset", help="with --experiment: its best run of this dataset (needed when it has several)")
    parser.add_argument("--data-root", help="where the dataset's test images are (the Serve run reads them)")
    parser.add_argument("--queries", type=int, default=1_000_000, help="speed: simulated queries")
    parser.add_argument("--workers", type=int, help="speed: Ray tasks at once (default: this machine's CPUs); 0: in process")
    parser.add_argument("--serve-queries", type=int, help="validation: measured queries per mode on Serve (default 600; "
                                                           "60 with --smoke-test)")
    parser.add_argument("--serve-repeat", type=int, default=1, help="validation: Serve repetitions (fresh seeds); "
                                                                        "their spread is Serve's own run-to-run error")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--deadline-ms", type=float, default=40.0)
    parser.add_argument("--mode", dest="modes", help="validation: comma-separated modes (default: every registered "
                                                        f"one; with --smoke-test {MODES[0]},replication)")
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument("--smoke-test", action="store_true", help="20,000 queries, in process; 60 a mode on Serve, "
                                                                      "by default for one coded mode and replication")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.queries, args.workers = 20_000, 0
    # the smoke test checks the script: one coded mode and one uncoded (and a short warm-up)
    args.modes = [m.strip() for m in (args.modes or (f"{MODES[0]},replication" if args.smoke_test else ",".join(MODES))).split(",")
                  if m.strip()]
    if not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--mode: unknown {', '.join(sorted(set(args.modes) - set(MODES))) or '(none given)'}; "
                     f"valid choices: {', '.join(MODES)}")
    if args.serve_queries is None:
        args.serve_queries = 60 if args.smoke_test else 600
    storage = tempfile.mkdtemp(prefix="sweep-bench-")
    experiment = args.experiment or trained_experiment(storage, args.smoke_test)
    result = {"speed": speed(args.queries, args.workers, experiment)}
    s = result["speed"]
    print(f"speed: {s['queries']:,} queries over 100 replicas (coded k=4 r=1, 20 apps) in {s['seconds']:.1f} s "
          f"(target < 60 s: {'met' if s['seconds'] < 60 else 'MISSED'}); p99.9 {s['row']['p999_ms']:.1f} ms")
    if not args.skip_validation:
        rows = validation(experiment, args.serve_queries, args.rate, args.deadline_ms, args.serve_repeat,
                          args.dataset, args.data_root, modes=args.modes, warmup=10 if args.smoke_test else 50)
        result["validation"] = rows
        print(f"validation ({STRAGGLER}, {args.rate:g} qps, deadline {args.deadline_ms:g} ms, {args.serve_queries} queries "
              f"per mode on Serve, {args.serve_repeat} repetition(s); Serve: median [min-max], spread = its own "
              f"largest distance from the median):")
        print(f"{'mode':<13}{'stat':<9}{'serve ms':>22}{'spread':>8}{'sweep ms':>10}{'error':>8}")
        for row in rows:
            spread = "n/a" if row["serve_spread"] is None else f"{row['serve_spread']:.1%}"
            serve = f"{row['serve_ms']:.1f} [{row['serve_min_ms']:.1f}-{row['serve_max_ms']:.1f}]"
            print(f"{row['mode']:<13}{row['stat']:<9}{serve:>22}{spread:>8}{row['sweep_ms']:>10.1f}"
                  f"{row['error']:>8.1%}{'' if row['within_15pct'] else '  > 15%'}")
        result["validation_within_15pct"] = all(r["within_15pct"] for r in rows)
    if args.json:
        print(json.dumps({**result, "speed": {k: v for k, v in s.items() if k != "row"}}, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    from parity_ray.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
