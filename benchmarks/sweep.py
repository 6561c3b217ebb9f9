"""``parity-ray sweep``: speed at cluster scale, and the sweep against a measured Ray Serve run.

1. Speed: 1,000,000 queries over a 100-replica cluster (coded, k=4, r=1: 20 apps of 5 replicas;
   ``random:p=0.01,delay_ms=100``, 5,000 qps, hand-given lognormal service), as Ray tasks over this
   machine's cores; target: under 60 s.
2. Validation: a small ``parity-ray simulate`` of every mode (or ``--experiment`` holding one), then a
   sweep calibrated from that very run at its settings: p50 / p99 / p99.9 per mode, sweep vs Serve,
   and whether each is within 15%.

    python benchmarks/sweep.py [--experiment results/q1] [--smoke-test] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

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


def validation(experiment: str, queries: int, rate: float, deadline_ms: float) -> list:
    from parity_ray.actors.simulation import SimulationOptions, run_simulation
    from parity_ray.ray_session import ray_running

    sim = SimulationOptions(experiment=experiment, modes=MODES, straggler=STRAGGLER, rate=rate, queries=queries,
                            warmup=50, deadline_ms=deadline_ms, timeout_s=5, progress=False, interleave_s=2.0,
                            cpus_per_replica=0.05)
    with ray_running(num_cpus=2, log_to_driver=False):
        measured = run_simulation(sim, log=lambda m: print(m, file=sys.stderr))
    target = f"{experiment}:{measured['simulation_id']}"
    swept = run_sweep(SweepOptions(experiment=experiment, modes=MODES, rates=[rate], stragglers=[STRAGGLER],
                                   queries=queries * 20, warmup=50, calibrate=target, deadline_ms=deadline_ms,
                                   timeout_s=5, workers=0, progress=False), log=lambda _m: None)
    rows = []
    by_mode = {row["mode"]: row for row in swept["rows"]}
    for serve_row in measured["modes"]:
        sweep_row = by_mode[serve_row["mode"]]
        for key in ("p50_ms", "p99_ms", "p999_ms"):
            serve_v, sweep_v = serve_row[key], sweep_row[key]
            error = abs(sweep_v - serve_v) / serve_v if serve_v else float("nan")
            rows.append({"mode": serve_row["mode"], "stat": key, "serve_ms": serve_v, "sweep_ms": sweep_v,
                         "error": error, "within_15pct": bool(error <= 0.15), "sweep_accuracy": sweep_row["accuracy"]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", help="an experiment (digits or MNIST k=2 run); default: train a small one here")
    parser.add_argument("--queries", type=int, default=1_000_000, help="speed: simulated queries")
    parser.add_argument("--workers", type=int, help="speed: Ray tasks at once (default: this machine's CPUs); 0: in process")
    parser.add_argument("--serve-queries", type=int, help="validation: measured queries per mode on Serve (default 600; "
                                                           "60 with --smoke-test)")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--deadline-ms", type=float, default=40.0)
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument("--smoke-test", action="store_true", help="20,000 queries, in process; 60 a mode on Serve")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.queries, args.workers = 20_000, 0
    if args.serve_queries is None:
        args.serve_queries = 60 if args.smoke_test else 600
    storage = tempfile.mkdtemp(prefix="sweep-bench-")
    experiment = args.experiment or trained_experiment(storage, args.smoke_test)
    result = {"speed": speed(args.queries, args.workers, experiment)}
    s = result["speed"]
    print(f"speed: {s['queries']:,} queries over 100 replicas (coded k=4 r=1, 20 apps) in {s['seconds']:.1f} s "
          f"(target < 60 s: {'met' if s['seconds'] < 60 else 'MISSED'}); p99.9 {s['row']['p999_ms']:.1f} ms")
    if not args.skip_validation:
        rows = validation(experiment, args.serve_queries, args.rate, args.deadline_ms)
        result["validation"] = rows
        print(f"validation ({STRAGGLER}, {args.rate:g} qps, deadline {args.deadline_ms:g} ms, {args.serve_queries} queries "
              f"per mode on Serve):")
        print(f"{'mode':<13}{'stat':<9}{'serve ms':>10}{'sweep ms':>10}{'error':>8}")
        for row in rows:
            print(f"{row['mode']:<13}{row['stat']:<9}{row['serve_ms']:>10.1f}{row['sweep_ms']:>10.1f}"
                  f"{row['error']:>8.1%}{'' if row['within_15pct'] else '  > 15%'}")
        result["validation_within_15pct"] = all(r["within_15pct"] for r in rows)
    if args.json:
        print(json.dumps({**result, "speed": {k: v for k, v in s.items() if k != "row"}}, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
