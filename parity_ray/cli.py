"""``parity-ray`` command line: train, quickstart, tune, simulate, sweep, serve, report, list.

The CLI is the one part of ``parity_ray`` that reaches into the Serve layer (``actors``).

Bad input ends in one line ``parity-ray: error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Dict, Optional, Sequence

from .config import SMOKE_OVERRIDES, TrainConfig
from .errors import UsageError
from .utils import LOG_LEVELS, configure_logging

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage text is under --help).

    Abbreviated flags are refused: ``--epoch`` silently meaning ``--epochs`` hides typos.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- config flags


def _flag_type(field: dataclasses.Field):
    text = str(field.type)
    inner = text[len("Optional[") : -1] if text.startswith("Optional[") else text
    return {"int": int, "float": float, "str": str, "SpecType": str, "bool": bool}[inner]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``--batch-size`` for ``batch_size``); file values stay unless given."""
    from .config import field_docs

    group = parser.add_argument_group("run configuration (override --config)")
    docs = field_docs()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = _flag_type(field)
        # The field's comment in config.py is its documentation; argparse's % needs escaping.
        text = f"{docs.get(field.name, '')} (default: {field.default!r})".strip().replace("%", "%%")
        if kind is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=text)
        else:
            group.add_argument(flag, dest=field.name, type=kind, default=argparse.SUPPRESS, metavar=field.name.upper(),
                               help=text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """defaults < ``--recipe`` < ``--config`` file < flags."""
    from .recipes import recipe_overrides

    recipe = getattr(args, "recipe", None)
    base = TrainConfig.from_dict(recipe_overrides(recipe)) if recipe else TrainConfig()
    config = TrainConfig.from_file(args.config, base) if args.config else base
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig.from_dict(overrides, base=config)


# --------------------------------------------------------------------------- output


def format_summary(summary: Dict[str, Any]) -> str:
    rows = [
        ("run", summary["run_dir"]),
        ("dataset / model", f"{summary['dataset']} / {summary['model']}"),
        ("code", f"k={summary['k']} r={summary['r']} {summary['encoder']} -> {summary['decoder']} ({summary['loss']}; "
                 f"{summary.get('code_family', '?')}, {'systematic' if summary.get('systematic', True) else 'non-systematic'}, "
                 f"worker {'F' if summary.get('worker') == 'base' else 'trained'})"),
        ("epochs (best)", f"{summary['epochs']} ({summary['best_epoch']})"),
        ("available accuracy", _pct(summary["available_accuracy"])),
        *([("no failure (all k+r back)", f"all-k {_pct(summary['all_accuracy_e0'])} through the code"
                                         + ("" if summary.get("systematic", True) else " (every answer decoded)"))]
          if summary.get("all_accuracy_e0") is not None else []),
        ("degraded-mode accuracy", _pct(summary["degraded_accuracy"])),
        ("reconstruction accuracy", _pct(summary["reconstruction_accuracy"])),
        *([("mean IoU (rebuilt vs true / base)", f"{_pct(summary['degraded_mean_iou'])} / {_pct(summary['reconstruction_mean_iou'])}")]
          if "degraded_mean_iou" in summary else []),
        *[(f"e={e} unavailable", f"degraded {_pct(summary.get(f'degraded_accuracy_e{e}'))}, all-k {_pct(summary.get(f'all_accuracy_e{e}'))}"
                                 + _below_base_rate(summary.get(f"degraded_accuracy_e{e}"), summary.get("majority_accuracy")))
          for e in range(1, int(summary["r"]) + 1)],
        *([("byzantine workers", f"accuracy {_pct(summary['byzantine_accuracy'])} located, "
                                 f"{_pct(summary['byzantine_accuracy_unlocated'])} not; {_pct(summary['byzantine_located'])} found")]
          if "byzantine_accuracy" in summary else []),
        ("startup / training", f"{summary['startup_seconds']:.1f} s / {summary['train_seconds']:.1f} s"),
        ("base model", f"{summary['base_model_id']} ({summary['base_model_source']})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _below_base_rate(rebuilt, majority) -> str:
    """A warning when rebuilt answers are worse than always answering the most frequent class."""
    if rebuilt is None or majority is None or rebuilt >= majority:
        return ""
    return f"  (WARNING: rebuilt answers below the base rate {_pct(majority)} of always answering the most frequent class)"


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def emit(summary: Dict[str, Any], as_json: bool) -> None:
    print(format_summary(summary))
    if as_json:
        print(json.dumps(summary, sort_keys=True))
    sys.stdout.flush()


# --------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from .trainer import train

    config = config_from_args(args)
    if args.smoke_test:
        config = TrainConfig.from_dict(SMOKE_OVERRIDES, base=config)
    result = train(config, progress=not args.no_progress)
    emit(result.summary, args.json)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from parity_ray.actors.simulation import SimulationOptions, run_simulation

    from .quickstart import QuickstartOptions, format_summary, run_quickstart

    options = QuickstartOptions(storage=args.storage, name=args.name, data_root=args.data_root,
                                smoke_test=args.smoke_test, progress=not args.no_progress)
    summary = run_quickstart(options, simulate=lambda log, **kw: run_simulation(SimulationOptions(**kw), log=log))
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .tune.experiment import TuneOptions, run_experiment

    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if args.max_failures < 0 or args.checkpoint_every < 1:
        raise UsageError("--max-failures must be >= 0 and --checkpoint-every >= 1")
    options = TuneOptions(
        space=args.space,
        name=args.name,
        storage=args.storage,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent_trials=args.max_concurrent_trials,
        max_failures=args.max_failures,
        checkpoint_every=args.checkpoint_every,
        overrides=args.set,
        resume=args.resume,
        smoke_test=args.smoke_test,
        resource_check=not args.no_resource_check,
        progress=not args.no_progress,
        callbacks=args.callback,
    )
    summary = run_experiment(options)
    width = 14
    print(f"{'experiment':<{width}}{summary['experiment']}  ({summary['uri']})")
    print(f"{'trials':<{width}}{summary['trials']}  " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(summary["status"].items())))
    if summary["best_run"]:
        val = summary.get("best_val_degraded_accuracy")
        print(f"{'best run':<{width}}{summary['best_run']}  (chosen on validation"
              f"{'' if val is None else f' {val:.4f}'}); test degraded-mode accuracy {summary['best_degraded_accuracy']:.4f}")
    print(f"{'tables':<{width}}{summary['tables']}")
    print(f"{'wall':<{width}}{summary['wall_seconds']:.1f} s")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0 if not summary["status"].get("ERROR") else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from parity_ray.actors.modes import list_modes
    from parity_ray.actors.simulation import SimulationOptions, format_mode, run_simulation

    modes = "coded,replication" if args.smoke_test else args.mode
    if modes == "all":
        modes = ",".join(list_modes())
    if args.smoke_test:
        args.queries, args.warmup = 8, 2
    options = SimulationOptions(
        experiment=args.experiment,
        run=args.run,
        dataset=args.dataset,
        model=args.model,
        k=args.k,
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        straggler=args.straggler,
        rate=args.rate,
        clients=args.clients,
        queries=args.queries,
        warmup=args.warmup,
        interleave_s=args.interleave_s,
        deadline_ms=args.deadline_ms,
        hedge_deadline_ms=args.hedge_deadline_ms,
        group_wait_ms=args.group_wait_ms,
        timeout_s=args.timeout_s,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
        data_root=args.data_root,
        seed=args.seed,
        address=args.address,
        resource_check=not args.no_resource_check,
        progress=not args.no_progress,
    )
    summary = run_simulation(options)

    print(f"simulation {summary['simulation_id']}  run {summary['run_id']}")
    for mode in summary["modes"]:
        print(format_mode(mode))
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
    return 0


def _list(text: str, kind, flag: str):
    try:
        return [kind(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated numbers, got '{text}'") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from parity_ray.actors.modes import list_modes
    from parity_ray.actors.sweep import SweepOptions, format_row, run_sweep

    modes = args.mode if args.mode != "all" else ",".join(list_modes())
    queries, warmup = (2000, 50) if args.smoke_test else (args.queries, args.warmup)
    options = SweepOptions(
        experiment=args.experiment, run=None if args.run == "none" else args.run,
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        rates=_list(args.rate, float, "--rate"), clients=args.clients,
        ks=_list(args.k, int, "--k") if args.k else None, rs=_list(args.r, int, "--r") if args.r else None,
        stragglers=[s.strip() for s in args.straggler.split(";") if s.strip()] or ["none"],
        cluster_sizes=_list(args.cluster_size, int, "--cluster-size") if args.cluster_size else None,
        queries=queries, warmup=warmup, service=args.service, calibrate=args.calibrate,
        busy_fraction=args.busy_fraction, deadline_ms=args.deadline_ms, hedge_deadline_ms=args.hedge_deadline_ms,
        group_wait_ms=args.group_wait_ms, timeout_s=args.timeout_s, max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms, restart_s=args.restart_s, target_p999_ms=args.target_p999_ms,
        seed=args.seed, workers=0 if args.smoke_test else args.workers, address=args.address,
        progress=not args.no_progress,
    )
    summary = run_sweep(options)
    print(f"sweep {summary['sweep_id']}  {summary['cells']} cells, {summary['queries']} simulated queries "
          f"in {summary['seconds']:.1f} s  ->  {summary['table']}")
    for row in summary["rows"]:
        print(format_row(row))
    if args.json:
        rows = [{k: v for k, v in row.items() if k not in ("settings", "versions", "service")} for row in summary["rows"]]
        print(json.dumps({**summary, "rows": rows}, sort_keys=True, default=str))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from parity_ray.actors.serve import ServeOptions, run_serve

    options = ServeOptions(
        experiment=args.experiment, run=args.run, dataset=args.dataset, model=args.model, k=args.k,
        mode=args.mode, host=args.host, port=args.port, route_prefix=args.route_prefix,
        deadline_ms=args.deadline_ms, hedge_deadline_ms=args.hedge_deadline_ms, group_wait_ms=args.group_wait_ms,
        timeout_s=args.timeout_s, max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms,
        cpus_per_replica=args.cpus_per_replica, gpus_per_replica=args.gpus_per_replica, straggler=args.straggler,
        seed=args.seed, max_instances=args.max_instances, address=args.address, write_config=args.write_config,
        trust_code=args.trust_code,
    )
    return run_serve(options)


def cmd_report(args: argparse.Namespace) -> int:
    from parity_ray.analysis.report import build_report, format_summary

    path = args.path[0] if len(args.path) == 1 else args.path
    summary = build_report(path, out=args.out, max_thumbnails=args.max_thumbnails, data_root=args.data_root)
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run, format_summary, from_experiment, from_run_dir

    if bool(args.run_dir) == bool(args.experiment):
        raise UsageError("export needs a run folder (RUN) or --experiment E [--run best|ID], not both")
    if args.run_dir and args.run is not None:
        raise UsageError("--run picks a run of --experiment; with a run folder leave it out")
    source = from_run_dir(args.run_dir) if args.run_dir else from_experiment(args.experiment, args.run or "best")
    summary = export_run(source, args.out)
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
    return 0


def registries() -> Dict[str, list]:
    """Every plugin registry's names, by kind: what configs, search spaces and flags accept."""
    from parity_ray.actors.modes import list_modes
    from parity_ray.actors.stragglers import list_stragglers

    from .augment import list_augmentations
    from .coders import list_decoders, list_encoders
    from .data import list_datasets
    from .losses import list_losses
    from .models import list_models
    from .recipes import list_recipes
    from .tune.tuning import list_callbacks, list_schedulers, list_search_algs

    kinds = {
        "datasets": list_datasets(),
        "models": list_models(),
        "encoders": list_encoders(),
        "decoders": list_decoders(),
        "losses": list_losses(),
        "augmentations": list_augmentations(),
        "stragglers": list_stragglers(),
        "modes": list_modes(),
        "schedulers": list_schedulers(),
        "search_algs": list_search_algs(),
        "callbacks": list_callbacks(),
        "recipes": list_recipes(),
    }
    return kinds


def cmd_list(args: argparse.Namespace) -> int:
    kinds = registries()
    if args.json:
        print(json.dumps(kinds, sort_keys=True))
    else:
        width = max(len(kind) for kind in kinds)
        for kind, names in kinds.items():
            print(f"{kind:<{width}}  {', '.join(names)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="parity-ray", description="Parity models: train, tune, simulate, report.")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                        help="progress lines on stderr: debug, info (default), warning, error")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = commands.add_parser("train", help="train one parity model run", description="Train one parity-model run.")
    train.add_argument("--config", help="JSON or YAML file of config keys (flags override it)")
    train.add_argument("--recipe", help="a training recipe (published, fast; see 'parity-ray list') under --config and flags")
    _common(train)
    add_config_flags(train)
    train.set_defaults(func=cmd_train)

    quick = commands.add_parser("quickstart", help="offline, one machine: quick Tune grid -> simulation -> report",
                                description="Train the quick grid through Ray Tune, serve its best run with one straggling "
                                            "replica in every mode, and write the report; a few minutes on 2 cores.")
    quick.add_argument("--storage", default="./results", help="parent folder of the experiment (default ./results)")
    quick.add_argument("--name", help="experiment name (default: the first free of q1, q2, ...)")
    quick.add_argument("--data-root", help="folder holding MNIST (else $PARITY_RAY_DATA); without it: digits only")
    _common(quick)
    quick.set_defaults(func=cmd_quickstart)

    tune = commands.add_parser("tune", help="run a search space through Ray Tune into Parquet tables",
                               description="Run a search space through Ray Tune; results land in <storage>/<name>/tables/.")
    tune.add_argument("space", help="a search_spaces name (quick, paper, concat) or a .py file")
    tune.add_argument("--name", required=True, help="experiment name (folder under --storage)")
    tune.add_argument("--storage", default="./results", help="local/NFS path or s3://bucket/prefix (default ./results)")
    tune.add_argument("--address", help="Ray cluster address (e.g. auto); default: start a local Ray")
    tune.add_argument("--cpus-per-trial", type=float, default=1.0)
    tune.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU, e.g. 0.25")
    tune.add_argument("--max-concurrent-trials", type=int)
    tune.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial from its checkpoint")
    tune.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key for every trial; a list makes it a grid axis (--set k=[2,3]); "
                           "scheduler=<name|none>, scheduler.<setting>=V, search_alg=..., search_alg.<setting>=V "
                           "change the space's Tune scheduler and search algorithm")
    tune.add_argument("--callback", action="append", default=[], metavar="SPEC",
                      help="add a Tune callback (repeatable): mlflow, wandb, tensorboard, csv, package.module.Class, or a "
                           "JSON class-spec such as '{\"cls\": \"mlflow\", \"tracking_uri\": \"file:./mlruns\"}'")
    tune.add_argument("--resume", action="store_true", help="continue an interrupted experiment of the same space")
    tune.add_argument("--no-resource-check", action="store_true", help="allow resources no current node has (autoscaling)")
    _common(tune)
    tune.set_defaults(func=cmd_tune)

    sim = commands.add_parser("simulate", help="serve a trained run on Ray Serve with stragglers; measure latency and accuracy",
                              description="Degraded-mode serving simulation; rows land in <experiment>/tables/.")
    sim.add_argument("--experiment", required=True, help="experiment folder or s3:// URI (from parity-ray tune)")
    sim.add_argument("--run", default="best", help="a run id, or best (filtered by --dataset/--model/--k)")
    sim.add_argument("--dataset")
    sim.add_argument("--model")
    sim.add_argument("--k", type=int)
    sim.add_argument("--mode", default="coded,replication,hedged,none",
                     help="comma-separated serving modes (coded, coded-hedged, replication, hedged, none), or all")
    sim.add_argument("--rate", type=float, default=50.0, help="open-loop Poisson queries/s")
    sim.add_argument("--clients", type=int, help="closed loop with N clients instead of --rate")
    sim.add_argument("--queries", type=int, default=1000)
    sim.add_argument("--warmup", type=int, default=100)
    sim.add_argument("--interleave-s", type=float,
                     help="deploy every mode at once and send each its load in turns of this many seconds "
                          "(background load then falls on every mode alike); default: one mode after another")
    _serving_flags(sim, straggler=True)
    sim.add_argument("--data-root")
    sim.add_argument("--address", help="Ray cluster address (e.g. auto); default: start a local Ray")
    sim.add_argument("--no-resource-check", action="store_true", help="allow resources no current node has (autoscaling)")
    _common(sim)
    sim.set_defaults(func=cmd_simulate)

    sweep = commands.add_parser(
        "sweep", help="discrete-event simulation of the serving modes at cluster scale, calibrated from a simulate run",
        description="A grid of simulated serving runs (rates x k x r x stragglers x modes x cluster sizes), the same "
                    "modes, routing and straggler models as the Serve app; rows land in <experiment>/tables/sweeps/.")
    sweep.add_argument("--experiment", required=True, help="experiment folder or s3:// URI (rows go to its tables/sweeps/)")
    sweep.add_argument("--run", default="best", help="the served run whose per-instance results give accuracies, or none")
    sweep.add_argument("--mode", default=",".join(("coded", "coded-hedged", "replication", "hedged", "none")),
                       help="comma-separated serving modes, or all")
    sweep.add_argument("--rate", default="50", help="open-loop Poisson queries/s over the whole cluster; a comma list is a grid axis")
    sweep.add_argument("--clients", type=int, help="closed loop with N clients (over the whole cluster) instead of --rate")
    sweep.add_argument("--k", help="k values (comma list); default: the run's")
    sweep.add_argument("--r", help="r values (comma list); default: the run's")
    sweep.add_argument("--straggler", default="none",
                       help="straggler specs as in simulate; several (a grid axis) separated by ';'")
    sweep.add_argument("--cluster-size", help="replicas in the cluster (comma list); default: one app of each mode")
    sweep.add_argument("--queries", type=int, default=10000, help="measured queries per cell x mode")
    sweep.add_argument("--warmup", type=int, default=100)
    sweep.add_argument("--service", help="service times by hand, e.g. lognormal:median_ms=3,sigma=0.3[,per_item_ms=0.1,busy_fraction=0.5]")
    sweep.add_argument("--calibrate", metavar="EXPERIMENT[:SIMULATION_ID]",
                       help="fit service times from a parity-ray simulate run (default: the experiment's latest)")
    sweep.add_argument("--busy-fraction", type=float, help="share of a batch's in-flight time its replica is occupied")
    sweep.add_argument("--restart-s", type=float, default=3.0, help="a crashed replica is back this long after")
    sweep.add_argument("--target-p999-ms", type=float, help="the report's p99.9 target (cheapest mode meeting it per rate)")
    sweep.add_argument("--workers", type=int, help="Ray tasks at once (default: the cluster's CPUs); 0: in this process")
    sweep.add_argument("--address", help="Ray cluster address (e.g. auto); default: start a local Ray")
    _serving_flags(sweep, straggler=False, placement=False)
    _common(sweep)
    sweep.set_defaults(func=cmd_sweep)

    srv = commands.add_parser("serve", help="serve a trained run over HTTP on Ray Serve (foreground; Ctrl-C stops)",
                              description="Serve a run's app: POST / {\"instances\": [...]} -> {\"predictions\": [...]}. "
                                          "With --write-config, write the Serve config file that runs the same app "
                                          "(serve run FILE / serve deploy FILE) instead.")
    srv.add_argument("--experiment", required=True, help="experiment folder or s3:// URI (from parity-ray tune)")
    srv.add_argument("--run", default="best", help="a run id, or best (filtered by --dataset/--model/--k)")
    srv.add_argument("--dataset")
    srv.add_argument("--model")
    srv.add_argument("--k", type=int)
    srv.add_argument("--mode", default="coded", help="serving mode: coded, coded-hedged, replication, hedged, none")
    srv.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 for every interface)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--route-prefix", default="/")
    srv.add_argument("--straggler", default="none", help="straggler models for a demo, as in simulate")
    _serving_flags(srv, straggler=False)
    srv.add_argument("--max-instances", type=int, default=64, help="instances per HTTP request")
    srv.add_argument("--address", help="Ray cluster address (e.g. auto); default: start a local Ray")
    srv.add_argument("--write-config", metavar="FILE", help="write a Serve config file for this app and exit")
    srv.set_defaults(func=cmd_serve)

    report = commands.add_parser("report", help="write a static HTML report of an experiment, or of several side by side "
                                                 "(tables, charts, instance explorer, run vs run)",
                                 description="Write <PATH>/report/index.html with its charts, instance explorer and data "
                                             "files beside it; opens from disk, no server or network needed. Given "
                                             "several experiments (parity-ray report A B --out DIR), one report of them "
                                             "all: runs are named with their experiment and run vs run compares runs "
                                             "of different experiments.")
    report.add_argument("path", nargs="+", metavar="PATH",
                        help="experiment folder or s3:// URI (from parity-ray tune); several for one report of them all")
    report.add_argument("--out", help="write the report to this folder (or s3:// prefix) instead of <PATH>/report/ "
                                      "(required with several experiments)")
    report.add_argument("--max-thumbnails", type=int, default=200, metavar="N",
                        help="instance explorer: show at most N differing decodes per run with images (default 200; 0: none)")
    report.add_argument("--data-root", help="where the test images are, if not where the runs read them "
                                            "(without them the explorer lists decodes without images)")
    report.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    report.set_defaults(func=cmd_report)

    export = commands.add_parser("export", help="write a run's parity models (and learned coders) as plain state_dicts",
                                 description="Write each trained part of a run as <part>.pt (a state_dict, tensors only) "
                                             "and <part>.json (how to build it: registry name, kwargs, input shape, k, r, "
                                             "versions) into a new folder.")
    export.add_argument("run_dir", nargs="?", metavar="RUN", help="a run folder (parity-ray train's, or a trial's checkpoint folder)")
    export.add_argument("--experiment", help="instead of RUN: an experiment folder or s3:// URI")
    export.add_argument("--run", help="with --experiment: a run id, or best (default)")
    export.add_argument("--out", required=True, help="the new folder to write (must not exist, or be empty)")
    export.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    export.set_defaults(func=cmd_export)

    lister = commands.add_parser("list", help="list every registry: datasets, models, coders, losses, straggler models, "
                                            "augmentations, serving modes, recipes, Tune schedulers, search algorithms, callbacks")
    lister.add_argument("--json", action="store_true", help="print one JSON object")
    lister.set_defaults(func=cmd_list)
    for sub in commands.choices.values():  # also after the command: parity-ray train ... --log-level warning
        sub.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for name in READS_EXPERIMENTS:
        commands.choices[name].add_argument(
            "--trust-code", action="store_true",
            help="import the class-specs (user code) that the experiment's stored configs name; without it such a "
                 "run is refused (see docs/security.md). Only for experiments written by people you trust as you "
                 "trust your own code")
    return parser


def _serving_flags(parser: argparse.ArgumentParser, straggler: bool = True, placement: bool = True) -> None:
    """The app's flags, shared by simulate and serve."""
    if straggler:
        parser.add_argument("--straggler", default="none", help="e.g. slow:replica=0,p=0.3,delay_ms=100 (join models with +)")
    parser.add_argument("--deadline-ms", type=float, default=50.0, help="coded: decode after this; hedged: duplicate after this")
    parser.add_argument("--hedge-deadline-ms", type=float, help="coded-hedged: duplicate after this (default 2 x deadline)")
    parser.add_argument("--group-wait-ms", type=float,
                        help="coded: seal a group this long after its first query (default: half the deadline)")
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    if placement:
        parser.add_argument("--cpus-per-replica", type=float, default=0.25)
        parser.add_argument("--gpus-per-replica", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    parser.add_argument("--smoke-test", action="store_true", help="one tiny epoch on CPU, to check the set-up")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _version() -> str:
    from . import __version__

    return f"parity-ray {__version__}"


READS_EXPERIMENTS = ("simulate", "sweep", "serve", "report", "export")  # the commands that take --trust-code


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .registry import trusting_stored_code

    try:
        args = build_parser().parse_args(argv)
        configure_logging(args.log_level)
        with trusting_stored_code(getattr(args, "trust_code", False)):
            return args.func(args)
    except UsageError as exc:
        print(f"parity-ray: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("parity-ray: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
