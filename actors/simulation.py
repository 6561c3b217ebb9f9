"""``parity-ray simulate``: serve a trained run in each serving mode and measure it.

For each mode the app of ``actors.app.build_app`` (the one ``parity-ray serve`` runs) is deployed,
the same straggler models are applied, and the same seeded load of real test-set images (pixels
in [0, 1], normalised by the app as for an HTTP client) is sent through the app's handle; every
answer is scored against the true label and the base model's own prediction. Each simulation
writes its own files under ``tables/queries/`` and ``tables/simulations/``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import uuid
from dataclasses import asdict
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from parity_ray.actors.options import SimulationOptions  # noqa: F401 - the command's options, also imported from here
from parity_ray.errors import UsageError, choices_hint
from parity_ray.logs import stderr_log
from parity_ray.provenance import library_versions, stable_hash
from parity_ray.results import SCHEMA_VERSION, experiment_name, identity_columns, write_simulation



# --------------------------------------------------------------------------- validation


def validate(options: SimulationOptions):
    """Everything checkable before a replica is deployed; returns (run, straggler models)."""
    from parity_ray.actors.app import check_options, plan
    from parity_ray.actors.modes import list_modes
    from parity_ray.actors.stragglers import parse_spec
    from parity_ray.results import check_table_targets
    from parity_ray.serving import resolve_run

    modes = list_modes()
    bad = [m for m in options.modes if m not in modes]
    if bad or not options.modes:
        raise UsageError(f"unknown mode '{bad[0] if bad else ''}'; {choices_hint(bad[0] if bad else '', modes)}")
    for name in ("rate", "queries", "repeat"):
        if getattr(options, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0")
    if options.warmup < 0:
        raise UsageError("--warmup must be >= 0")
    if options.interleave_s is not None and (options.interleave_s <= 0 or options.clients):
        raise UsageError("--interleave-s must be > 0 and needs an open-loop --rate (not --clients)")
    for mode in options.modes:
        check_options(options.app_options(mode))
    stragglers = parse_spec(options.straggler)
    if options.data_root:
        from parity_ray.data import data_roots

        data_roots(options.data_root)  # an explicit --data-root that is not a folder: refused before Ray starts
    run = resolve_run(options.experiment, options.run, dataset=options.dataset, model=options.model, k=options.k)
    check_table_targets(options.experiment, "queries", "simulations")  # a linked table folder: refused before Ray starts
    for mode in options.modes:
        plan(run, mode, options.copies)  # the mode can serve this run's code
    return run, stragglers


def check_resources(options: SimulationOptions, run) -> None:
    import ray

    from parity_ray.actors.app import plan

    if not options.resource_check:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total_cpu = sum(n["Resources"].get("CPU", 0) for n in nodes)
    best_gpu = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
    per_mode = [sum(len(w) for w in plan(run, mode, options.copies).values()) for mode in options.modes]
    replicas = sum(per_mode) if options.interleave_s else max(per_mode)  # interleaved: every app at once
    needed = replicas * options.cpus_per_replica
    if needed > total_cpu or options.gpus_per_replica > best_gpu:
        raise UsageError(
            f"{replicas} replicas x ({options.cpus_per_replica:g} CPU, {options.gpus_per_replica:g} GPU) do not fit "
            f"this cluster ({total_cpu:g} CPUs, largest node {best_gpu:g} GPUs); lower --cpus-per-replica/--gpus-per-replica"
        )


# --------------------------------------------------------------------------- load


def generate_load(handle, inputs: np.ndarray, options: SimulationOptions, label: str = "load") -> List[Dict[str, Any]]:
    """Open-loop Poisson (or closed-loop clients) over ``inputs``; one record per query, none dropped.

    The client's own pauses must not show up as serving latency: the heap built so far (torch,
    pandas, the test set) is frozen out of the collector, and collection is off while the load runs.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return asyncio.run(_load(handle, inputs, options, label))
    finally:
        gc.enable()
        gc.unfreeze()


async def _load(handle, inputs: np.ndarray, options: SimulationOptions, label: str) -> List[Dict[str, Any]]:
    from parity_ray.progress import progress

    total = len(inputs)
    bar = progress(total=total, desc=label, unit="query", enabled=options.progress, stream=sys.stderr)
    records: List[Optional[Dict[str, Any]]] = [None] * total
    origin = time.perf_counter()
    query = handle.query

    async def send(i: int) -> None:
        sent = time.perf_counter()
        try:
            answer = await query.remote(i, inputs[i])
        except Exception as exc:  # the frontend itself failed: still accounted for
            answer = {"query_id": i, "path": "failed", "reason": f"frontend error: {type(exc).__name__}: {exc}"[:300]}
        records[i] = {**answer, "send_s": sent - origin, "receive_s": time.perf_counter() - origin}
        bar.update(1)

    if options.clients:
        counter = iter(range(total))

        async def client() -> None:
            for i in counter:
                await send(i)

        await asyncio.gather(*(client() for _ in range(options.clients)))
    else:
        tasks = []
        for i, send_at in enumerate(send_times(total, options)):
            delay = origin + send_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(send(i)))
        await asyncio.gather(*tasks)
    bar.close()
    assert all(r is not None for r in records)
    return records  # type: ignore[return-value]


def send_times(total: int, options: SimulationOptions) -> np.ndarray:
    """The seeded Poisson send times (seconds from the load's start) of an open-loop load."""
    return np.cumsum(np.random.default_rng(options.seed).exponential(1.0 / options.rate, size=total))


def generate_interleaved_load(handles: Dict[str, Any], inputs: np.ndarray, options: SimulationOptions,
                              log=stderr_log) -> Dict[str, List[Dict[str, Any]]]:
    """Every mode the same open-loop load, in turns of ``interleave_s`` seconds, one mode at a time.

    Turn t sends, to each mode in a rotating order, the queries whose send times fall in
    ``[t * interleave_s, (t + 1) * interleave_s)`` at those times of the mode's own clock, and waits
    for all of them before the next mode's turn. A mode's ``send_s``/``receive_s`` are on its own
    clock (the turns of the other modes and the drains left out), so its throughput and latency
    read as in an uninterrupted run.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return asyncio.run(_interleaved(handles, inputs, options, log))
    finally:
        gc.enable()
        gc.unfreeze()


async def _interleaved(handles, inputs, options, log):
    times = send_times(len(inputs), options)
    turn_s = float(options.interleave_s)
    turns = int(np.ceil(times[-1] / turn_s)) if len(times) else 0
    records: Dict[str, List[Optional[Dict[str, Any]]]] = {mode: [None] * len(inputs) for mode in handles}
    modes = list(handles)
    for turn in range(turns):
        start, end = turn * turn_s, (turn + 1) * turn_s
        chosen = np.flatnonzero((times >= start) & (times < end)) if turn < turns - 1 else np.flatnonzero(times >= start)
        for mode in modes[turn % len(modes):] + modes[: turn % len(modes)]:
            query = handles[mode].query
            origin = time.perf_counter()

            async def send(i: int, mode=mode, query=query, origin=origin) -> None:
                delay = origin + times[i] - start - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.perf_counter()
                try:
                    answer = await query.remote(int(i), inputs[i])
                except Exception as exc:  # the frontend itself failed: still accounted for
                    answer = {"query_id": int(i), "path": "failed",
                              "reason": f"frontend error: {type(exc).__name__}: {exc}"[:300]}
                records[mode][i] = {**answer, "send_s": start + sent - origin,
                                    "receive_s": start + time.perf_counter() - origin}

            await asyncio.gather(*(send(i) for i in chosen))
        if options.progress and turn % 10 == 9:
            log(f"  interleaved load: turn {turn + 1} of {turns}")
    assert all(r is not None for mode in records for r in records[mode])
    return records  # type: ignore[return-value]


# --------------------------------------------------------------------------- run


def load_queries(run, options: SimulationOptions):
    """The seeded queries: test-set pixels in [0, 1], their labels, and the base model's predictions."""
    import torch

    from parity_ray.data import load_data
    from parity_ray.serving import load_model

    config = run.config
    # The run's recorded data root is never followed (it is the experiment's word, not this user's): the
    # test split comes from --data-root, or $PARITY_RAY_DATA and the user cache.
    data = load_data(config["dataset"], data_root=options.data_root, download=False,
                     val_size=config["val_size"], split_seed=config["seed"], input_norm="none")
    total = options.warmup + options.queries
    rng = np.random.default_rng(options.seed)
    indices = rng.choice(len(data.test_y), size=total, replace=total > len(data.test_y))
    pixels = data.test_x[indices].numpy().astype(np.float32)
    labels = data.test_y[indices].numpy()
    with torch.no_grad():
        base_pred = load_model(run, "base")(torch.from_numpy(normalise(pixels, run.input_norm))).argmax(1).numpy()
    return indices, pixels, labels, base_pred


def normalise(pixels: np.ndarray, norm: Dict[str, Any]) -> np.ndarray:
    """The run's own normalisation (what the app applies to every query), for a batch (B, C, H, W)."""
    mean = np.asarray(norm["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(norm["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    return ((pixels - mean) * (1.0 / std)).astype(np.float32)


def run_simulation(options: SimulationOptions, log=stderr_log) -> Dict[str, Any]:
    """Serve the run in every mode (``options.repeat`` times over) and write the simulation's rows.

    Every repetition sends the same test queries with fresh seeds (send times, straggler draws) and
    the modes in a rotated order, so that neither a lucky draw nor a busy minute of the machine
    decides a tail; ``spread`` gives each figure's median and range over the repetitions."""
    import logging

    from parity_ray.ray_session import ray_running

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # one line per mode from us, not Serve's INFO stream
    run, stragglers = validate(options)
    with ray_running(options.address):
        check_resources(options, run)
        indices, pixels, labels, base_pred = load_queries(run, options)
        simulation_id = f"sim-{time.strftime('%Y%m%d-%H%M%S')}-{stable_hash(asdict(options), 6)}-{uuid.uuid4().hex[:6]}"
        query_frames, summaries = [], []
        for index in range(options.repeat):
            repetition = options.repetition(index)
            if options.repeat > 1:
                log(f"repetition {index + 1}/{options.repeat}: seed {repetition.seed}, modes in the order "
                    f"{', '.join(repetition.modes)}")
            results = serve_modes(repetition, run, pixels, simulation_id, log)
            for mode in options.modes:  # the rows keep the order the user gave
                records, wall, stats, nodes = results[mode]
                frame = queries_frame(records, simulation_id, mode, run.run_id, indices, labels, base_pred, options.warmup)
                frame.insert(1, "repeat", index)
                summary = {"repeat": index,
                           **summarize_mode(frame, repetition, mode, run, simulation_id, stragglers, wall, stats)}
                summary["replica_nodes"] = json.dumps(nodes, sort_keys=True)
                log(format_mode(summary))
                query_frames.append(frame)
                summaries.append(summary)
    write_simulation(options.experiment, simulation_id, pd.concat(query_frames, ignore_index=True), pd.DataFrame(summaries))
    return {"simulation_id": simulation_id, "experiment": experiment_name(options.experiment), "uri": options.experiment,
            "run_id": run.run_id, "modes": summaries,
            "repeats": options.repeat, "spread": spread(summaries)}


def serve_modes(options: SimulationOptions, run, pixels: np.ndarray, simulation_id: str, log) -> Dict[str, tuple]:
    """Deploy each mode's app and send it the load: ``mode -> (records, wall seconds, frontend stats, nodes)``."""
    from ray import serve

    from parity_ray.actors.app import build_app

    total = len(pixels)
    load = f"closed loop, {options.clients} clients" if options.clients else f"{options.rate:g} qps"
    results: Dict[str, tuple] = {}

    def deploy(mode):
        app_name = f"parity-sim-{mode}-{simulation_id[-6:]}"
        handle = serve.run(build_app(run, options.app_options(mode)), name=app_name, route_prefix=None,
                           logging_config={"log_level": "WARNING"})
        nodes = handle.placement.remote().result()
        log(f"{mode}: deployed on {len(set(nodes.values()))} node(s)")
        return app_name, handle, nodes

    if options.interleave_s:
        deployed = {}
        try:
            for mode in options.modes:
                deployed[mode] = deploy(mode)
            log(f"sending {total} queries to each mode ({load}), in turns of {options.interleave_s:g} s")
            started = time.perf_counter()
            records = generate_interleaved_load({m: d[1] for m, d in deployed.items()}, pixels, options, log)
            wall = time.perf_counter() - started
            for mode, (app_name, handle, nodes) in deployed.items():
                results[mode] = (records[mode], wall, handle.stats.remote().result(), nodes)
        finally:
            for app_name, _handle, _nodes in deployed.values():
                serve.delete(app_name)
    else:
        for mode in options.modes:
            app_name, handle, nodes = deploy(mode)
            try:
                log(f"{mode}: sending {total} queries ({load})")
                started = time.perf_counter()
                records = generate_load(handle, pixels, options, mode)
                wall = time.perf_counter() - started
                results[mode] = (records, wall, handle.stats.remote().result(), nodes)
            finally:
                serve.delete(app_name)
    return results


SPREAD_FIGURES = ("p50_ms", "p99_ms", "p999_ms", "gap_ms", "accuracy", "throughput_qps")


def spread(summaries: List[Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, Optional[float]]]]:
    """Per mode, each figure's median, min and max over the repetitions (``gap_ms``: p99.9 - p50)."""
    by_mode: Dict[str, Dict[str, List[float]]] = {}
    for s in summaries:
        figures = by_mode.setdefault(s["mode"], {f: [] for f in SPREAD_FIGURES})
        values = {**s, "gap_ms": None if s["p999_ms"] is None or s["p50_ms"] is None else s["p999_ms"] - s["p50_ms"]}
        for figure in SPREAD_FIGURES:
            if values.get(figure) is not None:
                figures[figure].append(float(values[figure]))
    return {mode: {f: ({"median": float(np.median(v)), "min": min(v), "max": max(v)} if v else
                       {"median": None, "min": None, "max": None}) for f, v in figures.items()}
            for mode, figures in by_mode.items()}


def format_spread(mode: str, figures: Dict[str, Dict[str, Optional[float]]]) -> str:
    def cell(figure: str) -> str:
        f = figures[figure]
        return "n/a" if f["median"] is None else f"{f['median']:.1f} [{f['min']:.1f}-{f['max']:.1f}]"

    return (f"{mode:<12} p50 {cell('p50_ms')}  p99 {cell('p99_ms')}  p99.9 {cell('p999_ms')}  "
            f"p99.9-p50 {cell('gap_ms')} ms (median [min-max])")


def queries_frame(records, simulation_id, mode, run_id, indices, labels, base_pred, warmup) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "simulation_id": simulation_id,
            "mode": mode,
            "run_id": run_id,
            "query_id": [r["query_id"] for r in records],
            "test_index": indices,
            "group_id": [r.get("group_id") for r in records],
            "position": [r.get("position") for r in records],
            "send_s": [r["send_s"] for r in records],
            "receive_s": [r["receive_s"] for r in records],
            "path": [r["path"] for r in records],
            "replica": [r.get("replica") for r in records],
            "hedged": [bool(r.get("hedged", False)) for r in records],
            "reason": [r.get("reason") for r in records],
            "label": labels,
            "base_prediction": base_pred,
            "prediction": [r.get("prediction") for r in records],
            "coder_seconds": [r.get("coder_seconds") for r in records],
            "deadline_ms": [r.get("deadline_ms") for r in records],  # the deadline the query was given
            "frontend_ms": [r.get("frontend_ms") for r in records],  # its time inside the frontend
            # what a decoded answer was rebuilt from, and its output: enough to recompute it offline
            "group_members": [r.get("group_members") if r["path"] == "decoded" else None for r in records],
            "decoded_from": [r.get("decoded_from") if r["path"] == "decoded" else None for r in records],
            "output": [None if r["path"] != "decoded" or r.get("output") is None
                       else np.asarray(r["output"], dtype=np.float32) for r in records],
            "warmup": np.arange(len(records)) < warmup,
        }
    )
    frame["latency_ms"] = (frame.receive_s - frame.send_s) * 1000.0
    answered = frame.path != "failed"
    frame["correct"] = answered & (frame.prediction == frame.label)
    frame["agrees_with_base"] = answered & (frame.prediction == frame.base_prediction)
    for column in ("group_id", "position", "prediction"):
        frame[column] = frame[column].astype("Int64")
    frame["coder_seconds"] = frame["coder_seconds"].astype("float64")
    frame["deadline_ms"] = frame["deadline_ms"].astype("float64")
    frame["frontend_ms"] = frame["frontend_ms"].astype("float64")
    return frame


def percentile_intervals(latency: np.ndarray, seed: int) -> Dict[str, Optional[float]]:
    """``p50_ms_lo`` ... ``p999_ms_hi``: each figure's 95% bootstrap interval over this run's queries."""
    from parity_ray.intervals import bootstrap_interval

    out: Dict[str, Optional[float]] = {}
    for name, q in (("p50_ms", 50), ("p99_ms", 99), ("p999_ms", 99.9)):
        out[f"{name}_lo"], out[f"{name}_hi"] = bootstrap_interval(latency, q, seed=seed)
    return out


def summarize_mode(frame, options, mode, run, simulation_id, stragglers, wall, stats=None) -> Dict[str, Any]:
    measured = frame[~frame.warmup]
    answered = measured[measured.path != "failed"]
    decoded = measured[measured.path == "decoded"]
    latency = answered.latency_ms.to_numpy()
    span = (measured.receive_s.max() - measured.send_s.min()) if len(measured) else float("nan")
    send_span = (measured.send_s.max() - measured.send_s.min()) if len(measured) > 1 else float("nan")
    counts = measured.path.value_counts().to_dict()
    pct = lambda q: float(np.percentile(latency, q)) if len(latency) else None  # noqa: E731
    stats = stats or {}
    coder_ms = coder_cpu_ms = None
    if "encode_s" in stats and stats.get("queries"):
        # the frontend's whole encode + decode work over every query it served (warm-up included)
        coder_ms = 1000.0 * (stats["encode_s"] + stats["decode_s"]) / stats["queries"]
        coder_cpu_ms = 1000.0 * (stats["encode_cpu_s"] + stats["decode_cpu_s"]) / stats["queries"]
    return {
        "simulation_id": simulation_id,
        "mode": mode,
        "run_id": run.run_id,
        **identity_columns(options.experiment, run.config),  # experiment's name; the run's dataset, model, k, r
        "config": json.dumps({**{k: v for k, v in asdict(options).items() if k != "progress"}, "stragglers": stragglers,
                              "k": run.k, "r": run.r}, sort_keys=True, default=str),
        "straggler": options.straggler,
        "rate": float(options.rate) if not options.clients else None,
        "clients": options.clients,
        # the configured deadline; with --deadline-ms auto the median of those the measured queries were given
        "deadline_ms": float(options.deadline_ms) if options.deadline_ms != "auto" else (
            float(measured.deadline_ms.median()) if measured.deadline_ms.notna().any() else None),
        "sent": int(len(frame)),
        "measured": int(len(measured)),
        "direct": int(counts.get("direct", 0)),
        "decoded": int(counts.get("decoded", 0)),
        "failed": int(counts.get("failed", 0)),
        "hedged": int(measured.hedged.sum()),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        **percentile_intervals(latency, options.seed),
        "mean_ms": float(latency.mean()) if len(latency) else None,
        "throughput_qps": float(len(answered) / span) if span and span > 0 else None,
        "offered_qps": float(len(measured) / send_span) if send_span and send_span > 0 else None,
        "accuracy": float(measured.correct.mean()) if len(measured) else None,
        "agreement_with_base": float(measured.agrees_with_base.mean()) if len(measured) else None,
        "decoded_accuracy": float(decoded.correct.mean()) if len(decoded) else None,
        "decoded_agreement_with_base": float(decoded.agrees_with_base.mean()) if len(decoded) else None,
        "frontend_coder_ms": coder_ms,
        "frontend_coder_cpu_ms": coder_cpu_ms,
        "groups_encoded": stats.get("groups"),
        "groups_skipped": stats.get("groups_without_coded_requests"),
        "wall_seconds": wall,
        "versions": json.dumps(library_versions(), sort_keys=True),
        "schema_version": SCHEMA_VERSION,
    }


def format_mode(s: Dict[str, Any]) -> str:
    f = lambda v: "   n/a" if v is None else f"{v:6.1f}"  # noqa: E731
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
    repeat = f"#{s['repeat'] + 1} " if s.get("repeat") else ""
    band = "" if s.get("p999_ms_lo") is None else f" [{s['p999_ms_lo']:.1f}-{s['p999_ms_hi']:.1f}]"
    return (f"{repeat}{s['mode']:<12} p50 {f(s['p50_ms'])}  p99 {f(s['p99_ms'])}  p99.9 {f(s['p999_ms'])}{band} ms  "
            f"{s['throughput_qps'] or 0:6.1f} qps  accuracy {acc}  direct {s['direct']} decoded {s['decoded']} failed {s['failed']}")
