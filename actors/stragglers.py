"""Straggler and fault models for serving replicas (a registry), composable and seeded.

A spec string names one or more models joined by ``+``; each is ``kind:key=value,...``::

    slow:replica=0,p=0.3,delay_ms=100          # replica 0 is slowed on 30% of requests by 100 ms
    random:p=0.05,multiplier=4                 # any replica, 5% of requests take 4x as long
    lognormal:median_ms=2,sigma=1              # heavy-tailed extra service time on every request
    pareto:alpha=1.5,scale_ms=1                # heavier still
    bursts:period_s=2,delay_ms=50              # background load moving from replica to replica
    crash:replica=1,after=200                  # replica 1 dies after 200 requests (Serve restarts it)

Each replica receives the whole spec through Serve's ``user_config`` (so it can be changed
without redeploying) plus its own index; models that name a replica apply to that replica only.
Random draws come from ``numpy.random.Generator(seed, replica)``, so a run replays exactly.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from parity_ray.errors import UsageError, choices_hint
from parity_ray.registry import Registry

STRAGGLERS: Registry = Registry("straggler model", "stragglers", """
    A :class:`StragglerModel` subclass built with its spec's ``key=value`` fields as keyword
    arguments (numbers parsed); per request, ``delay(rng, service_s, now, replica, n_replicas)``
    returns the extra seconds the replica waits and ``crash(request_count, rng)`` whether it dies.
    ``replica`` (None = every replica) names the replica it acts on.""")
register_straggler = STRAGGLERS.register


def list_stragglers() -> List[str]:
    return STRAGGLERS.names()


class StragglerModel:
    """Decides, per request, the extra delay (seconds) a replica adds, or whether it crashes."""

    replica: Optional[int] = None  # None = every replica

    def applies_to(self, replica: int) -> bool:
        return self.replica is None or self.replica == replica

    def delay(self, rng: np.random.Generator, service_s: float, now: float, replica: int, n_replicas: int) -> float:
        return 0.0

    def crash(self, request_count: int, rng: np.random.Generator) -> bool:
        return False


@register_straggler("none")
class NoStragglers(StragglerModel):
    pass


@register_straggler("slow")
@dataclass
class SlowReplica(StragglerModel):
    replica: Optional[int] = 0
    p: float = 1.0
    delay_ms: float = 100.0
    multiplier: float = 1.0

    def delay(self, rng, service_s, now, replica, n_replicas):
        if rng.random() >= self.p:
            return 0.0
        return self.delay_ms / 1000.0 + service_s * (self.multiplier - 1.0)


@register_straggler("random")
@dataclass
class RandomSlowdown(SlowReplica):
    replica: Optional[int] = None
    p: float = 0.05


@register_straggler("lognormal")
@dataclass
class LognormalService(StragglerModel):
    median_ms: float = 2.0
    sigma: float = 1.0
    replica: Optional[int] = None

    def delay(self, rng, service_s, now, replica, n_replicas):
        return float(rng.lognormal(np.log(self.median_ms / 1000.0), self.sigma))


@register_straggler("pareto")
@dataclass
class ParetoService(StragglerModel):
    alpha: float = 1.5
    scale_ms: float = 1.0
    replica: Optional[int] = None

    def delay(self, rng, service_s, now, replica, n_replicas):
        return float((rng.pareto(self.alpha) + 1.0) * self.scale_ms / 1000.0 - self.scale_ms / 1000.0)


@register_straggler("bursts")
@dataclass
class MovingBursts(StragglerModel):
    """Background load (the published shuffle traffic, simulated) that moves on every ``period_s``:
    one replica at a time, or with ``one_in`` one replica in every ``one_in`` at once (the same share
    burdened at any cluster size)."""

    period_s: float = 2.0
    delay_ms: float = 50.0
    p: float = 1.0
    one_in: Optional[int] = None
    replica: Optional[int] = None

    def delay(self, rng, service_s, now, replica, n_replicas):
        group = max(int(self.one_in or n_replicas), 1)
        burdened = int(now // self.period_s) % group
        return self.delay_ms / 1000.0 if replica % group == burdened and rng.random() < self.p else 0.0


@register_straggler("crash")
@dataclass
class Crash(StragglerModel):
    """The replica process dies (``os._exit``) after ``after`` requests, or with probability ``p`` each."""

    replica: Optional[int] = 0
    after: int = 0
    p: float = 0.0

    def crash(self, request_count, rng):
        return (self.after and request_count >= self.after) or (self.p > 0 and rng.random() < self.p)


def parse_spec(text: str) -> List[Dict[str, Any]]:
    """``"slow:replica=0,p=0.3+crash:replica=1"`` -> ``[{"kind": "slow", ...}, {"kind": "crash", ...}]``."""
    if not text or text.strip() == "none":
        return []
    models = []
    for part in text.split("+"):
        kind, _, args = part.strip().partition(":")
        if kind not in STRAGGLERS:
            raise UsageError(f"unknown straggler model '{kind}' in '{text}'; {choices_hint(kind, list_stragglers())}")
        entry: Dict[str, Any] = {"kind": kind}
        for item in filter(None, (a.strip() for a in args.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"straggler spec '{part}' has '{item}'; expected key=value (e.g. slow:replica=0,p=0.3,delay_ms=100)")
            try:
                entry[key.strip()] = float(value) if "." in value or "e" in value.lower() else int(value)
            except ValueError:
                raise UsageError(f"straggler spec '{part}': {key}={value} is not a number") from None
        build(entry)  # validates the keys now, on the driver, before anything is deployed
        models.append(entry)
    return models


def build(entry: Dict[str, Any]) -> StragglerModel:
    kwargs = {k: v for k, v in entry.items() if k != "kind"}
    cls = STRAGGLERS.get(entry["kind"])
    try:
        model = cls(**kwargs)
    except TypeError:
        fields = sorted(getattr(cls, "__dataclass_fields__", {}))
        raise UsageError(
            f"straggler model '{entry['kind']}' does not take {sorted(kwargs)}; valid keys: {', '.join(fields) or 'none'}"
        ) from None
    for key in ("p",):
        if hasattr(model, key) and not 0.0 <= getattr(model, key) <= 1.0:
            raise UsageError(f"straggler model '{entry['kind']}': {key} must be in [0, 1]")
    return model


class StragglerState:
    """The composed models of one replica, with its seeded generator and request count.

    A Serve replica (``actors.replica``) keeps the wall clock; the discrete-event model of
    ``parity-ray sweep`` passes its simulated time as ``now`` and asks :meth:`should_crash`.
    """

    def __init__(self, models: List[Dict[str, Any]], replica: int, n_replicas: int, seed: int):
        self.models = [m for m in (build(e) for e in models) if m.applies_to(replica)]
        self.replica, self.n_replicas = replica, n_replicas
        self.rng = np.random.default_rng([seed, replica])
        self.requests = 0
        self.started = time.monotonic()

    def should_crash(self) -> bool:
        """Count one request; whether the replica dies on it."""
        self.requests += 1
        return any(model.crash(self.requests, self.rng) for model in self.models)

    def before_request(self) -> None:
        if self.should_crash():
            os._exit(17)  # a hard crash: the process dies, Serve's controller restarts the replica

    def extra_delay(self, service_s: float, now: Optional[float] = None) -> float:
        """One batch's extra delay (seconds); ``now``: seconds since the replica started (default: the wall clock)."""
        if now is None:
            now = time.monotonic() - self.started
        return sum(m.delay(self.rng, service_s, now, self.replica, self.n_replicas) for m in self.models)
