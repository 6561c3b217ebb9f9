"""Degraded-mode serving on a real local Ray Serve: accounting, offline-equal decoding, outputs."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from parity_ray.actors.app import AppOptions, build_app
from parity_ray.actors.simulation import SimulationOptions, normalise, run_simulation
from parity_ray import results
from parity_ray.serving import load_model, resolve_run
from tests.conftest import experiment_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiment(trained_experiment, local_ray, tmp_path_factory):
    """A copy of the shared digits k=2 experiment (the simulations write into it), served on the session's Ray."""
    from ray import serve

    yield experiment_copy(trained_experiment, tmp_path_factory.mktemp("simulate"))
    serve.shutdown()


def test_every_query_is_accounted_for_even_when_a_replica_crashes(experiment):
    options = SimulationOptions(experiment=experiment, modes=["coded", "coded-hedged", "replication", "hedged", "none"],
                                straggler="slow:replica=0,p=0.3,delay_ms=80+crash:replica=1,after=60",
                                rate=40, queries=160, warmup=20, deadline_ms=40, timeout_s=5, progress=False)
    summary = run_simulation(options, log=lambda _m: None)
    tables = results.load(experiment)
    queries = tables.queries[tables.queries.simulation_id == summary["simulation_id"]]
    for mode in summary["modes"]:
        assert mode["sent"] == 180 == len(queries[queries["mode"] == mode["mode"]])
        assert mode["direct"] + mode["decoded"] + mode["failed"] == mode["measured"] == 160
    coded = next(m for m in summary["modes"] if m["mode"] == "coded")
    assert coded["decoded"] > 0  # the crashed and the slowed replica were covered by decoding
    assert coded["accuracy"] > 0.5
    assert set(queries.path) <= {"direct", "decoded", "failed"}
    assert queries[queries.path == "failed"].reason.notna().all()
    sims = tables.simulations
    assert set(sims[sims.simulation_id == summary["simulation_id"]]["mode"]) == {"coded", "coded-hedged", "replication", "hedged", "none"}
    assert {"p50_ms", "p90_ms", "p99_ms", "p999_ms", "mean_ms", "throughput_qps", "accuracy", "decoded_accuracy"} <= set(sims.columns)
    # one identity: the experiment's name as in runs (not the path given); the served run's dataset, model, k, r
    assert set(sims.experiment) == set(tables.runs.experiment) == {summary["experiment"]}
    assert set(sims.dataset) == {"digits"} and set(sims.k) == {2} and set(sims.r) == {1} and sims.model.notna().all()


def recompute_decoded(row, rows_by_query, run, data):
    """A decoded answer rebuilt offline from its queries-table row alone (docs/tables.md): the group's
    members' test images, F and the parity models on them, the decoder under ``decoded_from``."""
    from parity_ray.coders import create_coders
    from parity_ray.config import TrainConfig

    config = TrainConfig.from_dict(run.config).resolved()
    encoder, decoder = create_coders(config, data.spec.input_shape, data.spec.num_classes)
    members = [int(q) for q in row["group_members"]]
    pixels = data.test_x[[int(rows_by_query.loc[q, "test_index"]) for q in members]].numpy()
    x = torch.from_numpy(normalise(pixels, run.input_norm))
    with torch.no_grad():
        coded = encoder.eval()(x.unsqueeze(0))[0]
        workers = [load_model(run, "parity", j)(coded[j:j + 1])[0] for j in range(coded.shape[0])]
        outputs = torch.cat([load_model(run, "base")(x), torch.stack(workers)]) if encoder.systematic else torch.stack(workers)
        available = torch.zeros(1, outputs.shape[0], dtype=torch.bool)
        available[0, [int(s) for s in row["decoded_from"]]] = True
        return decoder.decode(outputs.unsqueeze(0), available)[0, int(row["position"])].numpy()


def test_every_decoded_answer_is_recomputed_from_the_tables(experiment):
    """Checkable answers: each decoded row of the queries table holds its group's members (fillers
    included), the slots it was decoded from and its output; recomputing it offline gives that output."""
    from parity_ray.data import load_data

    options = SimulationOptions(experiment=experiment, modes=["coded"], straggler="slow:replica=0,p=0.5,delay_ms=150",
                                rate=30, queries=60, warmup=0, deadline_ms=30, timeout_s=5, progress=False)
    summary = run_simulation(options, log=lambda _m: None)
    queries = results.load(experiment).queries
    queries = queries[queries.simulation_id == summary["simulation_id"]].set_index("query_id", drop=False)
    decoded = queries[queries.path == "decoded"]
    assert len(decoded) > 0 and queries[queries.path != "decoded"].output.isna().all()
    run = resolve_run(experiment, summary["run_id"])
    data = load_data("digits", val_size=run.config["val_size"], split_seed=run.config["seed"], input_norm="none")
    for _, row in decoded.iterrows():
        assert len(row["group_members"]) == run.k and row["query_id"] == row["group_members"][row["position"]]
        assert row["position"] not in list(row["decoded_from"])  # its own output was not in
        assert np.allclose(row["output"], recompute_decoded(row, queries, run, data), atol=1e-4), row["query_id"]
        assert int(np.argmax(row["output"])) == row["prediction"]


def test_decoded_answer_equals_offline_decoding(experiment):
    from ray import serve

    from parity_ray.coders import create_decoder, create_encoder
    from parity_ray.data import load_data

    run = resolve_run(experiment, "best")
    # Replica 0 always misses the deadline by far. The group stays open long enough (group_wait_ms)
    # for the second query to join it even when a busy machine delays its arrival.
    options = AppOptions(mode="coded", deadline_ms=30, group_wait_ms=500, timeout_s=10,
                         straggler="slow:replica=0,p=1,delay_ms=5000", frontend_replicas=1)  # both in one group
    handle = serve.run(build_app(run, options), name="offline-check", route_prefix=None)
    data = load_data("digits", val_size=run.config["val_size"], split_seed=run.config["seed"], input_norm="none")
    pixels = data.test_x[:2].numpy()
    queries = normalise(pixels, run.input_norm)

    async def send_group():
        return await asyncio.gather(handle.query.remote(0, pixels[0]), handle.query.remote(1, pixels[1]))

    answers = asyncio.run(send_group())
    serve.delete("offline-check")
    by_position = {a["position"]: a for a in answers}
    # The query that landed on the slow replica 0 is decoded, its partner answered directly (either slot).
    assert sorted(a["path"] for a in answers) == ["decoded", "direct"]
    lost = next(a["position"] for a in answers if a["path"] == "decoded")
    assert answers[0]["group_id"] == answers[1]["group_id"]
    queries = queries[[by_position[0]["query_id"], by_position[1]["query_id"]]]  # in slot order

    base, parity = load_model(run, "base"), load_model(run, "parity", 0)
    encoder = create_encoder(run.config["encoder"], k=2, r=1, input_shape=(1, 8, 8))
    decoder = create_decoder(run.config["decoder"], k=2, r=1)
    with torch.no_grad():
        x = torch.from_numpy(queries)
        outputs = base(x).unsqueeze(0)  # (1, k, n)
        parity_out = parity(encoder(x.unsqueeze(0))[:, 0]).unsqueeze(1)
        available = torch.ones(1, 3, dtype=torch.bool)
        available[0, lost] = False
        offline = decoder.decode(torch.cat([outputs, parity_out], 1), available)[0, lost]
    assert np.allclose(by_position[lost]["output"], offline.numpy(), atol=1e-4)
    assert np.allclose(by_position[1 - lost]["output"], outputs[0, 1 - lost].numpy(), atol=1e-5)


def test_a_partial_group_is_decodable_through_a_recently_answered_filler(experiment):
    """Queries arriving one at a time form partial groups; their parity borrows a recent answer.

    Routing (fewest in flight, ties in turn): query 0 -> replica 0 (slow), answered direct once its
    replica is done (no filler exists yet); query 1 -> replica 1 (turn 1), direct; query 2 -> replica
    0 (turn 2, both idle), decoded through query 1's answer; query 3 -> replica 1 (replica 0 still
    holds query 2). The deadline is far above a busy machine's service time and far below the delay.
    """
    from ray import serve

    from parity_ray.coders import create_decoder, create_encoder
    from parity_ray.data import load_data

    run = resolve_run(experiment, "best")
    # A generous deadline so that replica 1's first (cold) answer still comes back direct.
    options = AppOptions(mode="coded", deadline_ms=1000, group_wait_ms=1, timeout_s=15,
                         straggler="slow:replica=0,p=1,delay_ms=4000", frontend_replicas=1)  # one frontend's routing
    handle = serve.run(build_app(run, options), name="partial-check", route_prefix=None)
    data = load_data("digits", val_size=run.config["val_size"], split_seed=run.config["seed"], input_norm="none")
    pixels = data.test_x[:4].numpy()
    queries = normalise(pixels, run.input_norm)

    async def one_at_a_time():
        return [await handle.query.remote(i, pixels[i]) for i in range(4)]

    answers = asyncio.run(one_at_a_time())
    serve.delete("partial-check")
    assert [a["replica"] for a in (answers[0], answers[1], answers[3])] == ["base:0", "base:1", "base:1"]
    assert len({a["group_id"] for a in answers}) == 4 and all(a["position"] == 0 for a in answers)
    # The very first query has no filler yet: slot 0 waits for its slow replica.
    assert answers[0]["path"] == "direct"
    # Query 2 lands on the slow replica too, but its group borrowed query 1's answer: decoded.
    assert answers[1]["path"] == "direct" and answers[2]["path"] == "decoded"

    base, parity = load_model(run, "base"), load_model(run, "parity", 0)
    encoder = create_encoder(run.config["encoder"], k=2, r=1, input_shape=(1, 8, 8))
    decoder = create_decoder(run.config["decoder"], k=2, r=1)
    with torch.no_grad():
        group = torch.from_numpy(queries[[2, 1]])  # slot 0: the query, slot 1: the filler (query 1)
        outputs = base(group).unsqueeze(0)
        parity_out = parity(encoder(group.unsqueeze(0))[:, 0]).unsqueeze(1)
        offline = decoder.decode(torch.cat([outputs, parity_out], 1), torch.tensor([[False, True, True]]))[0, 0]  # slot 0 unavailable
    assert np.allclose(answers[2]["output"], offline.numpy(), atol=1e-4)


@pytest.mark.parametrize("mode", ["coded", "coded-hedged", "replication", "none"])
def test_queries_avoid_a_replica_stuck_in_a_slow_batch(experiment, mode):
    """Every mode routes to the replica with the fewest requests in flight, so a stuck one is left alone."""
    from ray import serve

    from parity_ray.data import load_data

    run = resolve_run(experiment, "best")
    # a hedge later than the stuck batch: coded-hedged routes like coded
    options = AppOptions(mode=mode, deadline_ms=250, hedge_deadline_ms=5000, timeout_s=10,
                         straggler="slow:replica=0,p=1,delay_ms=2000", frontend_replicas=1)  # one frontend's in-flight counts
    app = f"routing-{mode}"
    handle = serve.run(build_app(run, options), name=app, route_prefix=None)
    data = load_data("digits", val_size=run.config["val_size"], split_seed=run.config["seed"], input_norm="none")
    queries = data.test_x[:5].numpy()

    async def one_stuck_then_four():
        stuck = asyncio.ensure_future(handle.query.remote(0, queries[0]))
        await asyncio.sleep(0.1)  # query 0 is now inside replica 0's slow batch
        later = [await handle.query.remote(i, queries[i]) for i in range(1, 5)]
        return await stuck, later

    first, later = asyncio.run(one_stuck_then_four())
    serve.delete(app)
    # The stuck query waits for its replica, or is decoded: query 1 joined its group (on replica 1).
    assert (first["path"], first["replica"]) in (("direct", "base:0"), ("decoded", "parity:[0]"))
    assert len(later) == 4 and all(a["replica"] != "base:0" for a in later)
    assert all(a["path"] == "direct" for a in later)


def test_repeated_simulation_rows_and_coded_eager_on_serve(experiment):
    """``--repeat 2``: every mode twice (fresh seeds, rotated order), rows tagged by repetition, the spread
    in the summary and the report's table. coded-eager answers the slow replica's queries decoded, long
    before a deadline it never waits for (1 s here): the first of a query's own and decoded output."""
    from parity_ray.analysis.tables import latency_spread

    options = SimulationOptions(experiment=experiment, modes=["coded-eager", "replication"], repeat=2,
                                straggler="slow:replica=0,p=1,delay_ms=300", rate=20, queries=30, warmup=4,
                                deadline_ms=1000, timeout_s=5, progress=False)
    summary = run_simulation(options, log=lambda _m: None)
    tables = results.load(experiment)
    sims = tables.simulations[tables.simulations.simulation_id == summary["simulation_id"]]
    assert sorted(zip(sims["repeat"], sims["mode"])) == [(0, "coded-eager"), (0, "replication"),
                                                         (1, "coded-eager"), (1, "replication")]
    seeds = sorted(json.loads(c)["seed"] for c in sims[sims["mode"] == "replication"]["config"])
    assert seeds == [options.seed, options.seed + 1]
    queries = tables.queries[tables.queries.simulation_id == summary["simulation_id"]]
    assert len(queries) == 2 * 2 * 34 and set(queries["repeat"]) == {0, 1}
    assert set(summary["spread"]) == {"coded-eager", "replication"} and summary["repeats"] == 2
    assert len(latency_spread(sims)) == 2
    eager = queries[(queries["mode"] == "coded-eager") & ~queries["warmup"]]
    decoded = eager[eager["path"] == "decoded"]
    # answered before the straggler's 300 ms as a rule (a loaded 2-core machine can hold a few back), and
    # never after waiting out the 1 s deadline that coded would have used
    assert len(decoded) > 0 and decoded["latency_ms"].median() < 300 and (decoded["latency_ms"] < 1000).all()
    assert (eager["path"] != "failed").all()


def test_an_adaptive_deadline_is_recorded_per_query(experiment):
    """``--deadline-ms auto``: hedged and coded start at 50 ms and then follow the p95 of their recent direct
    answers; every query's deadline is in the queries table; replication has none."""
    options = SimulationOptions(experiment=experiment, modes=["hedged", "coded", "replication"], deadline_ms="auto",
                                deadline_quantile=0.9, straggler="slow:replica=0,p=0.3,delay_ms=100", rate=30,
                                queries=80, warmup=10, timeout_s=5, progress=False)
    summary = run_simulation(options, log=lambda _m: None)
    queries = results.load(experiment).queries
    queries = queries[queries.simulation_id == summary["simulation_id"]]
    for mode in ("hedged", "coded"):
        seen = queries[queries["mode"] == mode].sort_values("query_id")["deadline_ms"]
        assert seen.notna().all() and seen.iloc[0] == 50.0 and seen.nunique() > 1
    assert queries[queries["mode"] == "replication"]["deadline_ms"].isna().all()
    rows = {m["mode"]: m for m in summary["modes"]}
    assert rows["hedged"]["deadline_ms"] is not None and rows["replication"]["failed"] == 0
