"""The sweep against queueing theory: closed forms where they exist, an independent simulation
(``ciw``) where they do not. Every bound is the sweep's own 95% interval over its replications
(``--replications``), never a tolerance picked by hand; the seeds are fixed, so each test gives the
same verdict every run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from parity_ray.actors.sweep import SweepOptions, run_sweep
from parity_ray.intervals import t_interval
from tests.serve.test_sweep import _synthetic_experiment


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder, _ = _synthetic_experiment(tmp_path_factory.mktemp("queueing") / "exp")
    return folder


def _sweep(experiment, service, rate, queries, mode="none", k=1, r=1, replications=5, warmup=2000):
    """One cell: ``mode`` at ``rate`` qps, batch 1, no batch window; its row."""
    options = SweepOptions(experiment=experiment, run=None, modes=[mode], rates=[rate], ks=[k], rs=[r],
                           queries=queries, warmup=warmup, service=service, max_batch_size=1, batch_wait_ms=0.0,
                           replications=replications, timeout_s=1e6, workers=0, progress=False)
    return run_sweep(options, log=lambda _m: None)["rows"][0]


def _outside(row, figure, truth):
    """None when the sweep's 95% interval of ``figure`` holds ``truth``; else what is wrong, in one line."""
    lo, hi = row[f"{figure}_lo"], row[f"{figure}_hi"]
    return None if lo <= truth <= hi else f"{figure}: theory {truth:.3f} ms outside the sweep's 95% interval [{lo:.3f}, {hi:.3f}]"


@pytest.mark.parametrize("rate", [50.0, 80.0])
def test_mm1_sojourn_quantiles_match_the_closed_form(experiment, rate):
    # M/M/1 with mean service 10 ms: the sojourn time is exponential with rate mu - lambda
    row = _sweep(experiment, "exponential:mean_ms=10", rate, queries=250_000)
    misses = [_outside(row, figure, -math.log(1 - q) / (100.0 - rate) * 1000.0)
              for figure, q in (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999))]
    assert not any(misses), misses


def _mean_interval(row):
    means = [r["mean_ms"] for r in json.loads(row["replicates"])]
    return t_interval(means)


@pytest.mark.parametrize("service,first,second", [
    ("constant:ms=10", 10.0, 100.0),  # M/D/1
    ("lognormal:median_ms=8,sigma=0.5", 8 * math.exp(0.125), 64 * math.exp(0.5)),  # M/G/1
    ("gamma:mean_ms=10,cv=1.5", 10.0, 100.0 * (1 + 1.5 ** 2)),
])
def test_mean_sojourn_matches_pollaczek_khinchine(experiment, service, first, second):
    rate = 60.0  # queries/s
    rho = rate * first / 1000.0
    theory = first + (rate / 1000.0) * second / (2 * (1 - rho))  # E[T] = E[S] + lambda E[S^2] / (2 (1 - rho)), in ms
    lo, hi = _mean_interval(_sweep(experiment, service, rate, queries=150_000))
    assert lo <= theory <= hi, f"P-K mean {theory:.3f} ms outside the sweep's 95% interval [{lo:.3f}, {hi:.3f}]"


def _ciw_mean_sojourns(rate_per_s, mean_service_s, servers, customers, replications):
    """Mean sojourn (ms) per replication of the same network in ciw: Poisson arrivals routed to the
    server with the fewest requests in it (ties in order), exponential service, one at a time."""
    ciw = pytest.importorskip("ciw")

    class FewestInSystem(ciw.routing.JoinShortestQueue):
        def get_queue_size(self, node_index):  # what the frontend counts: requests in flight, not only waiting
            return self.simulation.nodes[node_index].number_of_individuals

    means = []
    for seed in range(replications):
        ciw.seed(seed)
        network = ciw.create_network(
            arrival_distributions=[ciw.dists.Exponential(rate_per_s)] + [None] * servers,
            service_distributions=[ciw.dists.Deterministic(0.0)] + [ciw.dists.Exponential(1 / mean_service_s)] * servers,
            number_of_servers=[float("inf")] + [1] * servers,
            routing=ciw.routing.NetworkRouting(
                routers=[FewestInSystem(destinations=list(range(2, servers + 2)), tie_break="order")]
                + [ciw.routing.Leave()] * servers))
        sim = ciw.Simulation(network)
        sim.simulate_until_max_customers(customers, method="Finish")
        records = [r for r in sim.get_all_records() if r.node > 1]
        records.sort(key=lambda r: r.arrival_date)
        warm = customers // 10
        means.append(np.mean([r.exit_date - r.arrival_date for r in records[warm:]]) * 1000.0)
    return means


def test_replicas_behind_the_frontend_match_an_independent_simulation(experiment):
    # replication at k = 2, r = 1: three base replicas behind the frontend's fewest-in-flight routing, rho = 0.8
    row = _sweep(experiment, "exponential:mean_ms=10", 240.0, queries=100_000, mode="replication", k=2, r=1)
    ours = _mean_interval(row)
    theirs = t_interval(_ciw_mean_sojourns(240.0, 0.010, 3, 12_000, 5))
    assert ours[0] <= theirs[1] and theirs[0] <= ours[1], f"sweep {ours} and ciw {theirs} do not overlap"


def _lindley_p99(median_ms, sigma, rate, customers, seed):
    """M/G/1 sojourn p99 (ms) by the Lindley recursion over fresh lognormal draws: an independent reference."""
    rng = np.random.default_rng(seed)
    service = rng.lognormal(math.log(median_ms), sigma, customers)
    gaps = rng.exponential(1000.0 / rate, customers)
    wait, sojourn = 0.0, np.empty(customers)
    for i in range(customers):
        sojourn[i] = wait + service[i]
        wait = max(0.0, sojourn[i] - gaps[i])
    return float(np.percentile(sojourn[customers // 20:], 99))


def test_a_heavy_tailed_p99_converges_on_the_laws(experiment):
    """Fresh draws: as queries grow the interval narrows around the law's own p99 (a fixed pool of
    draws would converge on the pool's tail instead)."""
    service, rate = "lognormal:median_ms=5,sigma=1", 40.0
    reference = _lindley_p99(5.0, 1.0, rate, 2_000_000, seed=11)
    small = _sweep(experiment, service, rate, queries=40_000, warmup=500)
    large = _sweep(experiment, service, rate, queries=400_000, warmup=500)
    width = {name: row["p99_ms_hi"] - row["p99_ms_lo"] for name, row in (("small", small), ("large", large))}
    assert width["large"] < width["small"] / 2
    assert _outside(large, "p99_ms", reference) is None
