"""``parity-ray quickstart``: the whole workflow on one machine, offline, in a few minutes.

The quick grid is trained through Ray Tune, the best run is served on Ray Serve with one
straggling replica in every serving mode, and the report is written: the same three commands a
user would run by hand (``tune``, ``simulate``, ``report``), sharing one local Ray.
"""

from __future__ import annotations

import argparse
from .common import print_json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .. import storage
from ..bounds import check_output_dir
from ..errors import UsageError
from ..logs import stderr_log
from .options import add_option_flags, options_from_args

STRAGGLER = "slow:replica=0,p=0.3,delay_ms=100"  # the published set-up: one replica slowed on 30% of its batches


@dataclass
class QuickstartOptions:
    """``parity-ray quickstart``: where the experiment goes and where MNIST is; the rest is fixed."""

    storage: str = "./results"  # parent folder of the experiment (local: the quickstart runs offline)
    name: Optional[str] = None  # experiment name (default: the first free of q1, q2, ...)
    data_root: Optional[str] = None  # folder holding MNIST (else $PARITY_RAY_DATA); without it: digits only
    rate: float = field(default=30.0, metadata={"cli": False})  # simulation: Poisson queries/s (2 cores sustain this in every mode)
    queries: int = field(default=300, metadata={"cli": False})  # simulation: measured queries per mode
    deadline_ms: float = field(default=50.0, metadata={"cli": False})  # simulation: above the no-straggler p90 on 2 cores
    smoke_test: bool = False  # a tiny grid and a few queries, to check the set-up
    progress: bool = field(default=True, metadata={"negate": "--no-progress", "negate_help": "no progress bars"})  # progress bars


def run_quickstart(options: QuickstartOptions, simulate: Callable[..., Dict[str, Any]],
                   log: Callable[[str], None] = stderr_log) -> Dict[str, Any]:
    """Tune the quick grid, simulate its best run, write the report; return what each step made.

    ``simulate(log, **simulation options)`` is the Serve layer's simulation driver
    (``actors.simulation``), passed in by the CLI: the library itself never imports Serve.
    """
    from parity_ray.actors.modes import default_simulation_modes
    from parity_ray.actors.options import smoke_modes
    from parity_ray.analysis.report import build_report

    from ..ray_session import ray_running
    from ..tune.experiment import TuneOptions, run_experiment

    if storage.is_remote(options.storage):
        raise UsageError("quickstart runs offline on this machine: --storage must be a local folder")
    check_output_dir(options.storage, "--storage")  # one line before Ray starts or anything is written
    started = time.perf_counter()
    name = options.name or _free_name(options.storage)
    overrides = _grid_overrides(options.data_root, log)
    steps: Dict[str, float] = {}
    clock = time.perf_counter()
    with ray_running(None):  # a local Ray started here is shut down, Serve's apps with it, before the report
        steps["ray_start"] = time.perf_counter() - clock
        log(f"1/3 tune: the quick grid into {storage.join(storage.canonical(options.storage), name)}")
        tune_options = TuneOptions(space="quick", name=name, storage=options.storage, overrides=overrides,
                                   smoke_test=options.smoke_test, progress=options.progress)
        clock = time.perf_counter()
        tuned = run_experiment(tune_options, log=log)
        steps["tune"] = time.perf_counter() - clock
        if not tuned["best_run"]:
            raise RuntimeError(f"no trial of the quick grid completed: {tuned['status']}; see {tuned['tables']}")
        served = _served_run(tune_options.uri)
        log(f"2/3 simulate: {served} with '{STRAGGLER}' at {options.rate:g} qps")
        sim_options = dict(
            experiment=tune_options.uri, run=served, straggler=STRAGGLER, rate=options.rate,
            queries=8 if options.smoke_test else options.queries, warmup=2 if options.smoke_test else options.queries // 10,
            deadline_ms=options.deadline_ms, data_root=options.data_root,
            modes=smoke_modes() if options.smoke_test else default_simulation_modes(),
            progress=options.progress)
        clock = time.perf_counter()
        simulated = simulate(log, **sim_options)
        steps["simulate"] = time.perf_counter() - clock
    log("3/3 report")
    clock = time.perf_counter()
    report = build_report(tune_options.uri, data_root=options.data_root)
    steps["report"] = time.perf_counter() - clock
    return {"experiment": tune_options.uri, "tune": tuned, "simulation": simulated, "report": report["report"],
            "runs": _run_rows(tune_options.uri), "step_seconds": {k: round(v, 1) for k, v in steps.items()},
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _served_run(experiment: str) -> str:
    """The run the quickstart simulates: the best of the grid's largest inputs (MNIST's when MNIST was
    given, not the 8x8 digits toy), as ``--run best --dataset <it>`` picks it."""
    import math

    from ..data import get_dataset_spec
    from ..results import load_experiment
    from ..serving import resolve_run

    runs = load_experiment(experiment).runs
    datasets = sorted(set(runs[runs.status == "COMPLETED"].dataset))
    largest = max(datasets, key=lambda name: (math.prod(get_dataset_spec(name).input_shape), name))
    return resolve_run(experiment, "best", dataset=largest).run_id


def _free_name(parent: str) -> str:
    for i in range(1, 1000):
        if not storage.exists(storage.join(storage.canonical(parent), f"q{i}", "experiment.json")):
            return f"q{i}"
    raise UsageError(f"{parent} already holds q1 .. q999; pass --name")


def _grid_overrides(data_root: Optional[str], log: Callable[[str], None]) -> List[str]:
    """The quick grid as is when MNIST is on this machine; its digits cell alone when it is not."""
    from ..data import data_roots, dataset_available

    if data_root:
        # An explicit --data-root is used or refused, never traded for the digits-only grid.
        data_roots(data_root)
        if not dataset_available("mnist", data_root):
            raise UsageError(f"--data-root '{data_root}' holds no MNIST (the idx files, or their .gz, in MNIST/raw or mnist/MNIST/raw)")
        # The trials run in Ray workers: they must be told where the data is, not only this process.
        return [f"data_root={Path(data_root).expanduser().resolve()}"]
    if dataset_available("mnist"):
        return []
    log("MNIST is not on this machine (pass --data-root or set PARITY_RAY_DATA): the grid keeps to its digits cells")
    return ["dataset=digits", "epochs=40"]


def _run_rows(experiment: str) -> List[Dict[str, Any]]:
    from ..results import load

    runs = load(experiment).runs
    runs = runs[runs.status == "COMPLETED"].sort_values(["dataset", "k", "encoder"])
    columns = ["run_id", "dataset", "k", "encoder", "available_accuracy", "degraded_accuracy"]
    return runs[columns].to_dict("records")


def format_summary(summary: Dict[str, Any]) -> str:
    """The short tables the quickstart ends with: the grid, the serving modes, the report's path."""
    status = ", ".join(f"{k.lower()} {v}" for k, v in sorted(summary["tune"]["status"].items()))
    lines = [f"{summary['tune']['trials']} trials ({status})", "",
             f"{'dataset':<10}{'k':>3} {'encoder':<15}{'available':>10}{'degraded':>10}"]
    for run in summary["runs"]:
        lines.append(f"{run['dataset']:<10}{run['k']:>3} {run['encoder']:<15}"
                     f"{run['available_accuracy']:>10.4f}{run['degraded_accuracy']:>10.4f}")
    sim = summary["simulation"]
    lines += ["", f"serving {sim['run_id']} with one straggling replica:",
              f"{'mode':<13}{'p50 ms':>8}{'p99.9 ms':>10}{'accuracy':>10}{'decoded':>9}"]
    for mode in sim["modes"]:
        lines.append(f"{mode['mode']:<13}{mode['p50_ms'] or float('nan'):>8.1f}{mode['p999_ms'] or float('nan'):>10.1f}"
                     f"{mode['accuracy'] or 0:>10.4f}{mode['decoded']:>9d}")
    steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["step_seconds"].items())
    lines += ["", f"report      {summary['report']}", f"wall        {summary['wall_seconds']:.0f} s ({steps})"]
    return "\n".join(lines)


def add_parser(commands) -> argparse.ArgumentParser:
    quick = commands.add_parser("quickstart", help="offline, one machine: quick Tune grid -> simulation -> report",
                                description="Train the quick grid through Ray Tune, serve its best run with one straggling "
                                            "replica in every mode, and write the report; a few minutes on 2 cores.")
    add_option_flags(quick, QuickstartOptions)
    quick.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    quick.set_defaults(func=run)
    return quick


def run(args: argparse.Namespace) -> int:
    from parity_ray.actors.simulation import SimulationOptions, run_simulation

    options = options_from_args(QuickstartOptions, args)
    summary = run_quickstart(options, simulate=lambda log, **kw: run_simulation(SimulationOptions(**kw), log=log))
    print(format_summary(summary))
    if args.json:
        print_json(summary)
    return 0
