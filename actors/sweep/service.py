"""Service-time models of ``parity-ray sweep``: given by hand, or fitted from a ``parity-ray simulate`` run.

A service model gives, per batch size b, the distribution of a batch's in-flight time T: from
the moment the batch starts on its replica until its answers are back at the frontend (the model
run, the calls there and back). The replica itself is occupied for ``busy_fraction`` x T (its
model run; the rest is the calls, during which it can take the next batch).

By hand (``--service``), drawn afresh for every batch (vectorised in blocks from the cell's
seeded generator, never from a fixed pool, so a tail converges on the law's as queries grow):
``lognormal:median_ms=3,sigma=0.3``, ``constant:ms=3``,
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
replica busy: how much of the earlier request's remaining time they waited on top of T. T leaves
out the client's hops to and from the frontend (each query's own ``latency_ms - frontend_ms``),
which the sweep adds to every answer instead, a decoded one included, drawn from the hops of
those answers (a busy host slows the client's calls as it slows the replicas: on this 2-core
machine the hops' median was 7.1 ms and their p99 27 ms, and a median alone left the slow ones out). The
frontend's coder work comes from the coded modes' answers (their ``coder_seconds``): the median
encode of a group (direct answers of encoded groups) and the median decode on top of it (decoded
answers); 0 when the run served no coded mode.

A fitted model draws from the measured times up to a high quantile (``TAIL_QUANTILE``) and, above
it, from a tail model (``--service-tail``, a registry): ``gpd`` (default) fits a generalized Pareto
distribution to the exceedances over that threshold, which is what any service-time law's tail
tends to above a high threshold (Pickands-Balkema-de Haan), so draws can exceed the largest
measured time as often as the fitted tail says; ``empirical`` keeps the bootstrap of the measured
times (no draw beyond the largest one). The fit and its quality (a Kolmogorov-Smirnov distance of
the exceedances against the fitted tail; the same distance for a lognormal fitted to the whole
sample, for comparison) are recorded with every sweep.
"""

from __future__ import annotations

import itertools
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
DISTRIBUTIONS.register("constant")(ServiceLaw(("ms",), lambda rng, v, n: np.full(n, v["ms"])))
DISTRIBUTIONS.register("exponential")(ServiceLaw(("mean_ms",), lambda rng, v, n: rng.exponential(v["mean_ms"], n)))


def _gamma(rng: np.random.Generator, v: Dict[str, float], n: int) -> np.ndarray:
    """By mean and coefficient of variation: shape 1/cv^2, scale mean/shape."""
    shape = 1.0 / v["cv"] ** 2
    return rng.gamma(shape, v["mean_ms"] / shape, n)


DISTRIBUTIONS.register("gamma")(ServiceLaw(("mean_ms", "cv"), _gamma))
COMMON = ("per_item_ms", "busy_fraction", "encode_ms", "decode_ms", "hop_ms")
MIN_SAMPLES = 20
BATCH_TOLERANCE_S = 0.0005
SAMPLES = 20000  # reference draws of a parametric law: its summary (median, p99) only; the sweep draws afresh
BLOCK = 65536  # draws made at once
TAIL_QUANTILE = 0.95  # a fitted tail model takes over above this quantile of the measured times
MIN_EXCEEDANCES = 30  # fewer measured times above the threshold: no tail fit for that batch size (bootstrap)

SERVICE_TAILS: Registry = Registry("service tail", "service_tails", """
    How ``--calibrate`` models the measured times above ``TAIL_QUANTILE``: a function
    ``fit(times_s: sorted np.ndarray) -> dict or None`` whose dict holds ``kind`` plus what
    :class:`ServiceDraws` needs to draw above the threshold (``gpd``: ``shape``, ``scale``); None
    keeps the measured times alone (a bootstrap). Also records the fit's quality.""")


@SERVICE_TAILS.register("gpd")
def fit_gpd_tail(times: np.ndarray) -> Optional[Dict[str, Any]]:
    """A generalized Pareto fitted (maximum likelihood, location 0) to the exceedances over the
    ``TAIL_QUANTILE`` quantile; its KS distance against them, and a whole-sample lognormal's for comparison."""
    from scipy import stats

    threshold = float(np.quantile(times, TAIL_QUANTILE))
    exceed = times[times > threshold] - threshold
    if len(exceed) < MIN_EXCEEDANCES:
        return None
    shape, _loc, scale = stats.genpareto.fit(exceed, floc=0.0)
    shape = float(min(shape, 0.9))  # a finite mean: a shape at or past 1 is a fit to too few points, not a law
    ks = float(stats.kstest(exceed, "genpareto", args=(shape, 0.0, scale)).statistic)
    sigma, _, median = stats.lognorm.fit(times, floc=0.0)
    ks_lognormal = float(stats.kstest(times, "lognorm", args=(sigma, 0.0, median)).statistic)
    beyond = (1 - TAIL_QUANTILE) * float(stats.genpareto.sf(times[-1] - threshold, shape, 0.0, scale))
    ranks = (np.arange(len(exceed)) + 0.5) / len(exceed)  # Q-Q: each measured exceedance against the fit's quantile
    model = stats.genpareto.ppf(ranks, shape, 0.0, scale)
    picks = np.unique(np.linspace(0, len(exceed) - 1, min(len(exceed), 40)).astype(int))
    qq = [[round((threshold + float(np.sort(exceed)[i])) * 1e3, 4), round((threshold + float(model[i])) * 1e3, 4)] for i in picks]
    return {"kind": "gpd", "quantile": TAIL_QUANTILE, "threshold_ms": threshold * 1e3, "shape": shape,
            "scale_ms": float(scale) * 1e3, "exceedances": int(len(exceed)), "ks": ks, "ks_lognormal_whole": ks_lognormal,
            "max_measured_ms": float(times[-1]) * 1e3, "share_beyond_max": beyond,
            "p9999_ms": float(_gpd_quantile(0.9999, threshold, shape, scale)) * 1e3, "qq_ms": qq}


@SERVICE_TAILS.register("empirical")
def keep_measured_tail(times: np.ndarray) -> Optional[Dict[str, Any]]:
    """The measured times alone: a bootstrap, no draw past the largest one (for comparison)."""
    return None


def _gpd_quantile(u, threshold: float, shape: float, scale: float):
    """The fitted model's quantile ``u`` (>= TAIL_QUANTILE): the threshold plus the tail's conditional quantile."""
    p = (np.asarray(u) - TAIL_QUANTILE) / (1 - TAIL_QUANTILE)
    if abs(shape) < 1e-9:
        return threshold - scale * np.log1p(-p)
    return threshold + scale * ((1 - p) ** (-shape) - 1) / shape


class ServiceDraws:
    """In-flight times (seconds) per batch size from a ServiceModel, drawn in blocks from ``rng``."""

    def __init__(self, service: "ServiceModel", rng: np.random.Generator):
        self.service, self.rng = service, rng
        self.per_item_s = float(service.per_item_s)
        self.smallest = min(service.samples)
        self.buffers: Dict[int, np.ndarray] = {}
        self.at: Dict[int, int] = {}

    def draw(self, size: int) -> float:
        key = size if size in self.service.samples else self.smallest
        at = self.at.get(key, BLOCK)
        if at >= BLOCK:
            self.buffers[key], at = self._block(key), 0
        self.at[key] = at + 1
        value = float(self.buffers[key][at])
        return value + self.per_item_s * (size - key) if key != size else value

    def _block(self, size: int) -> np.ndarray:
        service = self.service
        if service.law is not None:  # a parametric law: fresh draws
            return DISTRIBUTIONS.get(service.law).draw(self.rng, service.values, BLOCK) / 1e3
        table = service.samples[size]
        u = self.rng.random(BLOCK)
        tail = service.tails.get(size)
        if tail is None:
            return table[(u * len(table)).astype(np.int64)]
        q = tail["quantile"]
        body = table[table <= tail["threshold_ms"] / 1e3]
        out = body[np.minimum((u / q * len(body)).astype(np.int64), len(body) - 1)]
        above = u >= q
        out[above] = _gpd_quantile(u[above], tail["threshold_ms"] / 1e3, tail["shape"], tail["scale_ms"] / 1e3)
        return out


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
    hop_s: float = 0.0  # the client's hops to and from the frontend: added to every answer (fitted: their median; by hand hop_ms)
    hops: Optional[np.ndarray] = None  # fitted: every measured query's hops (seconds), drawn afresh for each answer
    law: Optional[str] = None  # a parametric law (by hand): drawn afresh; ``samples`` is then a reference only
    values: Dict[str, float] = field(default_factory=dict)  # the law's parameters (milliseconds)
    tails: Dict[int, Dict[str, Any]] = field(default_factory=dict)  # fitted: per batch size, the tail model above the threshold

    def draws(self, rng: np.random.Generator) -> ServiceDraws:
        """A seeded stream of in-flight times per batch size (what each simulated replica draws from)."""
        return ServiceDraws(self, rng)

    def hop_draws(self, rng: np.random.Generator):
        """A seeded stream of the client's hops (seconds), one per answer: the measured hops when fitted
        (their tail is the host's: a busy machine slows the client's calls as it slows the replicas), else ``hop_s``."""
        if self.hops is None or not len(self.hops):
            return itertools.repeat(float(self.hop_s))
        hops = self.hops

        def stream():
            while True:
                yield from hops[rng.integers(0, len(hops), size=BLOCK)].tolist()
        return stream()

    def tables(self) -> Dict[int, np.ndarray]:
        return self.samples

    def describe(self) -> Dict[str, Any]:
        """JSON-able summary: recorded with every sweep row."""
        sizes = {int(b): {"n": int(len(v)), "median_ms": round(float(np.median(v)) * 1e3, 4),
                          "p99_ms": round(float(np.percentile(v, 99)) * 1e3, 4)} for b, v in sorted(self.samples.items())}
        return {"source": self.source, "per_item_ms": round(self.per_item_s * 1e3, 6),
                "busy_fraction": round(self.busy_fraction, 6), "encode_ms": round(self.encode_s * 1e3, 6),
                "decode_ms": round(self.decode_s * 1e3, 6), "hop_ms": round(self.hop_s * 1e3, 6), "sizes": sizes, "fresh_draws": self.law is not None,
                **({} if self.hops is None else {"hop_p99_ms": round(float(np.percentile(self.hops, 99)) * 1e3, 4), "hops": int(len(self.hops))}),
                "tails": {int(b): t for b, t in sorted(self.tails.items())}, **self.fitted}


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
    if any(values[k] <= 0 for k in law.params) or any(values.get(k, 0) < 0 for k in ("per_item_ms", "encode_ms", "decode_ms", "hop_ms")):
        raise UsageError(f"service '{text}': every parameter must be > 0 (per_item_ms, encode_ms, decode_ms, hop_ms >= 0)")
    busy = values.get("busy_fraction", 1.0)
    if not 0 < busy <= 1:
        raise UsageError(f"service '{text}': busy_fraction must be in (0, 1]")
    rng = np.random.default_rng([seed, 7])
    draws = law.draw(rng, values, SAMPLES)
    return ServiceModel({1: np.sort(draws) / 1e3}, per_item_s=values.get("per_item_ms", 0.0) / 1e3, law=kind,
                        values={k: v for k, v in values.items() if k in law.params},
                        busy_fraction=busy, source=text.strip(), encode_s=values.get("encode_ms", 0.0) / 1e3,
                        decode_s=values.get("decode_ms", 0.0) / 1e3, hop_s=values.get("hop_ms", 0.0) / 1e3)


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


def calibrate(target: str, batch_wait_ms: Optional[float] = None, tail: str = "gpd") -> ServiceModel:
    """Fit a ServiceModel from ``EXPERIMENT[:SIMULATION_ID]`` (default: its latest simulation), with
    the ``tail`` model (:data:`SERVICE_TAILS`) above the high quantile of each batch size's times."""
    fit_tail = SERVICE_TAILS.get(tail)

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
    # the client's hops to and from the frontend, per query where the frontend timed it: in every measured T, outside the replicas
    usable = usable.assign(hop_s=((usable.latency_ms - usable.frontend_ms) / 1000.0).clip(lower=0.0)
                           if "frontend_ms" in usable else np.nan)
    timed = usable.hop_s[(usable.path == "direct") & usable.hop_s.notna()]
    hops = np.sort(timed.to_numpy(float)) if len(timed) else None
    hop = float(np.median(hops)) if hops is not None else 0.0
    named = _spec_replicas(config)
    if named is None:
        raise UsageError(f"simulation '{simulation_id}' slows every replica ({config.get('straggler')}); its service "
                         f"times cannot be told from the straggler's: calibrate from a run with --straggler none")
    flights, busy_ratios = {}, []
    # each repetition of a simulate --repeat run keeps its own clock: its batches are found on their own
    by_run = ["mode", "repeat", "replica"] if "repeat" in usable else ["mode", "replica"]
    for key, rows in usable.groupby(by_run):
        replica = key[-1]
        if not isinstance(replica, str) or not replica.startswith("base:") or int(replica.split(":")[1]) in named:
            continue
        rows = rows.sort_values("receive_s")
        sends, receives = rows.send_s.to_numpy(), rows.receive_s.to_numpy()
        hop_of = rows.hop_s.fillna(hop).to_numpy(float)  # a slow hop is the client's, not the replica's
        direct = (rows.path.to_numpy() == "direct") & ~rows.hedged.to_numpy()
        batch = np.concatenate([[0], np.cumsum(np.diff(receives) > BATCH_TOLERANCE_S)])
        for b in np.unique(batch):
            members = np.flatnonzero(batch == b)
            if not direct[members].all():
                continue
            first = sends[members].min()
            earlier = receives[: members[0]]
            busy_at_first = earlier[earlier > first]
            flight = receives[members[0]] - first - wait_s - hop_of[members[np.argmin(sends[members])]]
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
              "batch_wait_ms": wait_s * 1e3}  # hop_ms: describe() reports it
    encode_s, decode_s = coder_costs(queries)
    fitted["service_tail"] = tail
    tails = {b: fit for b, fit in ((b, fit_tail(times)) for b, times in samples.items()) if fit is not None}
    return ServiceModel(samples, per_item_s=per_item, busy_fraction=busy, source=f"calibrated:{experiment}:{simulation_id}",
                        fitted=fitted, encode_s=encode_s, decode_s=decode_s, tails=tails, hop_s=hop, hops=hops)
