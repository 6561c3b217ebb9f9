"""Service-time models of ``parity-ray sweep``: given by hand, or fitted from a ``parity-ray simulate`` run.

A service model gives, per batch size b, the distribution of a batch's in-flight time T: from
the moment the batch starts on its replica until its answers are back at the frontend (the model
run, the calls there and back). The replica itself is occupied for ``busy_fraction`` x T (its
model run; the rest is the calls, during which it can take the next batch).

By hand (``--service``): ``lognormal:median_ms=3,sigma=0.3``, ``constant:ms=3``,
``exponential:mean_ms=3``, ``gamma:mean_ms=3,cv=0.5``, each with optional ``per_item_ms`` (added per
request beyond the first of a batch, default 0), ``busy_fraction`` (default 1), and the frontend's
coder work: ``encode_ms`` per encoded group and ``decode_ms`` per decode (default 0).

Fitted (``--calibrate EXPERIMENT[:SIMULATION_ID]``): from ``tables/queries/`` of a simulate run,
the direct, unhedged answers of ``none`` / ``replication`` on replicas that no straggler model
names. Queries on one replica answered within ``BATCH_TOLERANCE_S`` of each other formed one
batch; a batch that found its replica idle (nothing of the replica in flight when its first query
was sent) gives ``T = receive - first send - batch wait`` for its size. Sizes with fewer than
``MIN_SAMPLES`` batches borrow the smallest size's samples plus ``per_item_ms`` (the slope of the
median per size, 0 when one size only). ``busy_fraction`` comes from queries that did find their
replica busy: how much of the earlier request's remaining time they waited on top of T. The
frontend's coder work comes from the coded modes' answers (their ``coder_seconds``): the median
encode of a group (direct answers of encoded groups) and the median decode on top of it (decoded
answers); 0 when the run served no coded mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from parity_ray.actors.modes import single_copy_modes
from parity_ray.actors.stragglers import build as build_straggler
from parity_ray.errors import UsageError
from parity_ray.registry import Registry

DISTRIBUTIONS: Registry = Registry("service distribution", "service_distributions", """
    A :class:`ServiceLaw`: ``params`` names the ``key=value`` fields ``--service NAME:...`` must
    give (each > 0), and ``draw(rng, values, n)`` returns service times in milliseconds drawn from
    ``rng`` (a ``numpy.random.Generator``) with ``values`` (params plus ``per_item_ms`` and
    ``busy_fraction``). Registration order is the order ``--help`` and messages list them in.""")


@dataclass(frozen=True)
class ServiceLaw:
    params: Tuple[str, ...]
    draw: Callable[[np.random.Generator, Dict[str, float], int], np.ndarray]


DISTRIBUTIONS.register("lognormal")(ServiceLaw(
    ("median_ms", "sigma"), lambda rng, v, n: rng.lognormal(np.log(v["median_ms"]), v["sigma"], n)))
DISTRIBUTIONS.register("constant")(ServiceLaw(("ms",), lambda rng, v, n: np.full(1, v["ms"])))
DISTRIBUTIONS.register("exponential")(ServiceLaw(("mean_ms",), lambda rng, v, n: rng.exponential(v["mean_ms"], n)))


def _gamma(rng: np.random.Generator, v: Dict[str, float], n: int) -> np.ndarray:
    """By mean and coefficient of variation: shape 1/cv^2, scale mean/shape."""
    shape = 1.0 / v["cv"] ** 2
    return rng.gamma(shape, v["mean_ms"] / shape, n)


DISTRIBUTIONS.register("gamma")(ServiceLaw(("mean_ms", "cv"), _gamma))
COMMON = ("per_item_ms", "busy_fraction", "encode_ms", "decode_ms")
MIN_SAMPLES = 20
BATCH_TOLERANCE_S = 0.0005
SAMPLES = 20000  # draws that stand for a parametric distribution


@dataclass
class ServiceModel:
    """Per batch size, samples (seconds) of a batch's in-flight time; see the module doc."""

    samples: Dict[int, np.ndarray]
    per_item_s: float = 0.0
    busy_fraction: float = 1.0
    source: str = ""
    fitted: Dict[str, Any] = field(default_factory=dict)  # what a fit found (sizes, counts, medians)
    encode_s: float = 0.0  # the frontend's work to encode one group (coded modes)
    decode_s: float = 0.0  # the frontend's work for one decode

    def tables(self) -> Dict[int, np.ndarray]:
        return self.samples

    def describe(self) -> Dict[str, Any]:
        """JSON-able summary: recorded with every sweep row."""
        sizes = {int(b): {"n": int(len(v)), "median_ms": round(float(np.median(v)) * 1e3, 4),
                          "p99_ms": round(float(np.percentile(v, 99)) * 1e3, 4)} for b, v in sorted(self.samples.items())}
        return {"source": self.source, "per_item_ms": round(self.per_item_s * 1e3, 6),
                "busy_fraction": round(self.busy_fraction, 6), "encode_ms": round(self.encode_s * 1e3, 6),
                "decode_ms": round(self.decode_s * 1e3, 6), "sizes": sizes, **self.fitted}


def parse_service(text: str, seed: int = 0) -> ServiceModel:
    """``"lognormal:median_ms=3,sigma=0.3"`` -> a ServiceModel (UsageError when it cannot be read)."""
    kind, _, args = (text or "").strip().partition(":")
    if kind not in DISTRIBUTIONS:
        raise UsageError(f"unknown service distribution '{kind}' in '{text}'; valid choices: {', '.join(DISTRIBUTIONS.in_order())} "
                         f"(e.g. lognormal:median_ms=3,sigma=0.3), or --calibrate EXPERIMENT to fit one")
    law = DISTRIBUTIONS.get(kind)
    values: Dict[str, float] = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in law.params + COMMON:
            raise UsageError(f"service '{text}': '{item}' is not one of {', '.join(k + '=' for k in law.params + COMMON)}")
        try:
            values[key] = float(value)
        except ValueError:
            raise UsageError(f"service '{text}': {key}={value} is not a number") from None
    missing = [k for k in law.params if k not in values]
    if missing:
        raise UsageError(f"service '{text}' needs {', '.join(k + '=' for k in missing)}")
    if any(values[k] <= 0 for k in law.params) or any(values.get(k, 0) < 0 for k in ("per_item_ms", "encode_ms", "decode_ms")):
        raise UsageError(f"service '{text}': every parameter must be > 0 (per_item_ms, encode_ms, decode_ms >= 0)")
    busy = values.get("busy_fraction", 1.0)
    if not 0 < busy <= 1:
        raise UsageError(f"service '{text}': busy_fraction must be in (0, 1]")
    rng = np.random.default_rng([seed, 7])
    draws = law.draw(rng, values, SAMPLES)
    return ServiceModel({1: np.sort(draws) / 1e3}, per_item_s=values.get("per_item_ms", 0.0) / 1e3,
                        busy_fraction=busy, source=text.strip(), encode_s=values.get("encode_ms", 0.0) / 1e3,
                        decode_s=values.get("decode_ms", 0.0) / 1e3)


def coder_costs(queries) -> Tuple[float, float]:
    """``(encode_s, decode_s)``: the frontend's coder work per group encode and per decode, from a
    simulate run's queries (their ``coder_seconds``); 0 where the run has no such answers."""
    from parity_ray.actors.modes import get_mode, list_modes

    if "coder_seconds" not in queries:
        return 0.0, 0.0
    coding = [name for name in list_modes() if get_mode(name).needs_code]
    coded = queries[queries["mode"].isin(coding) & queries.coder_seconds.notna()]
    encoded = coded[(coded.path == "direct") & (coded.coder_seconds > 0)].coder_seconds
    encode = float(encoded.median()) if len(encoded) else 0.0
    decoded = coded[coded.path == "decoded"].coder_seconds
    decode = float(max((decoded - encode).median(), 0.0)) if len(decoded) else 0.0
    return encode, decode


def _spec_replicas(config: Dict[str, Any]):
    """Replicas the run's straggler models name (their batches are left out of the fit); None: every one."""
    named = set()
    for model in config.get("stragglers") or []:
        if model.get("kind") == "none":
            continue
        replica = build_straggler(model).replica  # the spec's, or the model's default (slow, crash: 0)
        if replica is None:
            return None
        named.add(int(replica))
    return named


def calibrate(target: str, batch_wait_ms: Optional[float] = None) -> ServiceModel:
    """Fit a ServiceModel from ``EXPERIMENT[:SIMULATION_ID]`` (default: its latest simulation)."""

    from parity_ray import results

    experiment, _, simulation_id = str(target).rpartition(":") if ":sim-" in str(target) else (str(target), "", "")
    tables = results.load(experiment)
    if tables.queries.empty or tables.simulations.empty:
        raise UsageError(f"'{experiment}' has no simulation to calibrate from; run 'parity-ray simulate' first")
    sims = tables.simulations
    if not simulation_id:
        simulation_id = sorted(sims.simulation_id.unique())[-1]
    elif simulation_id not in set(sims.simulation_id):
        raise UsageError(f"no simulation '{simulation_id}' in '{experiment}'; it has {', '.join(sorted(sims.simulation_id.unique()))}")
    sim = sims[sims.simulation_id == simulation_id]
    config = json.loads(sim.config.iloc[0])
    wait_s = float(config.get("batch_wait_ms", 2.0) if batch_wait_ms is None else batch_wait_ms) / 1000.0
    queries = tables.queries[(tables.queries.simulation_id == simulation_id) & ~tables.queries.warmup]
    single = single_copy_modes()  # one request per query: a query's latency is one service time
    usable = queries[queries["mode"].isin(single)]
    if usable.empty:
        raise UsageError(f"simulation '{simulation_id}' has no {' or '.join(repr(m) for m in single)} queries to fit "
                         f"service times from; simulate with --mode {single[0]} (or {', '.join(single[1:])})")
    named = _spec_replicas(config)
    if named is None:
        raise UsageError(f"simulation '{simulation_id}' slows every replica ({config.get('straggler')}); its service "
                         f"times cannot be told from the straggler's: calibrate from a run with --straggler none")
    flights, busy_ratios = {}, []
    for (_mode, replica), rows in usable.groupby(["mode", "replica"]):
        if not isinstance(replica, str) or not replica.startswith("base:") or int(replica.split(":")[1]) in named:
            continue
        rows = rows.sort_values("receive_s")
        sends, receives = rows.send_s.to_numpy(), rows.receive_s.to_numpy()
        direct = (rows.path.to_numpy() == "direct") & ~rows.hedged.to_numpy()
        batch = np.concatenate([[0], np.cumsum(np.diff(receives) > BATCH_TOLERANCE_S)])
        for b in np.unique(batch):
            members = np.flatnonzero(batch == b)
            if not direct[members].all():
                continue
            first = sends[members].min()
            earlier = receives[: members[0]]
            busy_at_first = earlier[earlier > first]
            flight = receives[members[0]] - first - wait_s
            if len(busy_at_first) == 0:
                flights.setdefault(len(members), []).append(flight)
            elif len(members) == 1 and len(busy_at_first) == 1:
                # queued behind one request: it waited (its latency - a typical T) of that one's remaining time
                busy_ratios.append((flight, busy_at_first[0] - first))
    if not flights or sum(len(v) for v in flights.values()) < MIN_SAMPLES:
        raise UsageError(f"simulation '{simulation_id}' has {sum(len(v) for v in flights.values())} batches that found "
                         f"their replica idle; at least {MIN_SAMPLES} are needed to fit service times (send more --queries)")
    samples = {b: np.sort(np.maximum(np.asarray(v), 1e-5)) for b, v in flights.items() if len(v) >= MIN_SAMPLES}
    if not samples:
        smallest = min(flights)
        samples = {smallest: np.sort(np.maximum(np.asarray(flights[smallest]), 1e-5))}
    sizes = sorted(samples)
    medians = [float(np.median(samples[b])) for b in sizes]
    per_item = float(max(np.polyfit(sizes, medians, 1)[0], 0.0)) if len(sizes) > 1 else 0.0
    base = float(np.median(samples[sizes[0]]))
    busy = 1.0
    if len(busy_ratios) >= MIN_SAMPLES:
        extra = np.array([f - base for f, _ in busy_ratios])
        remaining = np.array([r for _, r in busy_ratios])
        busy = float(np.clip(np.median(extra) / max(np.median(remaining), 1e-6), 0.02, 1.0))
    fitted = {"simulation_id": simulation_id, "experiment": experiment, "queued_pairs": len(busy_ratios),
              "batch_wait_ms": wait_s * 1e3}
    encode_s, decode_s = coder_costs(queries)
    return ServiceModel(samples, per_item_s=per_item, busy_fraction=busy,
                        source=f"calibrated:{experiment}:{simulation_id}", fitted=fitted, encode_s=encode_s, decode_s=decode_s)
