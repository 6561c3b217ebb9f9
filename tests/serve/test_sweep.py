"""``parity-ray sweep``: the queue model against closed forms, calibration, bad input, and the
validation against a real Ray Serve run on this machine."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from parity_ray.actors.modes import get_mode, pick_replica, presented_modes
from parity_ray.actors.sweep import SweepOptions, _layout, run_sweep, send_times
from parity_ray.actors.sweep.engine import Shard
from parity_ray.actors.sweep.service import calibrate, parse_service
from parity_ray import results
from parity_ray.errors import UsageError
from tests.cli.runner import assert_usage_error, cli
from tests.conftest import experiment_copy


def _shard(mode, service, k=1, r=1, stragglers=(), max_batch=1, batch_wait_s=0.0, busy=1.0, **options):
    return Shard(mode, _layout(k, r), True, {"deadline_ms": 50, "timeout_s": 1e6, **options}, parse_service(service),
                 list(stragglers), 0, k + r, 0, max_batch, batch_wait_s, busy, 3.0)


# --------------------------------------------------------------------------- a real queue


def test_mm1_mean_sojourn_time():
    # one replica, exponential service of mean 10 ms, Poisson 50 qps: rho = 0.5, E[T] = 1 / (mu - lambda) = 20 ms
    result = _shard("none", "exponential:mean_ms=10").run(send_times(60000, 50.0, 1))
    sojourn = (result.answer - result.send)[2000:]
    assert sojourn.mean() * 1000 == pytest.approx(20.0, rel=0.05)


def test_md1_mean_wait_and_batching():
    # M/D/1 at rho = 0.5: Wq = rho * D / (2 (1 - rho)) = 5 ms for D = 10 ms
    result = _shard("none", "constant:ms=10").run(send_times(60000, 50.0, 2))
    wait = (result.answer - result.send)[2000:] * 1000 - 10.0
    assert wait.mean() == pytest.approx(5.0, rel=0.05)
    # batching: at 300 qps a 10 ms batch of up to 16 keeps up (one request at a time could not)
    batched = _shard("none", "constant:ms=10", max_batch=16, batch_wait_s=0.002).run(send_times(20000, 300.0, 3))
    assert np.percentile((batched.answer - batched.send) * 1000, 99) < 40


def test_modes_share_the_frontend_rules():
    assert pick_replica([2, 0, 0], turn=0) == 1 and pick_replica([2, 0, 0], turn=2) == 2  # fewest, ties in turn
    assert pick_replica([0, 0], turn=0, exclude=(0,)) == 1 and pick_replica([0], 0, exclude=(0,)) == -1
    timings = get_mode("coded-hedged").timings({"deadline_ms": 40, "timeout_s": 5})
    assert timings == {"deadline_s": 0.04, "timeout_s": 5.0, "group_wait_s": 0.02, "hedge_s": 0.08}
    # the pools of a sweep's app are the Serve app's
    shard = _shard("coded", "constant:ms=1", k=4, r=1)
    assert {pool: len(r) for pool, r in shard.replicas.items()} == {"base": 4, "coded": 1}


def test_copies_send_each_coded_query_to_a_replica_of_its_own_worker():
    """With --copies c the coded pool holds c replicas of each coded worker (replica i runs worker
    i % r): coded query j goes to the least loaded replica of worker j, and to no other worker's."""
    from parity_ray.actors.codes import CodeLayout
    from parity_ray.actors.modes import BASE, Routing, coded_worker, deployed_pools

    layout = CodeLayout(k=2, r=2, systematic=True, num_coded=2)
    pools = deployed_pools("coded", layout, True, copies=3)
    assert pools == {"base": [BASE] * 6, "coded": [coded_worker(0), coded_worker(1)] * 3}
    routing = Routing({pool: len(workers) for pool, workers in pools.items()})
    routing.outstanding["coded"] = [3, 4, 1, 5, 2, 0]
    assert routing.pick_worker("coded", 0, 2) == 2 and routing.pick_worker("coded", 1, 2) == 5
    picks = {routing.pick_worker("coded", 1, 2) for _ in range(6)}
    assert picks <= {1, 3, 5} and pools["coded"][routing.pick_worker("coded", 0, 2)] == coded_worker(0)
    assert Routing({"coded": 2}).pick_worker("coded", 1, 2) == 1  # one copy: worker j is replica j
    with pytest.raises(UsageError, match="--copies must be an integer >= 1"):
        deployed_pools("coded", layout, True, copies=0)


def test_coded_covers_a_slow_replica_and_hedged_duplicates():
    slow = [{"kind": "slow", "replica": 0, "p": 1.0, "delay_ms": 200}]
    sends = send_times(3000, 20.0, 4)
    lat = {}
    for mode in ("none", "coded", "hedged"):
        res = _shard(mode, "constant:ms=5", k=2, stragglers=slow, max_batch=16, batch_wait_s=0.002).run(sends)
        lat[mode] = np.percentile((res.answer - res.send)[200:] * 1000, 99)
        if mode == "coded":
            assert (res.path == 1).any() and not (res.path == 2).any()
        if mode == "hedged":
            assert res.hedged.any()
    assert lat["coded"] < 60 < 200 < lat["none"]  # decoded after the 50 ms deadline
    assert lat["hedged"] < 70


def test_coded_eager_answers_a_straggler_as_early_as_the_code_allows():
    """The paper's policy: coded queries leave with a group's k-th query and the first of a query's own
    and decoded output answers it, so a slow replica's queries come back long before coded's deadline,
    at the price of a coded request for every full group (coded spares groups answered in time)."""
    slow = [{"kind": "slow", "replica": 0, "p": 1.0, "delay_ms": 200}]
    sends = send_times(3000, 20.0, 4)
    runs = {mode: _shard(mode, "constant:ms=5", k=2, stragglers=slow, max_batch=16, batch_wait_s=0.002).run(sends)
            for mode in ("coded", "coded-eager")}
    p99 = {m: np.percentile((r.answer - r.send)[200:] * 1000, 99) for m, r in runs.items()}
    # at 20 qps a straggler's partner is often not there yet: its decode waits at most the 25 ms seal of a partial
    # group, then the parity worker's 5 ms (plus 2 ms batch wait); coded's waits out its 50 ms deadline
    assert p99["coded-eager"] <= 25 + 5 + 2 + 1 < 50 < p99["coded"]
    assert (runs["coded-eager"].path == 1).any() and not (runs["coded-eager"].path == 2).any()
    quiet = {m: _shard(m, "constant:ms=5", k=2).run(sends) for m in ("coded", "coded-eager")}
    assert quiet["coded-eager"].groups_skipped < quiet["coded"].groups_skipped  # eager encodes every full group
    assert get_mode("coded-eager").timings({"deadline_ms": 40})["group_wait_s"] == 0.02  # a partial group's seal


def test_the_frontends_coder_work_holds_its_event_loop():
    """Encoding is charged on the frontend's clock: while it encodes, replies and arrivals wait, as on
    one event loop. 8 ms an encode at 100 groups/s keeps the frontend 80% busy: latencies grow by a
    queue's worth, not by a fixed 8 ms, and a free coder changes nothing."""
    sends = send_times(4000, 200.0, 6)
    eager = lambda service: _shard("coded-eager", service, k=2, max_batch=16, batch_wait_s=0.002).run(sends)  # noqa: E731
    free, costly = eager("constant:ms=5"), eager("constant:ms=5,encode_ms=8")
    p50 = {name: np.percentile((r.answer - r.send)[200:] * 1000, 50) for name, r in (("free", free), ("costly", costly))}
    assert p50["free"] == pytest.approx(5 + 2, abs=1.0)  # the service time plus the batch window
    assert p50["costly"] > p50["free"] + 4.0
    assert min(free.groups_encoded, costly.groups_encoded) > 1900  # nearly every query is in a full group


def test_adaptive_deadline_runs_in_the_sweep():
    """``--deadline-ms auto`` is the mode's own AdaptiveDeadline: it settles at the running p95 of the
    direct answers (here the 5 ms service plus the 2 ms window), far below the 50 ms start value."""
    slow = [{"kind": "slow", "replica": 0, "p": 0.05, "delay_ms": 100}]
    res = _shard("hedged", "constant:ms=5", k=2, stragglers=slow, max_batch=16, batch_wait_s=0.002,
                 deadline_ms="auto").run(send_times(3000, 50.0, 7))
    assert np.nanmedian(res.deadline[500:]) == pytest.approx(7.0, abs=1.5)
    assert res.hedged.any() and np.percentile((res.answer - res.send)[500:] * 1000, 99.9) < 40


def test_adaptive_deadline_is_not_pulled_down_by_its_own_hedges():
    """Every answered query feeds the adaptive deadline, hedged ones included: it settles near the
    service law's p95 and hedges about 5% of the queries. (Fed only the answers that beat it, it sank
    below the median and hedged over half of them.)"""
    res = _shard("hedged", "lognormal:median_ms=5,sigma=0.2", k=2, deadline_ms="auto").run(send_times(6000, 100.0, 11))
    p95 = 5 * np.exp(0.2 * 1.645)
    assert np.nanmedian(res.deadline[1000:]) == pytest.approx(p95, rel=0.15)
    assert res.hedged[1000:].mean() < 0.10 and res.requests / 6000 < 1.12


@pytest.mark.parametrize("mode", ["coded", "coded-eager"])
def test_auto_deadline_seals_a_partial_group_when_its_query_is_late(mode):
    """With ``--deadline-ms auto`` and no ``--group-wait-ms`` a coded group still short of k queries is
    sealed at the adaptive deadline (the pool's p95, about 5 ms here), not at half its 50 ms start
    value: at 20 qps a k = 2 group is rarely full, and a query caught on the slowed replica is decoded
    about a service time after the deadline; a partial group answered by then sends no coded request.
    A ``--group-wait-ms`` given explicitly is kept."""
    slow = [{"kind": "slow", "replica": 0, "p": 0.05, "delay_ms": 100}]
    sends = send_times(4000, 20.0, 3)

    def run(**options):
        res = _shard(mode, "lognormal:median_ms=5,sigma=0.2", k=2, stragglers=slow, deadline_ms="auto", **options).run(sends)
        return np.percentile((res.answer - res.send)[500:] * 1000, 99.9), res.requests / len(sends)

    p999, requests = run()
    assert p999 < 20 and requests < 1.3, (p999, requests)
    waited, _requests = run(group_wait_ms=25)  # the old default, frozen at half the start value
    assert waited > 25, waited


def test_crash_fails_held_requests_and_restarts():
    crash = [{"kind": "crash", "replica": 0, "after": 50}]
    res = _shard("none", "constant:ms=5", k=2, stragglers=crash, max_batch=16, batch_wait_s=0.002).run(send_times(2000, 50.0, 5))
    assert (res.path == 2).any() and (res.path == 0).sum() > 1500
    coded = _shard("coded", "constant:ms=5", k=2, stragglers=crash, max_batch=16, batch_wait_s=0.002).run(send_times(2000, 50.0, 5))
    assert (coded.path == 1).any()


def test_closed_loop_keeps_n_queries_in_flight():
    # one client: one query at a time (100/s); four: both replicas always busy (2 x 100/s)
    for clients, expected in ((1, 100.0), (4, 200.0)):
        res = _shard("none", "constant:ms=10", k=2).run(np.zeros(2000), clients=clients)
        assert (res.path == 0).all()
        assert 2000 / (res.answer.max() - res.send.min()) == pytest.approx(expected, rel=0.02)


# --------------------------------------------------------------------------- calibration


def _synthetic_experiment(folder, n=400, straggler="none", seed=0, repeats=1, hops=None):
    """An experiment holding one synthetic 'replication' simulation with known in-flight times (``repeats``
    repetitions of n queries, each on its own clock from 0; ``hops``: each query's client hops, seconds)."""
    rng = np.random.default_rng(seed)
    results.write_tables(str(folder), {name: pd.DataFrame({"x": [0]}) for name in results.TABLES})
    # so sparse that every query finds its replica idle; a repetition sends when the first did, 3 ms later (clocks that overlap)
    sends = np.concatenate([np.cumsum(rng.exponential(0.2, n))] * repeats) + np.repeat(0.003 * np.arange(repeats), n)
    flight = rng.lognormal(np.log(0.004), 0.2, n * repeats)
    hop = np.zeros(n * repeats) if hops is None else np.asarray(hops)
    receive = sends + 0.002 + flight + hop
    queries = pd.DataFrame({"simulation_id": "sim-x", "mode": "replication", "run_id": "r", "query_id": np.arange(n * repeats),
                            "repeat": np.repeat(np.arange(repeats), n),
                            "send_s": sends, "receive_s": receive, "path": "direct", "replica": [f"base:{i % 3}" for i in range(n * repeats)],
                            "hedged": False, "warmup": False, "latency_ms": (receive - sends) * 1000})
    if hops is not None:
        queries["frontend_ms"] = (0.002 + flight) * 1000
    config = {"batch_wait_ms": 2.0, "stragglers": [{"kind": s} for s in [straggler] if s != "none"], "straggler": straggler}
    sims = pd.DataFrame({"simulation_id": ["sim-x"], "mode": ["replication"], "config": [json.dumps(config)]})
    results.write_simulation(str(folder), "sim-x", queries, sims)
    return str(folder), flight


def test_calibration_recovers_service_times(tmp_path):
    experiment, flight = _synthetic_experiment(tmp_path / "exp")
    model = calibrate(experiment)
    assert np.median(model.samples[1]) == pytest.approx(np.median(flight), rel=0.02)
    assert model.describe()["simulation_id"] == "sim-x"


def test_calibration_reads_each_repetition_and_each_querys_hops(tmp_path):
    """A simulate --repeat run: every repetition has its own clock from 0, so its batches are found on
    their own (read together, another repetition's answers made most replicas look busy and their
    batches were dropped). Each query's hops (``latency_ms - frontend_ms``) leave its in-flight time,
    and the sweep draws an answer's hops from the measured ones: a median alone left out the slow
    hops of a busy host."""
    rng = np.random.default_rng(4)
    hops = 0.003 + rng.exponential(0.004, 3 * 600)  # median 5.8 ms, p99 21 ms
    experiment, flight = _synthetic_experiment(tmp_path / "exp", n=600, seed=4, repeats=3, hops=hops)
    model = calibrate(experiment)
    assert len(model.samples[1]) >= 0.95 * len(flight)  # (about a third before, mixed over the repetitions)
    assert np.median(model.samples[1]) == pytest.approx(np.median(flight), rel=0.02)
    assert np.percentile(model.samples[1], 99) == pytest.approx(np.percentile(flight, 99), rel=0.05)  # no hop left in it
    stream = model.hop_draws(np.random.default_rng(0))
    drawn = np.array([next(stream) for _ in range(50_000)])
    assert np.percentile(drawn, 99) == pytest.approx(np.percentile(hops, 99), rel=0.1)
    shard = Shard("none", _layout(1, 1), True, {"deadline_ms": 50, "timeout_s": 5}, model, [], 0, 2, 0, 1, 0.0, 1.0, 3.0)
    result = shard.run(send_times(20000, 20.0, 1))
    latency = (result.answer - result.send) * 1000
    assert np.percentile(latency, 99) > np.percentile(flight * 1000, 99) + np.percentile(hops * 1000, 90)


def test_a_fitted_tail_draws_past_the_largest_measured_time(tmp_path):
    """``--service-tail gpd`` (the default): above the measured p95 a generalized Pareto fit, so a long
    sweep sees times no run measured, as often as the fit says; ``empirical`` never does."""
    experiment, flight = _synthetic_experiment(tmp_path / "exp", n=2000, seed=3)
    fitted, bootstrap = calibrate(experiment), calibrate(experiment, tail="empirical")
    fit = fitted.tails[1]
    assert fit["kind"] == "gpd" and fit["exceedances"] >= 30 and fit["ks"] < 0.15 and 0 < fit["share_beyond_max"] < 0.01
    assert bootstrap.tails == {} and fitted.describe()["tails"][1]["threshold_ms"] == pytest.approx(np.quantile(flight, 0.95) * 1e3, rel=0.05)
    largest = fitted.samples[1].max()
    streams = {name: m.draws(np.random.default_rng(5)) for name, m in (("gpd", fitted), ("empirical", bootstrap))}
    draws = {name: np.array([stream.draw(1) for _ in range(100_000)]) for name, stream in streams.items()}
    beyond = (draws["gpd"] > largest).mean()
    assert 0 < beyond < 5 * fit["share_beyond_max"] + 1e-3 and (draws["empirical"] <= largest).all()


def test_a_law_is_drawn_afresh_not_from_a_pool():
    """200,000 draws of a lognormal are 200,000 different numbers (a fixed pool of 20,000 could not be)."""
    stream = parse_service("lognormal:median_ms=5,sigma=1").draws(np.random.default_rng(0))
    values = np.array([stream.draw(1) for _ in range(200_000)])
    assert len(np.unique(values)) > 199_000
    assert np.median(values) * 1000 == pytest.approx(5.0, rel=0.02)


def test_every_tail_carries_an_interval_and_ci_width_adds_replications(tmp_path):
    experiment, _ = _synthetic_experiment(tmp_path / "exp")
    base = dict(experiment=experiment, run=None, modes=["replication"], rates=[200.0], ks=[2], rs=[1], queries=5000,
                warmup=50, service="exponential:mean_ms=5", workers=0, progress=False)
    row = run_sweep(SweepOptions(**base), log=lambda _m: None)["rows"][0]
    assert row["replications"] == 5 and len(json.loads(row["replicates"])) == 5
    for figure in ("p50_ms", "p99_ms", "p999_ms"):
        assert row[f"{figure}_lo"] < row[figure] < row[f"{figure}_hi"]
    wide = (row["p999_ms_hi"] - row["p999_ms_lo"]) / 2 / row["p999_ms"]
    logs = []
    tight = run_sweep(SweepOptions(**base, ci_width=100 * wide / 2), log=logs.append)
    narrower = tight["rows"][0]
    assert narrower["replications"] > 5 or tight["ci_width_unmet"] == [0]
    assert (narrower["p999_ms_hi"] - narrower["p999_ms_lo"]) < (row["p999_ms_hi"] - row["p999_ms_lo"]) or tight["ci_width_unmet"]
    sweeps = results.load(experiment).sweeps
    assert sweeps["p999_ms_lo"].notna().all() and set(sweeps["replications"]) >= {5}


def test_calibration_refuses_what_it_cannot_fit(tmp_path):
    experiment, _ = _synthetic_experiment(tmp_path / "few", n=10)
    with pytest.raises(UsageError, match="at least 20 are needed"):
        calibrate(experiment)
    experiment, _ = _synthetic_experiment(tmp_path / "every", straggler="random")
    with pytest.raises(UsageError, match="slows every replica"):
        calibrate(experiment)


@pytest.mark.parametrize("args,fragments", [
    (["--mode", "coded,teleport"], ["unknown mode 'teleport'"]),
    (["--straggler", "slowish:p=1"], ["unknown straggler model 'slowish'"]),
    (["--service", "weibull:shape=2"], ["unknown service distribution 'weibull'"]),
    (["--service", "lognormal:median_ms=3"], ["needs sigma="]),
    (["--rate", "fast"], ["comma-separated numbers"]),
    (["--deadline-ms", "soon"], ["--deadline-ms", "auto"]),
])
def test_bad_sweep_flags(tmp_path, args, fragments):
    base = ["--service", "constant:ms=1"] if "--service" not in args else []
    result = cli("sweep", "--experiment", str(tmp_path), "--workers", "0", *base, *args)
    assert_usage_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_sweep_cannot_fit_writes_nothing(tmp_path):
    experiment, _ = _synthetic_experiment(tmp_path / "few", n=10)
    before = sorted(p.name for p in (tmp_path / "few" / "tables").iterdir())
    result = cli("sweep", "--experiment", experiment, "--run", "none", "--calibrate", experiment, "--workers", "0")
    assert_usage_error(result, "at least 20 are needed")
    assert sorted(p.name for p in (tmp_path / "few" / "tables").iterdir()) == before


def test_smoke_test_runs_with_nothing_but_the_experiment(tmp_path):
    """``sweep --smoke-test`` needs no --service or --calibrate: it states the law it drew from."""
    from parity_ray.actors.options import SMOKE_SERVICE

    experiment, _ = _synthetic_experiment(tmp_path / "exp")
    result = cli("sweep", "--experiment", experiment, "--run", "none", "--mode", "coded,replication", "--smoke-test",
                 "--replications", "2", "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["service"]["source"] == SMOKE_SERVICE and summary["cells"] == 2


def test_sweep_prints_the_cheapest_mode_per_rate_meeting_the_target(tmp_path):
    """``--target-p999-ms``: after its table the sweep names, per rate, the cheapest mode meeting the target,
    with its replica count and whether the interval meets it, and ``--json`` carries it as ``cheapest``."""
    experiment, _ = _synthetic_experiment(tmp_path / "exp")
    # a cluster of 8: four 2-replica apps of none (8 replicas), two 3-replica apps of the others (6)
    result = cli("sweep", "--experiment", experiment, "--run", "none", "--mode", "coded,replication,none", "--smoke-test",
                 "--rate", "50,100", "--cluster-size", "8", "--replications", "2", "--target-p999-ms", "100", "--json",
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    head = next(n for n, line in enumerate(lines) if line.startswith("cheapest mode meeting p99.9 <= 100 ms"))
    assert head > len(summary["rows"])  # after the table of rows
    cheapest = summary["cheapest"]
    assert [row["rate"] for row in cheapest] == [50.0, 100.0] and {row["target_ms"] for row in cheapest} == {100.0}
    for row, line in zip(cheapest, lines[head + 1:head + 3]):
        assert row["mode"] in {"none", "replication"}  # one request a query, far below 100 ms with no straggler
        assert row["meets_by_interval"] in {"yes", "not distinguishable"} and isinstance(row["replicas"], int)
        assert f"{row['rate']:g} qps: {row['mode']} ({row['replicas']} replicas" in line
        assert "meets by interval: " + row["meets_by_interval"] in line
        assert f"{row['mode']} ({row['replicas']} replicas)" in row["meeting"]  # every meeting mode with its count
        assert "none (8 replicas)" in row["meeting"] and "replication (6 replicas)" in row["meeting"]
        assert row["equal_replicas"] is False and "replica counts differ" in line
    without = cli("sweep", "--experiment", experiment, "--run", "none", "--mode", "none", "--smoke-test",
                  "--replications", "2", "--json", "--no-progress")
    assert "cheapest" not in json.loads(without.stdout.strip().splitlines()[-1])
    assert "cheapest mode meeting" not in without.stdout


def test_every_app_of_a_cell_warms_up_on_its_own(tmp_path):
    """``--warmup`` is per app: 20 apps each leave their first 30 queries out, so none of the measured
    ones meets the adaptive deadline's 50 ms start value (split over the apps, 30 queries left each
    app 1 or 2, and the median measured query was given 50 ms)."""
    experiment, _ = _synthetic_experiment(tmp_path / "exp")
    options = SweepOptions(experiment=experiment, run=None, modes=["hedged"], rates=[2000.0], ks=[2], rs=[1],
                           cluster_sizes=[60], queries=1200, warmup=30, deadline_ms="auto", replications=2,
                           stragglers=["slow:p=0.1,delay_ms=100"], service="constant:ms=5", workers=0, progress=False)
    row = run_sweep(options, log=lambda _m: None)["rows"][0]
    assert row["apps"] == 20 and row["measured"] == 1200
    assert row["deadline_ms"] < 20, row["deadline_ms"]  # the measured queries' median deadline (50.0 when split)


def test_sweep_rows_in_the_experiment(tmp_path):
    experiment, _ = _synthetic_experiment(tmp_path / "exp")
    options = SweepOptions(experiment=experiment, run=None, modes=["coded", "replication", "none"], rates=[100.0, 400.0],
                           ks=[2, 4], rs=[1], cluster_sizes=[20], queries=1000, warmup=50,
                           stragglers=["none", "random:p=0.01,delay_ms=100"], calibrate=experiment, workers=0, progress=False)
    summary = run_sweep(options, log=lambda _m: None)
    sweeps = results.load(experiment).sweeps
    assert len(sweeps) == 2 * 2 * 2 * 3 == summary["cells"]
    assert tuple(sweeps.columns) == results.SWEEP_COLUMNS
    # the experiment's name (its folder's: no experiment.json here), not the path given; no run: no dataset, model
    assert set(sweeps.experiment) == {"exp"} == {summary["experiment"]} and summary["uri"] == experiment
    assert sweeps.run_id.isna().all() and sweeps.dataset.isna().all() and sweeps.model.isna().all()
    row = sweeps[(sweeps["mode"] == "coded") & (sweeps.k == 4)].iloc[0]
    assert row.apps == 4 and row.replicas == 20 and row.measured == 1000
    assert json.loads(row.settings)["timings"]["group_wait_s"] == 0.025
    assert (sweeps.direct + sweeps.decoded + sweeps.failed == sweeps.measured).all()
    from parity_ray.analysis.tables import cheapest_modes, sweep_tail

    cheapest = cheapest_modes(sweeps, target_ms=1e6)  # every mode meets it: the fewest requests a query wins
    assert len(cheapest) == 2 * 2 * 2 and set(cheapest["mode"]) <= {"none", "replication"}  # one request a query
    assert set(cheapest["meets_by_interval"]) == {"yes"}  # far below the target, interval and all
    straddled = cheapest_modes(sweeps, target_ms=float(sweeps["p999_ms"].min()) * 1.0001)
    assert "not distinguishable" in set(straddled["meets_by_interval"])  # a target inside the winner's interval
    assert len(sweep_tail(sweeps)) == len(sweeps)
    again = run_sweep(options, log=lambda _m: None)  # seeded: the same numbers again
    assert [r["p999_ms"] for r in again["rows"]] == [r["p999_ms"] for r in summary["rows"]]


# --------------------------------------------------------------------------- validation against Serve

@pytest.mark.slow
def test_sweep_matches_a_real_serve_run(trained_experiment, local_ray, tmp_path, capsys):
    """``benchmarks/sweep.py --smoke-test`` (its smoke test too): at the settings of a Serve simulation on
    this machine (every mode, 200 queries each, one replica slowed; the sweep calibrated from that very
    run), the sweep's median per mode is within 30% of the measured one (50% for the coded modes, whose
    decode path waits on the frontend's share of a loaded machine), and every percentile within a factor of 2.

    The issue's target (p50, p99 and p99.9 within 15%) is judged by the benchmark on a larger run; on
    this small one the tails rest on a handful of queries."""
    from tests.cli.runner import run_benchmark

    experiment = experiment_copy(trained_experiment, tmp_path)  # the simulation and the sweep write into it
    code, out, report, err = run_benchmark("sweep.py", "--smoke-test", "--json", "--experiment", experiment,
                                           "--serve-queries", "200", "--rate", "20", "--deadline-ms", "40",
                                           "--mode", ",".join(presented_modes()), capsys=capsys)
    assert code == 0, err[-3000:]
    assert "speed: 20,000 queries over 100 replicas" in out and "validation (" in out
    rows = report["validation"]
    assert sorted({row["mode"] for row in rows}) == sorted(presented_modes())
    misses = []
    for row in rows:
        # The sweep charges the coder's work and the client's hops as measured, but not the frontend's
        # waits for a CPU on a loaded 2-core machine (it shares them with every replica), which fall on
        # the coded modes' decode path: one CI run put a third on the coded median (Serve 66.8 ms, sweep
        # 43.0 ms), so coded medians get a wider bound than the others.
        coded = row["mode"].startswith("coded")
        bound = (0.5 if coded else 0.30) if row["stat"] == "p50_ms" else 1.0
        if row["error"] > bound:
            misses.append(f"{row['mode']:<13}{row['stat']:<8}{row['serve_ms']:8.1f}{row['sweep_ms']:8.1f}"
                          f"{row['error']:7.1%}  (bound {bound:.0%})")
    assert all(row["sweep_accuracy"] is not None for row in rows)
    assert not misses, "\n".join(misses)


def test_parm_fig9a_preset_states_the_published_setting(tmp_path):
    """``--preset parm-fig9a`` fills what the command line left at its defaults (k = 2, batch 1, the
    paper's modes, moving background load, auto deadlines, the load per 12 replicas) and prints the
    headline table: the equal-resources gap over the better coded policy's, hedging's, requests per query."""
    experiment, _ = _synthetic_experiment(tmp_path / "exp")
    result = cli("sweep", "--experiment", experiment, "--run", "none", "--preset", "parm-fig9a", "--rate", "390",
                 "--cluster-size", "12,24", "--queries", "3000", "--warmup", "100", "--workers", "0", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rows = summary["rows"]
    assert {r["mode"] for r in rows} == {"coded", "coded-eager", "replication", "hedged"} and {r["k"] for r in rows} == {2}
    assert all(isinstance(r["replicates"], list) for r in rows)  # --json nests the JSON columns as JSON
    assert {r["max_batch_size"] for r in rows} == {1} and all("one_in=12" in r["straggler"] for r in rows)
    assert {(r["replicas"], r["rate"]) for r in rows} == {(12, 390.0), (24, 780.0)}  # the load per 12 replicas
    assert {r["replicas_per_app"] for r in rows} == {12}  # the paper's one frontend per 12 workers (--copies 4)
    assert all(r["deadline_ms"] is not None and r["deadline_ms"] < 50 for r in rows if r["mode"] == "hedged")  # auto
    headline = summary["preset"]["headline"]
    assert len(headline) == 2 and all(e["gap_ratio_vs_equal_resources"] > 0 and "coded_beats_hedged" in e for e in headline)
    assert "assumptions:" in result.stdout and "gap ratio (equal resources / coded)" in result.stdout
    assert_usage_error(cli("sweep", "--experiment", experiment, "--preset", "parm-fig9", "--workers", "0"),
                       "unknown sweep preset 'parm-fig9'")


def test_the_report_shows_the_tail_fit_and_the_intervals(tmp_path):
    """The report's sweep section: each p99.9 with its interval (table, band) and the calibrated tail's
    fit (its KS distance, a Q-Q figure that renders)."""
    from parity_ray.analysis import figures, tables
    from parity_ray.analysis.report.sections import _sweeps_section

    experiment, _ = _synthetic_experiment(tmp_path / "exp", n=2000, seed=3)
    run_sweep(SweepOptions(experiment=experiment, run=None, modes=["none", "replication"], rates=[50.0, 100.0], ks=[2], rs=[1],
                           queries=2000, warmup=50, calibrate=experiment, workers=0, progress=False), log=lambda _m: None)
    loaded = results.load(experiment)
    fits = tables.service_fits(loaded.sweeps)
    assert len(fits) == 1 and fits.iloc[0]["kind"] == "gpd" and len(fits.iloc[0]["qq_ms"]) >= 20
    assert figures.to_png(figures.service_qq_figure(fits))[:4] == b"\x89PNG"
    assert figures.to_png(figures.sweep_figure(tables.sweep_tail(loaded.sweeps), 100.0))[:4] == b"\x89PNG"
    drawn = []
    html = _sweeps_section(loaded, lambda name, fig, charts: drawn.append((name, figures.to_png(fig), charts)) or name)
    from parity_ray.analysis.report.formatting import _header_text

    assert "Service-time tail fits" in html and 'id="sweep-service-fits"' in html
    assert _header_text("p999_ms_lo") in html and _header_text("ks_lognormal_whole") in html
    assert [name for name, _png, _charts in drawn] == ["sweep_p999.png", "sweep_service_qq.png"]
    assert any("error_y" in trace for trace in drawn[0][2][0]["data"])  # the interval on the interactive chart
