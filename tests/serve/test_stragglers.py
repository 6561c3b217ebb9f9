"""Straggler and fault models: parsing, validation, seeded replay, per-replica targeting."""

from __future__ import annotations

import numpy as np
import pytest

from parity_ray.actors.stragglers import StragglerState, build, list_stragglers, parse_spec
from parity_ray import UsageError


def test_parse_composes_models():
    models = parse_spec("slow:replica=0,p=0.3,delay_ms=100+lognormal:median_ms=2,sigma=0.5")
    assert models == [{"kind": "slow", "replica": 0, "p": 0.3, "delay_ms": 100},
                      {"kind": "lognormal", "median_ms": 2, "sigma": 0.5}]
    assert parse_spec("none") == []


@pytest.mark.parametrize("kind", list_stragglers())
def test_every_model_builds_with_defaults_and_draws_non_negative_delays(kind):
    model = build({"kind": kind})
    rng = np.random.default_rng(0)
    delays = [model.delay(rng, 0.001, t * 0.1, 0, 3) for t in range(200)]
    assert all(d >= 0 for d in delays)


def test_slow_replica_hits_only_its_replica_at_its_rate():
    spec = parse_spec("slow:replica=1,p=0.3,delay_ms=100")
    slow, other = StragglerState(spec, 1, 3, seed=7), StragglerState(spec, 0, 3, seed=7)
    delays = np.array([slow.extra_delay(0.001) for _ in range(4000)])
    assert abs((delays > 0).mean() - 0.3) < 0.03 and np.allclose(delays[delays > 0], 0.1)
    assert all(other.extra_delay(0.001) == 0 for _ in range(100))


def test_same_seed_replays_exactly():
    spec = parse_spec("random:p=0.2,delay_ms=5+pareto:alpha=1.2,scale_ms=1")
    a, b = StragglerState(spec, 2, 4, seed=3), StragglerState(spec, 2, 4, seed=3)
    assert [a.extra_delay(0.001) for _ in range(100)] == [b.extra_delay(0.001) for _ in range(100)]


def test_bursts_move_between_replicas():
    model = build({"kind": "bursts", "period_s": 1.0, "delay_ms": 50})
    rng = np.random.default_rng(0)
    burdened = [[r for r in range(3) if model.delay(rng, 0, t + 0.5, r, 3) > 0] for t in range(6)]
    assert burdened == [[0], [1], [2], [0], [1], [2]]


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ("slowish:p=0.1", "unknown straggler model 'slowish'"),
        ("slow:replica", "expected key=value"),
        ("slow:p=lots", "is not a number"),
        ("slow:speed=3", "valid keys"),
        ("random:p=1.5", "p must be in [0, 1]"),
    ],
)
def test_malformed_specs_are_usage_errors(spec, fragment):
    with pytest.raises(UsageError) as err:
        parse_spec(spec)
    assert fragment in str(err.value)
