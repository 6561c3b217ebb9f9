"""``parity-ray tune``: a search space through Ray Tune, with nothing lost to interruptions.

Stages of one experiment ``<storage>/<name>/``:

1. expand the space into validated cells (unregistered datasets/models reported, not dropped);
2. train (or import) every distinct base model once, as Ray tasks, into ``base_models/<id>/``;
3. run the parity trials through Tune: each reports every epoch with a checkpoint of its
   run folder, restores from ``tune.get_checkpoint()``, and is retried per ``FailureConfig``;
4. write ``tables/{runs,epochs,predictions,base_models}.parquet`` from every trial's checkpoint.

``--resume`` restores the Tune experiment: finished trials are kept, unfinished ones continue
from their last checkpoint, and the tables are rebuilt with exactly one row per trial.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import ray
from ray import tune

from .. import storage
from ..config import TrainConfig
from ..errors import UsageError
from ..metrics import TUNE_METRIC
from .tuning import SCHEDULERS, SEARCH_ALGS, build, build_callbacks, trial_run_id
from ..results import best_run, empty_predictions, write_tables
from ..run_tables import BASE_MODEL_COLUMNS, RunFiles, base_model_row, read_run_files, run_row
from ..run_tables import epoch_rows as run_epoch_rows
from .options import TuneOptions
from .spaces import Cell, ExpandedSpace, expand
from ..logs import configure_logging, stderr_log
from ..machine import cache_dir
from ..provenance import SCHEMA_VERSION, library_versions, stable_hash
from ..ray_session import ray_running

Log = Callable[[str], None]



# --------------------------------------------------------------------------- driver


def run_experiment(options: TuneOptions, log: Log = stderr_log) -> Dict[str, Any]:
    """Run (or resume) an experiment; return its summary. Usage errors leave nothing written."""
    started = time.perf_counter()
    options.check()
    _check_name(options.name)
    options = resolve_paths_on_the_driver(options)
    space = expand(options.space, options.overrides, options.smoke_test)
    _check_experiment_record(options, space)
    if not space.runnable:
        raise UsageError(f"search space '{options.space}' has no cell that can run here: {space.cells[0].unavailable}")

    with ray_running(options.address):  # the Ray this process is connected to, or one of its own
        check_resources(options)
        check_shared_storage(options.storage)
        if not options.resume:
            _write_experiment_record(options, space)
        for cell in space.cells:
            if cell.unavailable:
                log(f"unavailable: {cell.run_id}: {cell.unavailable}")
        try:
            bases, base_errors = prepare_base_models(space.runnable, options, log)
            results = _fit(space, options, bases, base_errors, log)
        except UsageError:
            if not options.resume:  # bad input found by a trial: the new experiment goes, the same name stays free
                _remove_experiment(options.uri)
            raise
        tables = build_tables(options, space, results, bases, base_errors)
        write_tables(options.uri, tables)
    return summarize(options, tables, time.perf_counter() - started)


PATH_KEYS = ("data_root", "base_weights", "base_cache")  # config keys that name a local file or folder
DATA_ENV = "PARITY_RAY_DATA"


def _absolute(value: str) -> str:
    text = str(value)
    if storage.is_remote(text) or not text or text.startswith("["):  # a URI, or a list (a grid axis): as given
        return text
    return str(Path(text).expanduser().resolve())


def resolve_paths_on_the_driver(options: TuneOptions) -> TuneOptions:
    """Trials run in Ray's own working folder, so a relative path the user gave (``--data-root``, ``--set
    data_root=..``, ``base_weights``, ``base_cache``, ``$PARITY_RAY_DATA``) is made absolute here, where it
    was meant, before any trial starts (the README's ``--set data_root=../shared/data`` works as written)."""
    from ..data import data_roots

    def checked_root(value: str) -> str:
        # an explicit data root that is not a folder is refused here, in one line, before anything is
        # written or any Ray task starts (not as every trial's error)
        if value and not storage.is_remote(value) and not value.startswith("["):
            data_roots(value)
        return _absolute(value)

    if options.data_root and any(item.partition("=")[0].strip() == "data_root" for item in options.overrides):
        raise UsageError("give the data root once: --data-root or --set data_root=..., not both")
    overrides = []
    for item in options.overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "data_root":
            overrides.append(f"{key}={checked_root(value.strip())}")
        else:
            overrides.append(f"{key}={_absolute(value)}" if sep and key.strip() in PATH_KEYS else item)
    if options.data_root:
        overrides.append(f"data_root={checked_root(options.data_root)}")
    env = os.environ.get(DATA_ENV)
    if env and not storage.is_remote(env) and not Path(env).is_absolute():
        os.environ[DATA_ENV] = _absolute(env)  # a local Ray's workers inherit the driver's environment
    return replace(options, overrides=overrides, data_root=None)


def _remove_experiment(uri: str) -> None:
    fs, path = storage.resolve(uri)
    try:
        fs.delete_dir(path)
    except (FileNotFoundError, OSError):
        pass


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"experiment name '{name}' must be a plain folder name (no '/', not hidden)")


def _check_experiment_record(options: TuneOptions, space: ExpandedSpace) -> None:
    record_uri = storage.join(options.uri, "experiment.json")
    present = storage.exists(record_uri)
    if options.resume:
        if not present:
            raise UsageError(f"--resume: no experiment '{options.name}' at {options.uri}; run without --resume to start it")
        record = json.loads(storage.read_bytes(record_uri))
        if record["fingerprint"] != space.fingerprint():
            raise UsageError(
                f"--resume: experiment '{options.name}' was started from space '{record['space']}' with "
                f"{record['overrides'] or 'no'} overrides, not this one; resume with the same space and --set flags"
            )
    elif present:
        raise UsageError(f"experiment '{options.name}' already exists at {options.uri}; pass --resume or choose another --name")


def _write_experiment_record(options: TuneOptions, space: ExpandedSpace) -> None:
    record = {
        "name": options.name,
        "space": space.name,
        "space_file": space.source,
        "overrides": space.overrides,
        "fingerprint": space.fingerprint(),
        "cells": [{"run_id": c.run_id, "config": c.config, "unavailable": c.unavailable} for c in space.cells],
        "options": {k: v for k, v in asdict(options).items() if k != "progress"},
        "versions": library_versions(),
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    storage.write_bytes(storage.join(options.uri, "experiment.json"), json.dumps(record, indent=2, default=str).encode())


def check_resources(options: TuneOptions) -> None:
    """Refuse per-trial resources that no alive node has: such trials would stay PENDING forever."""
    if not options.resource_check:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    best_cpu = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
    best_gpu = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
    for kind, asked, best in (("CPU", options.cpus_per_trial, best_cpu), ("GPU", options.gpus_per_trial, best_gpu)):
        if asked > best:
            raise UsageError(
                f"no node can ever run a trial needing {asked:g} {kind} (the largest node has {best:g}); "
                f"lower --{kind.lower()}s-per-trial, add such nodes, or pass --no-resource-check on an autoscaling cluster"
            )


def check_shared_storage(uri: str) -> None:
    """A multi-host cluster needs storage every node sees (S3 or an NFS-like mount)."""
    problem = storage_problem({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}, uri)
    if problem:
        raise UsageError(problem)


def storage_problem(hosts: set, uri: str) -> Optional[str]:
    if len(hosts) > 1 and not storage.is_shared(uri):
        return (
            f"storage '{uri}' is node-local but the cluster spans {len(hosts)} hosts; "
            "use s3://bucket/prefix or a path on a shared NFS mount"
        )
    return None


# --------------------------------------------------------------------------- base models


def _base_key(config: Dict[str, Any]) -> str:
    keys = ("dataset", "model", "seed", "val_size", "input_norm", "base_epochs", "base_weights", "data_root")
    return stable_hash({k: config.get(k) for k in keys}, 16)


def prepare_base_models(cells: List[Cell], options: TuneOptions, log: Log):
    """Train or import each distinct base model once, in parallel Ray tasks; store them with the experiment."""
    wanted: Dict[str, Dict[str, Any]] = {}
    for cell in cells:
        wanted.setdefault(_base_key(cell.config), cell.config)
    task = ray.remote(_prepare_base_task).options(
        num_cpus=options.cpus_per_trial, num_gpus=options.gpus_per_trial, max_retries=options.max_failures
    )
    refs = {key: task.remote(config, options.uri, options.cpus_per_trial) for key, config in wanted.items()}
    log(f"base models: preparing {len(refs)} ...")
    bases, errors = {}, {}
    pending = {ref: key for key, ref in refs.items()}
    started = time.monotonic()
    try:
        while pending:
            # Short waits, not one blocking get: Ctrl-C reaches this thread within a second.
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                key = pending.pop(ref)
                try:
                    bases[key] = ray.get(ref)
                    log(f"base models: {len(bases) + len(errors)}/{len(refs)} ready ({bases[key].get('id', key)}, "
                        f"{time.monotonic() - started:.0f} s)")
                except Exception as exc:  # recorded per cell; other cells go on
                    cause = getattr(exc, "cause", None) or exc
                    errors[key] = f"base model stage failed: {type(cause).__name__}: {str(cause).splitlines()[0][:300]}"
                    log(errors[key])
    except KeyboardInterrupt:
        for ref in pending:  # stored base models stay: a resumed run reuses them
            ray.cancel(ref, force=True)
        raise
    return bases, errors


def _prepare_base_task(cell: Dict[str, Any], experiment_uri: str, cpus: float = 1.0) -> Dict[str, Any]:
    """Ray task: find the base model in the experiment's storage, or train/import it and store it there."""
    import torch

    torch.set_num_threads(max(1, int(cpus)))  # concurrent tasks must not oversubscribe the node's cores
    from ..base import base_model_id, prepare_base_model
    from ..data import load_data
    from ..machine import resolve_device

    config = TrainConfig.from_dict(cell).resolved()
    if config.base_weights and storage.is_remote(config.base_weights):
        local = Path(tempfile.mkdtemp(prefix="parity-weights-")) / "model.pt"
        local.write_bytes(storage.read_bytes(config.base_weights))
        config.base_weights = str(local)
    device = resolve_device(config.device)
    data = load_data(config.dataset, data_root=config.data_root, download=config.download, val_size=config.val_size,
                     split_seed=config.seed, input_norm=config.input_norm, device=device).head(config.max_examples)
    model_id = base_model_id(config, data)
    target = storage.join(experiment_uri, "base_models", model_id)
    local_root = _local_base_cache(experiment_uri)
    config.base_cache = str(local_root)
    if storage.exists(storage.join(target, "meta.json")) and not (local_root / model_id).exists():
        storage.download_dir(target, str(local_root / model_id))
    torch.manual_seed(config.seed)
    _model, info = prepare_base_model(config, data, device, log=lambda _m: None)
    if not storage.exists(storage.join(target, "meta.json")):
        if config.base_weights:  # an imported file: store it beside the trained ones
            storage.write_bytes(storage.join(target, "model.pt"), Path(config.base_weights).read_bytes())
            storage.write_bytes(storage.join(target, "meta.json"), json.dumps({"info": info.as_dict()}).encode())
        else:
            # model.pt first: meta.json is the marker that the folder is complete
            storage.write_bytes(storage.join(target, "model.pt"), (local_root / model_id / "model.pt").read_bytes())
            storage.write_bytes(storage.join(target, "meta.json"), (local_root / model_id / "meta.json").read_bytes())
    return {**info.as_dict(), "weights_uri": storage.join(target, "model.pt")}


def _local_base_cache(experiment_uri: str) -> Path:
    return cache_dir("experiments", stable_hash(experiment_uri, 12), "base_models")


# --------------------------------------------------------------------------- trials


def parity_trainable(params: Dict[str, Any], experiment: Dict[str, Any]) -> None:
    """One Tune trial: a parity-model run that reports every epoch and resumes from its checkpoint."""
    from ..trainer import EpochReport, train

    trial = params["trial"]
    sampled = {k: params[k] for k in experiment["sampler_keys"]}
    run_id = trial_run_id(params)
    # The trial's working folder lives in Ray's session dir, not loose in /tmp, if the worker is killed.
    work = Path(tempfile.mkdtemp(prefix="parity-trial-", dir=os.getcwd()))
    run_dir = work / run_id
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(run_dir))

    base = experiment["bases"][trial["base_key"]]
    overrides = {"out": str(work), "name": run_id, "num_threads": max(1, int(experiment["cpus_per_trial"]))}
    if trial["config"].get("base_weights"):
        local = work / "base-weights.pt"
        local.write_bytes(storage.read_bytes(base["weights_uri"]))
        overrides["base_weights"] = str(local)
    else:
        local_root = _local_base_cache(experiment["uri"])
        if not (local_root / base["id"]).exists():
            storage.download_dir(storage.join(experiment["uri"], "base_models", base["id"]), str(local_root / base["id"]))
        overrides["base_cache"] = str(local_root)
    config = TrainConfig.from_dict({**trial["config"], **sampled, **overrides})

    context = ray.get_runtime_context()
    where = {"run_id": run_id, "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
             "hostname": socket.gethostname()}
    every = int(experiment["checkpoint_every"])

    def on_epoch(report: EpochReport) -> None:
        # Tune ranks and stops trials by TUNE_METRIC, a validation metric; test metrics travel along
        # (test_*) to be recorded, never to be optimised on.
        metrics = {**where, "epoch": report.epoch, "epochs": config.epochs, "train_seconds": report.train_seconds,
                   TUNE_METRIC: report.metrics["val"]["overall_top1"]}
        for split, values in report.metrics.items():
            metrics.update({f"{split}_{name}": value for name, value in values.items()})
        if report.epoch % every == 0 or report.epoch == config.epochs:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(run_dir)))
        else:
            tune.report(metrics)

    # The trial's own progress lines go to the worker's stderr: Ray's session logs on one machine,
    # and the driver (so `ray job logs`) on a cluster, where ray_running streams worker logs.
    configure_logging("info")
    log = lambda message: stderr_log(f"{run_id}: {message}")  # noqa: E731
    try:
        # A scheduler may stop the trial after any report: keep the best epoch's predictions current.
        train(config, progress=False, log=log, on_epoch=on_epoch,
              predictions_on_improvement=experiment["early_stopping"])
    except UsageError as exc:
        # Bad input, not bad luck: a retry would fail the same way. Reported (not raised) so that Tune
        # neither retries it nor prints its traceback; StopAtUsageError ends the grid on it.
        tune.report({**where, USAGE_ERROR: str(exc), experiment["metric"]: float("-inf")})
    finally:
        shutil.rmtree(work, ignore_errors=True)


USAGE_ERROR = "usage_error"  # the result key a trial's UsageError is reported under


class StopAtUsageError(tune.Stopper):
    """Ends the whole grid at the first trial that reports a ``UsageError``; keeps its one line."""

    def __init__(self):
        self.error: Optional[str] = None

    def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
        if result.get(USAGE_ERROR) and self.error is None:
            self.error = f"{result.get('run_id', trial_id)}: {result[USAGE_ERROR]}"
        return bool(result.get(USAGE_ERROR))

    def stop_all(self) -> bool:
        return self.error is not None


STATE_PERIOD_S = 10.0  # seconds between saves of Tune's experiment state


class ConciseProgress(tune.Callback):
    """One line per trial event (trial, epoch, val reconstruction, degraded), instead of Tune's tables."""

    def __init__(self, log: Log, every_seconds: float = 5.0):
        self.log, self.every_seconds = log, every_seconds
        self.last: Dict[str, float] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = result.get("run_id", trial.trial_id)
        now = time.monotonic()
        if result.get("epoch") == result.get("epochs") or now - self.last.get(run_id, 0.0) >= self.every_seconds:
            self.last[run_id] = now
            self.log(
                f"{run_id:<48} epoch {result.get('epoch')}/{result.get('epochs')}  "
                f"val recon {result.get('val_reconstruction_top1', float('nan')):.4f}  "
                f"val degraded {result.get(TUNE_METRIC, float('nan')):.4f}"
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.log(f"{trial.config['trial']['run_id']:<48} done")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.log(f"{trial.config['trial']['run_id']:<48} failed; retrying from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.log(f"{trial.config['trial']['run_id']:<48} ERROR (recorded; the grid goes on)")


class CheckpointPruner(tune.Callback):
    """Keep each trial's newest checkpoints; delete an older one only once no saved experiment
    state can still point at it.

    Tune's own ``num_to_keep`` deletes a checkpoint the moment a newer one arrives, but saves the
    experiment state only every ``TUNE_GLOBAL_CHECKPOINT_S``: a driver killed in between resumes
    from a deleted checkpoint and the trial cannot restore. Here a superseded checkpoint lives on
    for ``grace_s`` (several state periods); at the end of the run the rest go.
    """

    def __init__(self, keep: int = 2, grace_s: float = 3 * STATE_PERIOD_S):
        self.keep, self.grace_s = keep, grace_s
        self.seen: Dict[str, List[tuple]] = {}

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        history = self.seen.setdefault(trial.trial_id, [])
        history.append((time.monotonic(), checkpoint))
        self._prune(history, time.monotonic() - self.grace_s)

    def on_experiment_end(self, trials, **info):
        for history in self.seen.values():
            self._prune(history, float("inf"))

    def _prune(self, history: List[tuple], older_than: float) -> None:
        while len(history) > self.keep and history[0][0] < older_than:
            _, checkpoint = history.pop(0)
            try:
                checkpoint.filesystem.delete_dir(checkpoint.path)
            except (FileNotFoundError, OSError):
                pass  # already gone: nothing to keep


def trial_name(trial) -> str:
    """Trial folders named by run id (plus Tune's id, unique across samples) instead of the whole config."""
    return f"{trial.config['trial']['run_id']}-{trial.trial_id}"


def _fit(space: ExpandedSpace, options: TuneOptions, bases, base_errors, log: Log):
    # The legacy output engine honours verbose=0; our ConciseProgress callback replaces its tables.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A fixed state period (Tune's "auto" stretches it to 19x the save time) bounds how stale a
    # resumed driver's view of the checkpoints can be; CheckpointPruner relies on that bound.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_PERIOD_S))
    # Ctrl-C raises here at once instead of Tune's graceful stop, which would return a partial grid
    # that looks finished; the state saved every STATE_PERIOD_S and the checkpoints make --resume exact.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    experiment = {
        "uri": options.uri,
        "bases": bases,
        "sampler_keys": sorted(space.samplers),
        "cpus_per_trial": options.cpus_per_trial,
        "checkpoint_every": options.checkpoint_every,
        "early_stopping": space.scheduler is not None,
        "metric": space.metric,
    }
    trials = [
        {"run_id": c.run_id, "config": c.config, "base_key": _base_key(c.config)}
        for c in space.runnable
        if _base_key(c.config) not in base_errors
    ]
    trainable = tune.with_resources(
        tune.with_parameters(parity_trainable, experiment=experiment),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    fs, path = storage.resolve(storage.canonical(options.storage))
    if not trials:
        return []
    usage = StopAtUsageError()
    run_config = tune.RunConfig(
        name=options.name,
        stop=usage,
        storage_path=path,
        storage_filesystem=fs,
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # CheckpointPruner keeps 2, safely
        verbose=0,
        callbacks=[CheckpointPruner()] + ([ConciseProgress(log)] if options.progress else [])
        + build_callbacks(list(space.callbacks) + list(options.callbacks)),
    )
    experiment_path = f"{path}/{options.name}" if storage.is_remote(options.storage) else str(Path(path, options.name))
    if options.resume and tune.Tuner.can_restore(experiment_path, storage_filesystem=fs):
        tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False, storage_filesystem=fs)
    else:
        scheduler, search_alg = build(SCHEDULERS, space.scheduler), build(SEARCH_ALGS, space.search_alg)
        ranked = scheduler is not None or search_alg is not None
        # A search algorithm samples one cell's hyperparameters (spaces.expand checks there is one).
        trial_axis = trials[0] if search_alg is not None else tune.grid_search(trials)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": trial_axis, **space.samplers},
            tune_config=tune.TuneConfig(
                metric=space.metric if ranked else None,
                mode="max" if ranked else None,
                scheduler=scheduler,
                search_alg=search_alg,
                num_samples=space.num_samples,
                max_concurrent_trials=options.max_concurrent_trials,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
                # A reused worker keeps torch, the datasets and the base models warm between trials.
                reuse_actors=True,
            ),
            run_config=run_config,
        )
    log(f"tune: {len(trials)} trial(s) x {space.num_samples} sample(s) -> {options.uri}")
    grid = tuner.fit()
    if usage.error is not None:
        raise UsageError(usage.error)
    return [grid[i] for i in range(len(grid))]


# --------------------------------------------------------------------------- tables


def _read_run(result) -> Optional[RunFiles]:
    """Metrics history, run record and predictions from a trial's latest checkpoint (None without one)."""
    if result.checkpoint is None:
        return None
    with result.checkpoint.as_directory() as folder:
        return read_run_files(Path(folder))


def _checkpoint_uri(options: TuneOptions, result) -> Optional[str]:
    if result.checkpoint is None:
        return None
    return f"{options.storage.split('://')[0]}://{result.checkpoint.path}" if storage.is_remote(options.storage) else result.checkpoint.path


def build_tables(options: TuneOptions, space: ExpandedSpace, results, bases, base_errors):
    import pandas as pd

    run_rows, epoch_rows, prediction_frames = [], [], []
    by_run_id = {}
    for result in results:
        trial = result.config["trial"]
        sampled = {k: result.config[k] for k in space.samplers}
        run_id = trial_run_id(result.config)  # the trainable's own definition
        by_run_id[run_id] = (result, trial, sampled)

    for cell in space.cells:
        base_key = _base_key(cell.config)
        matches = [(rid, v) for rid, v in by_run_id.items() if v[1]["run_id"] == cell.run_id]
        if cell.unavailable or base_key in base_errors or not matches:
            reason = cell.unavailable or base_errors.get(base_key) or "trial did not run"
            status = "UNAVAILABLE" if cell.unavailable else "ERROR"
            run_rows.append(run_row(options.name, cell.run_id, cell.config, status, reason, [], None, space=space.name,
                                    cpus=options.cpus_per_trial, gpus=options.gpus_per_trial))
            continue
        for run_id, (result, trial, sampled) in matches:
            run = _read_run(result)
            history = run.history if run else []
            config = {**trial["config"], **sampled}
            epochs_done = max((r["epoch"] for r in history), default=0)
            wanted = TrainConfig.from_dict(config).epochs
            if result.error is not None:
                status, error = "ERROR", f"{type(result.error).__name__}: {str(result.error).strip().splitlines()[-1][:500]}"
            elif history and epochs_done >= wanted:
                status, error = "COMPLETED", None
            elif history and space.scheduler is not None:
                # Ended by the space's scheduler; its checkpoint holds the best epoch's predictions.
                status, error = "EARLY_STOPPED", f"stopped by the {space.scheduler['cls']} scheduler after epoch {epochs_done}"
            else:
                status, error = "INCOMPLETE", None
            run_rows.append(run_row(options.name, run_id, config, status, error, history, run.record if run else {},
                                    space=space.name, base_id=bases.get(base_key, {}).get("id"),
                                    checkpoint_uri=_checkpoint_uri(options, result), metrics=result.metrics or {},
                                    cpus=options.cpus_per_trial, gpus=options.gpus_per_trial))
            epoch_rows.extend(run_epoch_rows(run_id, history))
            if run and run.predictions is not None:
                prediction_frames.append(run.predictions.assign(run_id=run_id))

    predictions = pd.concat(prediction_frames, ignore_index=True) if prediction_frames else empty_predictions()
    predictions = predictions[["run_id"] + [c for c in predictions.columns if c != "run_id"]]
    base_rows = [base_model_row(b) for b in bases.values()]
    return {
        "runs": pd.DataFrame(run_rows),
        "epochs": pd.DataFrame(epoch_rows, columns=["run_id", "epoch", "split", "metric", "value"]),
        "predictions": predictions,
        "base_models": pd.DataFrame(base_rows, columns=BASE_MODEL_COLUMNS),
    }


def summarize(options: TuneOptions, tables, seconds: float) -> Dict[str, Any]:
    runs = tables["runs"]
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    best = best_run(runs) if len(runs) else None
    return {
        "experiment": options.name,
        "uri": options.uri,
        "tables": storage.join(options.uri, "tables"),
        "trials": int(len(runs)),
        "status": {k: int(v) for k, v in counts.items()},
        "best_run": None if best is None else best["run_id"],
        "best_degraded_accuracy": None if best is None else float(best["degraded_accuracy"]),
        "best_val_degraded_accuracy": None if best is None else _optional_float(best.get("val_degraded_accuracy")),
        "best_available_accuracy": None if best is None else _optional_float(best.get("available_accuracy")),
        "best_all_accuracy_e0": None if best is None else _optional_float(best.get("all_accuracy_e0")),
        "wall_seconds": round(seconds, 2),
    }


def _optional_float(value) -> Optional[float]:
    return None if value is None or value != value else float(value)
