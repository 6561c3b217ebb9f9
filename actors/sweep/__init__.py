"""``parity-ray sweep``: coded serving at cluster scale, by discrete-event simulation.

A grid (rates x k x r x straggler specs x modes x cluster sizes) of simulated serving runs. Each
cell deploys, on paper, as many copies of the mode's app (``ServingMode.workers``: its replica
pools) as the cluster holds, splits the load evenly between them and simulates each app's
frontend and replicas on a simulated clock (``actors.sweep.engine``). Service times come from a
``parity-ray simulate`` run (``--calibrate``) or a distribution given by hand (``--service``); the
accuracy of every answer is drawn from the served run's measured per-instance results (a direct
answer is right when the base model was right on the drawn test image, a decoded one when the
decoder was). Cells run as Ray tasks (on a cluster with ``--address auto``), or in this process
with ``--workers 0``. One row per cell x mode lands in ``tables/sweeps/<sweep_id>.parquet``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
import uuid
from dataclasses import asdict
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from parity_ray.actors.options import AUTO, ModePolicy, SweepOptions
from parity_ray.errors import UsageError, choices_hint
from parity_ray.intervals import t_interval
from parity_ray.logs import stderr_log
from parity_ray.provenance import library_versions, stable_hash
from parity_ray.results import SCHEMA_VERSION, SWEEP_COLUMNS, check_table_targets, identity_columns, write_sweep






def _layout(k: int, r: int, run_layout=None):
    from parity_ray.actors.codes import CodeLayout

    if run_layout is not None and run_layout.k == k and run_layout.r == r:
        return run_layout
    systematic = True if run_layout is None else run_layout.systematic
    return CodeLayout(k=k, r=r, systematic=systematic, num_coded=r if systematic else k + r)


def validate(options: SweepOptions):
    """Everything checked before anything runs; returns (service model, run or None, run layout or None)."""
    from parity_ray.actors.app import check_options, has_coded_workers
    from parity_ray.actors.codes import code_layout
    from parity_ray.actors.modes import get_mode, list_modes
    from parity_ray.actors.stragglers import parse_spec
    from parity_ray.actors.sweep.service import calibrate, parse_service

    known = list_modes()
    bad = [m for m in options.modes if m not in known]
    if bad or not options.modes:
        name = bad[0] if bad else ""
        raise UsageError(f"unknown mode '{name}'; {choices_hint(name, known)}")
    if options.preset:
        from parity_ray.actors.sweep.presets import PRESETS

        PRESETS.get(options.preset)
    if options.replications < 2:
        raise UsageError("--replications must be >= 2 (every interval comes from their spread)")
    if options.ci_width is not None and not options.ci_width > 0:
        raise UsageError("--ci-width must be a percentage > 0")
    if options.rate_per_replicas is not None and options.rate_per_replicas < 1:
        raise UsageError("--rate-per-replicas must be >= 1")
    if options.clients is not None and options.clients <= 0:
        raise UsageError("--clients must be > 0")
    if options.clients is None and (not options.rates or any(r <= 0 for r in options.rates)):
        raise UsageError("--rate must be > 0")
    if options.queries <= 0 or options.warmup < 0:
        raise UsageError("--queries must be > 0 and --warmup >= 0")
    for name in ("ks", "rs", "cluster_sizes"):
        values = getattr(options, name)
        if values is not None and (not values or any(v < 1 for v in values)):
            raise UsageError(f"--{name.rstrip('s').replace('_', '-')} values must be >= 1")
    if options.restart_s < 0 or (options.busy_fraction is not None and not 0 < options.busy_fraction <= 1):
        raise UsageError("--restart-s must be >= 0 and --busy-fraction in (0, 1]")
    from parity_ray.actors.app import AppOptions

    policy = {f.name: getattr(options, f.name) for f in dataclasses.fields(ModePolicy)}
    for mode in options.modes:
        check_options(AppOptions(mode=mode, **policy))
    for spec in options.stragglers:
        parse_spec(spec)
    if bool(options.service) == bool(options.calibrate):
        raise UsageError("give the service times either by hand (--service lognormal:median_ms=3,sigma=0.3) "
                         "or fitted from a simulate run (--calibrate EXPERIMENT[:SIMULATION_ID]), one of the two")
    service = parse_service(options.service, options.seed) if options.service else calibrate(options.calibrate, options.batch_wait_ms, options.service_tail)
    if options.busy_fraction is not None:
        service.busy_fraction = float(options.busy_fraction)
    check_table_targets(options.experiment, "sweeps")  # a linked tables/sweeps: refused before any work
    run = run_layout = None
    has_parity = True
    if options.run:
        from parity_ray.serving import resolve_run

        run = resolve_run(options.experiment, options.run, dataset=options.dataset)
        run_layout = code_layout(run)
        has_parity = has_coded_workers(run)
    else:
        from parity_ray import results

        results.load(options.experiment)  # the rows' home must be an experiment
    for k, r in itertools.product(options.ks or [run_layout.k if run_layout else 2],
                                  options.rs or [run_layout.r if run_layout else 1]):
        layout = _layout(k, r, run_layout)
        for mode in options.modes:
            get_mode(mode).check(layout, has_parity)
            size = app_size(mode, layout, has_parity, options.copies)
            for cluster in options.cluster_sizes or []:
                if cluster < size:
                    raise UsageError(f"--cluster-size {cluster} holds no app of mode '{mode}' at k={k}, r={r} "
                                     f"({size} replicas each)")
    return service, run, run_layout, has_parity


def app_size(mode: str, layout, has_parity: bool, copies: int = 1) -> int:
    from parity_ray.actors.modes import deployed_pools

    return sum(len(w) for w in deployed_pools(mode, layout, has_parity, copies).values())


# --------------------------------------------------------------------------- one cell


def send_times(total: int, rate: float, seed) -> np.ndarray:
    """Seeded Poisson send times; with an int seed the very times of ``actors.simulation.send_times``."""
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, size=total))


def replication_seed(seed: int, replication: int) -> int:
    """Replication 0 keeps the sweep's seed (the very send times of a simulate run with that seed); the
    others move it far enough that no two replications share a stream. Every mode of a replication
    draws the same send times and stragglers (common random numbers: ratios between modes are paired)."""
    return int(seed) + 1_000_003 * int(replication)


def simulate_cell(cell: Dict[str, Any], service, shards: List[int], replication: int = 0) -> List[Dict[str, np.ndarray]]:
    """Simulate some of a cell's apps (``shards``) in one replication; per app, its measured queries' arrays."""
    from parity_ray.actors.stragglers import parse_spec
    from parity_ray.actors.sweep.engine import Shard

    layout = _layout(cell["k"], cell["r"], cell.get("run_layout"))
    stragglers = parse_spec(cell["straggler"])
    apps, size = cell["apps"], cell["replicas_per_app"]
    out = []
    cell_seed = replication_seed(cell["seed"], replication)
    for s in shards:
        total = cell["per_app"][s]
        warm = cell["warmup_per_app"][s]
        shard = Shard(cell["mode"], layout, cell["has_parity"], cell["mode_options"], service, stragglers,
                      copies=cell["copies"],
                      first_replica=s * size, n_cluster=apps * size, seed=cell_seed,
                      max_batch_size=cell["max_batch_size"], batch_wait_s=cell["batch_wait_ms"] / 1000.0,
                      busy_fraction=service.busy_fraction, restart_s=cell["restart_s"])
        if cell["clients"]:
            clients = cell["clients"] // apps + (1 if s < cell["clients"] % apps else 0)
            result = shard.run(np.zeros(total), clients=max(clients, 1))
        else:
            seed = cell_seed if apps == 1 else [cell_seed, s]
            result = shard.run(send_times(total, cell["rate"] / apps, seed))
        keep = slice(warm, None)
        out.append({"send": result.send[keep], "answer": result.answer[keep], "path": result.path[keep],
                    "hedged": result.hedged[keep], "deadline": result.deadline[keep], "requests": result.requests, "sent": total,
                    "groups_encoded": result.groups_encoded, "groups_skipped": result.groups_skipped})
    return out


def _split(total: int, parts: int) -> List[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def plan_cells(options: SweepOptions, run_layout, has_parity: bool) -> List[Dict[str, Any]]:
    cells = []
    loads = [("clients", options.clients)] if options.clients else [("rate", r) for r in options.rates]
    for (load_kind, load), k, r, straggler, cluster, mode in itertools.product(
            loads, options.ks or [run_layout.k if run_layout else 2], options.rs or [run_layout.r if run_layout else 1],
            options.stragglers, options.cluster_sizes or [None], options.modes):
        layout = _layout(k, r, run_layout)
        size = app_size(mode, layout, has_parity, options.copies)
        apps = max((cluster or size) // size, 1)
        if load_kind == "rate" and options.rate_per_replicas:  # the same load per replica at every size
            load = load * apps * size / options.rate_per_replicas
        per_replication = -(-options.queries // options.replications)
        # every app warms up on its own: its frontend starts cold (an adaptive deadline at its start
        # value until 20 answers are in, no recent answers to pad a group with), however many apps share
        # the load. (Split over 333 apps, a warm-up of 1,000 left each app 3 and put ~20 queries an app
        # at the 50 ms start deadline into the statistics: a third of the 1,000-replica cells' queries.)
        warm = [options.warmup] * apps
        per_app = [share + options.warmup for share in _split(per_replication, apps)]
        cells.append({
            "mode": mode, "k": k, "r": r, "systematic": layout.systematic, "straggler": straggler,
            "rate": float(load) if load_kind == "rate" else None, "clients": int(load) if load_kind == "clients" else None,
            "cluster_size": cluster or size, "apps": apps, "replicas_per_app": size, "copies": options.copies, "per_app": per_app,
            "warmup_per_app": warm, "mode_options": options.mode_options(), "max_batch_size": options.max_batch_size,
            "batch_wait_ms": options.batch_wait_ms, "restart_s": options.restart_s, "has_parity": has_parity,
            "run_layout": run_layout, "seed": options.seed,
        })
    return cells


def _percentile(values: np.ndarray, q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if len(values) else None


FIGURES = ("p50_ms", "p99_ms", "p999_ms")  # the figures that carry an interval
PERCENTILES = {"p50_ms": 50, "p90_ms": 90, "p99_ms": 99, "p999_ms": 99.9}


def _latencies(parts) -> np.ndarray:
    send = np.concatenate([p["send"] for p in parts])
    answer = np.concatenate([p["answer"] for p in parts])
    path = np.concatenate([p["path"] for p in parts])
    return (answer - send)[path != 2] * 1000.0


def summarize_cell(cell, replications: List[List[Dict[str, Any]]], accuracy, rng) -> Dict[str, Any]:
    """A cell's figures over all its replications pooled, each p50/p99/p99.9 with a 95% interval
    from the replications' spread; ``replicates`` holds each replication's own figures."""
    parts = [part for replication in replications for part in replication]
    send = np.concatenate([p["send"] for p in parts])
    answer = np.concatenate([p["answer"] for p in parts])
    path = np.concatenate([p["path"] for p in parts])
    hedged = np.concatenate([p["hedged"] for p in parts])
    answered = path != 2
    latency = (answer - send)[answered] * 1000.0
    measured = len(path)
    correct = decoded_correct = None
    if accuracy is not None and (cell["k"], cell["r"]) == accuracy["kr"] and measured:
        rows = rng.integers(0, len(accuracy["base"]), size=measured)
        right = np.where(path == 0, accuracy["base"][rows], np.where(path == 1, accuracy["decoded"][rows], False))
        correct = float(right.mean())
        decoded_correct = float(right[path == 1].mean()) if (path == 1).any() else None
    replicates = []
    for replication in replications:
        own = _latencies(replication)
        replicates.append({**{f: _percentile(own, PERCENTILES[f]) for f in FIGURES},
                           "mean_ms": float(own.mean()) if len(own) else None})
    figures = {f: _percentile(latency, q) for f, q in PERCENTILES.items()}
    bounds = {}
    for figure in FIGURES:
        bounds[f"{figure}_lo"], bounds[f"{figure}_hi"] = t_interval([r[figure] for r in replicates], figures[figure])
    throughputs = []  # each replication's own timeline: answered / (its last answer - its first send)
    for replication in replications:
        filled = [p for p in replication if len(p["send"])]
        if filled:
            span = max(np.max(p["answer"]) for p in filled) - min(np.min(p["send"]) for p in filled)
            if span > 0:
                throughputs.append(len(_latencies(filled)) / span)
    return {
        "sent": int(sum(p["sent"] for p in parts)), "measured": measured,
        "direct": int((path == 0).sum()), "decoded": int((path == 1).sum()), "failed": int((path == 2).sum()),
        "hedged": int(hedged.sum()), "requests_per_query": float(sum(p["requests"] for p in parts) / max(sum(p["sent"] for p in parts), 1)),
        "groups_encoded": int(sum(p["groups_encoded"] for p in parts)), "groups_skipped": int(sum(p["groups_skipped"] for p in parts)),
        **figures, "mean_ms": float(latency.mean()) if len(latency) else None,
        "throughput_qps": float(np.mean(throughputs)) if throughputs else None,
        "accuracy": correct, "decoded_accuracy": decoded_correct, "deadline_seen_ms": _median_deadline(parts),
        "replications": len(replications), **bounds, "replicates": replicates,
    }


def _median_deadline(parts) -> Optional[float]:
    """The median deadline (ms) the measured queries were given (None: the mode has none)."""
    seen = np.concatenate([p["deadline"] for p in parts]) if parts else np.zeros(0)
    seen = seen[~np.isnan(seen)]
    return float(np.median(seen)) if len(seen) else None


def load_accuracy(options: SweepOptions, run) -> Optional[Dict[str, Any]]:
    """The run's per-instance results at one unavailable worker: base and decoded correctness per decode."""
    if run is None:
        return None
    from parity_ray import results

    predictions = results.load(options.experiment).predictions
    rows = predictions[(predictions.run_id == run.run_id) & (predictions.erasures == 1)]
    if rows.empty:
        return None
    return {"kr": (run.k, run.r), "base": (rows.label == rows.base_prediction).to_numpy(),
            "decoded": (rows.label == rows.decoded_prediction).to_numpy()}


# --------------------------------------------------------------------------- the sweep


def _chunks(cell, workers: int) -> List[List[int]]:
    apps = cell["apps"]
    per = max(1, int(np.ceil(apps / max(workers, 1))))
    return [list(range(i, min(i + per, apps))) for i in range(0, apps, per)]


def run_sweep(options: SweepOptions, log=stderr_log) -> Dict[str, Any]:
    from parity_ray.actors.sweep.presets import PRESETS, apply_preset

    options = apply_preset(options)
    service, run, run_layout, has_parity = validate(options)
    accuracy = load_accuracy(options, run)
    cells = plan_cells(options, run_layout, has_parity)
    sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{stable_hash(asdict(options), 6)}-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    results, seconds, unmet = run_replications(options, cells, service, log)
    if unmet:
        log(f"  --ci-width {options.ci_width:g}%: {len(unmet)} cell(s) stopped at {MAX_ROUNDS * options.replications} "
            f"replications with a wider p99.9 interval: " + "; ".join(_cell_name(cells[n]) for n in unmet[:5])
            + (" ..." if len(unmet) > 5 else ""))
    rng = np.random.default_rng([options.seed, 99])
    rows = []
    settings_common = {key: value for key, value in asdict(options).items() if key not in ("progress", "address", "workers")}
    versions = json.dumps(library_versions(), sort_keys=True)
    service_json = json.dumps(service.describe(), sort_keys=True)
    # the experiment's name and the run's dataset and model (null without a run); k and r are each cell's own
    identity = {key: value for key, value in identity_columns(options.experiment, run.config if run else None).items()
                if key in ("experiment", "dataset", "model")}
    for n, (cell, parts) in enumerate(zip(cells, results)):
        stats = summarize_cell(cell, parts, accuracy, rng)
        deadline_seen = stats.pop("deadline_seen_ms")
        settings = {**settings_common, **{k: v for k, v in cell.items() if k not in ("run_layout", "per_app", "warmup_per_app")},
                    "timings": _timings(cell["mode"], options)}
        rows.append({
            "sweep_id": sweep_id, "cell": n, "mode": cell["mode"], "rate": cell["rate"], "clients": cell["clients"],
            "k": cell["k"], "r": cell["r"], "systematic": bool(cell["systematic"]), "straggler": cell["straggler"],
            "cluster_size": int(cell["cluster_size"]), "apps": int(cell["apps"]), "replicas_per_app": int(cell["replicas_per_app"]),
            "replicas": int(cell["apps"] * cell["replicas_per_app"]),
            "deadline_ms": deadline_seen if options.deadline_ms == AUTO else float(options.deadline_ms),
            "hedge_deadline_ms": options.hedge_deadline_ms, "group_wait_ms": options.group_wait_ms,
            "timeout_s": float(options.timeout_s), "max_batch_size": int(options.max_batch_size),
            "batch_wait_ms": float(options.batch_wait_ms), "busy_fraction": float(service.busy_fraction),
            "restart_s": float(options.restart_s), "service": service_json, "seed": int(options.seed), **stats,
            "run_id": run.run_id if run is not None else None, **identity,
            "settings": json.dumps(settings, sort_keys=True, default=str), "seconds": float(seconds[n]),
            "versions": versions, "schema_version": SCHEMA_VERSION, "replicates": json.dumps(stats.pop("replicates")),
        })
    frame = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    for column in ("hedge_deadline_ms", "group_wait_ms", "rate", "accuracy", "decoded_accuracy", "p50_ms", "p90_ms",
                   "p99_ms", "p999_ms", "mean_ms", "throughput_qps", *(f"{f}_{end}" for f in FIGURES for end in ("lo", "hi"))):
        frame[column] = frame[column].astype("float64")
    frame["clients"] = frame["clients"].astype("Int64")
    uri = write_sweep(options.experiment, sweep_id, frame)
    summary = {"sweep_id": sweep_id, "experiment": identity["experiment"], "uri": options.experiment, "table": uri,
               "cells": len(cells),
               "queries": int(frame.sent.sum()), "seconds": round(time.perf_counter() - started, 3),
               "service": service.describe(), "rows": rows, "ci_width_unmet": [int(n) for n in unmet]}
    if options.preset:
        preset = PRESETS.get(options.preset)
        summary["preset"] = {"name": options.preset, "source": preset.source, "assumptions": preset.assumptions,
                             "published": preset.published, "headline": preset.headline(rows)}
    return summary


def _timings(mode: str, options: SweepOptions) -> Dict[str, float]:
    from parity_ray.actors.modes import get_mode

    return get_mode(mode).timings(options.mode_options())


def _cell_name(cell) -> str:
    load = f"{cell['rate']:g} qps" if cell["rate"] is not None else f"{cell['clients']} clients"
    return (f"{cell['mode']} k={cell['k']} r={cell['r']} {load} {cell['straggler']} "
            f"{cell['apps']}x{cell['replicas_per_app']} replicas")


MAX_ROUNDS = 8  # --ci-width: at most this many times --replications per cell


def _wide(stats_of_cell, pct: float) -> bool:
    lo, hi, point = stats_of_cell["p999_ms_lo"], stats_of_cell["p999_ms_hi"], stats_of_cell["p999_ms"]
    return point is not None and (lo is None or (hi - lo) / 2 > pct / 100.0 * point)


def run_replications(options: SweepOptions, cells, service, log):
    """Every cell's replications (``--replications``, then more where ``--ci-width`` asks):
    ``(per cell: per replication: apps' arrays, per cell seconds, cells left wider than asked)``."""
    results: List[List[List[Dict[str, Any]]]] = [[] for _ in cells]
    seconds = [0.0] * len(cells)
    todo = {n: list(range(options.replications)) for n in range(len(cells))}
    rounds, unmet = 1, []
    with _executor(options) as execute:
        while todo:
            execute(cells, todo, service, results, seconds, log)
            if options.ci_width is None:
                break
            rng = np.random.default_rng(0)
            wide = [n for n in todo if _wide(summarize_cell(cells[n], results[n], None, rng), options.ci_width)]
            if rounds >= MAX_ROUNDS:
                unmet = wide
                break
            rounds += 1
            todo = {n: list(range(len(results[n]), len(results[n]) + options.replications)) for n in wide}
    return results, seconds, unmet


class _executor:
    """Runs replications in this process (``--workers 0``) or as Ray tasks (a cluster with ``--address``)."""

    def __init__(self, options: SweepOptions):
        self.options = options
        self.session = None

    def __enter__(self):
        if self.options.workers == 0:
            return self._in_process
        from parity_ray.ray_session import ray_running

        self.session = ray_running(self.options.address)
        self.session.__enter__()
        return self._on_ray

    def __exit__(self, *exc):
        if self.session is not None:
            return self.session.__exit__(*exc)
        return False

    def _in_process(self, cells, todo, service, results, seconds, log):
        for n, replications in todo.items():
            t0 = time.perf_counter()
            for replication in replications:
                results[n].append(simulate_cell(cells[n], service, list(range(cells[n]["apps"])), replication))
            seconds[n] += time.perf_counter() - t0
            if self.options.progress:
                log(f"  cell {n + 1}/{len(cells)}: {_cell_name(cells[n])}, {len(results[n])} replications ({seconds[n]:.1f} s)")

    def _on_ray(self, cells, todo, service, results, seconds, log):
        import ray

        workers = self.options.workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
        task = ray.remote(num_cpus=1)(_timed_cell)
        service_ref = ray.put(service)
        pending, parts = {}, {}
        for n, replications in todo.items():
            for replication in replications:
                for chunk in _chunks(cells[n], max(workers // max(len(replications), 1), 1)):
                    pending[task.remote(cells[n], service_ref, chunk, replication)] = (n, replication)
        left = {n: sum(1 for key in pending.values() if key[0] == n) for n in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            n, replication = pending.pop(done[0])
            chunk, spent = ray.get(done[0])
            parts.setdefault((n, replication), []).append(chunk)
            seconds[n] += spent
            left[n] -= 1
            if not left[n]:
                for rep in todo[n]:  # the replications in order, their apps in order
                    results[n].append([app for _first, apps in sorted(parts.pop((n, rep)), key=lambda c: c[0]) for app in apps])
                if self.options.progress:
                    log(f"  cell {n + 1}/{len(cells)}: {_cell_name(cells[n])}, {len(results[n])} replications "
                        f"({seconds[n]:.1f} task-s)")


def _timed_cell(cell, service, chunk, replication=0):
    started = time.perf_counter()
    out = simulate_cell(cell, service, chunk, replication)
    return (chunk[0], out), time.perf_counter() - started


def format_row(row: Dict[str, Any]) -> str:
    f = lambda v: "   n/a" if v is None or v != v else f"{v:7.1f}"  # noqa: E731
    acc = "n/a" if row["accuracy"] is None or row["accuracy"] != row["accuracy"] else f"{row['accuracy']:.4f}"
    load = f"{row['rate']:g} qps" if row["rate"] is not None and row["rate"] == row["rate"] else f"{row['clients']} clients"
    lo, hi = row.get("p999_ms_lo"), row.get("p999_ms_hi")
    band = "" if lo is None or lo != lo else f" [{lo:.1f}-{hi:.1f}]"
    return (f"{row['mode']:<12} k={row['k']} r={row['r']} {load:>10} {row['replicas']:>4} replicas  p50 {f(row['p50_ms'])}  "
            f"p99 {f(row['p99_ms'])}  p99.9 {f(row['p999_ms'])}{band} ms  accuracy {acc}  direct {row['direct']} "
            f"decoded {row['decoded']} failed {row['failed']}  [{row['straggler']}]")
