"""Serving modes over the registry, and every kind of code served, on a real local Ray Serve.

The runs are made on the spot (tests/serve/runs.py: random weights, any code), so these tests
check the serving paths themselves: each decoded answer must equal the same decoding done
offline with the run's own models and coders.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from parity_ray.actors.app import AppOptions, build_app, plan
from parity_ray.actors.codes import code_layout
from parity_ray.actors.modes import get_mode, list_modes
from parity_ray.actors.simulation import normalise
from parity_ray.data import load_data
from parity_ray.errors import UsageError
from parity_ray.serving import load_model
from tests.serve.runs import make_run, reference_coders, spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def serve_ray(local_ray):
    from ray import serve

    yield
    serve.shutdown()


@pytest.fixture(scope="module")
def pixels():
    data = load_data("digits", val_size=300, split_seed=0, input_norm="none")
    return data.test_x[:16].numpy()


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("addition"), "addition", "subtraction")


def _deploy(run, name, **options):
    from ray import serve

    # one frontend: the handle's queries share its groups (the HTTP default of two is tests/serve/test_faults.py's)
    return serve.run(build_app(run, AppOptions(**{"frontend_replicas": 1, **options})), name=name, route_prefix=None)


def _send(handle, pixels, indices):
    async def burst():
        return await asyncio.gather(*(handle.query.remote(int(i), pixels[i]) for i in indices))

    return asyncio.run(burst())


# ----------------------------------------------------------------------------- the registry


def test_registry_lists_every_built_in_mode():
    assert {"coded", "coded-hedged", "replication", "hedged", "none"} <= set(list_modes())
    with pytest.raises(UsageError, match="unknown serving mode 'teleport'"):
        get_mode("teleport")


@pytest.mark.parametrize("mode", list_modes())
def test_every_mode_declares_its_replicas(mode, addition_run):
    layout = code_layout(addition_run)
    pools = plan(addition_run, mode)
    total = sum(len(workers) for workers in pools.values())
    assert total == (layout.k if mode == "none" else layout.n)
    for workers in pools.values():
        assert all(role in ("base", "parity") for role, _ in workers)


@pytest.mark.parametrize("mode", list_modes())
def test_every_mode_answers_every_query(mode, addition_run, pixels, serve_ray):
    """A burst with one replica slowed: each query is answered exactly once, with its path and class."""
    from ray import serve

    handle = _deploy(addition_run, f"every-{mode}", mode=mode, deadline_ms=40, timeout_s=10,
                     straggler="slow:replica=0,p=0.5,delay_ms=150")
    try:
        answers = _send(handle, pixels, range(16))
        nodes = handle.placement.remote().result()
    finally:
        serve.delete(f"every-{mode}")
    assert sorted(a["query_id"] for a in answers) == list(range(16))
    assert all(a["path"] in ("direct", "decoded") and 0 <= a["prediction"] < 10 for a in answers)
    assert len(nodes) == sum(len(w) for w in plan(addition_run, mode).values())
    base = load_model(addition_run, "base")
    with torch.no_grad():
        expected = base(torch.from_numpy(normalise(pixels, addition_run.input_norm))).argmax(1).numpy()
    direct = [a for a in answers if a["path"] == "direct"]
    assert direct and all(a["prediction"] == expected[a["query_id"]] for a in direct)


def test_a_mode_that_cannot_serve_a_code_says_why(tmp_path):
    berrut = make_run(tmp_path / "berrut", "berrut", "berrut", k=2, r=1, parity_model="base")
    with pytest.raises(UsageError, match="needs a systematic code"):
        plan(berrut, "coded-hedged")


# ----------------------------------------------------------------------------- every code served


def _offline(run, queries):
    """Worker outputs (n, C) of one group computed offline: F on the data, each coded worker on its query."""
    enc, dec = reference_coders(run)
    layout = code_layout(run)
    with torch.no_grad():
        coded = enc(torch.from_numpy(queries)[None])[0]
        base = load_model(run, "base")
        workers = [load_model(run, "parity", j) for j in range(layout.num_coded)]
        coded_out = torch.stack([workers[j](coded[j:j + 1])[0] for j in range(layout.num_coded)])
        outputs = torch.cat([base(torch.from_numpy(queries)), coded_out]) if layout.systematic else coded_out
    return outputs, dec


def _group(answers, k):
    by_position = {a["position"]: a for a in answers}
    assert len({a["group_id"] for a in answers}) == 1 and sorted(by_position) == list(range(k))
    return [by_position[p] for p in range(k)]


def test_r2_covers_two_slow_replicas_at_once(tmp_path, pixels, serve_ray):
    """k=2, r=2, two copies of the workers behind the frontend (--copies 2: 4 data replicas, 2 of each
    coded worker): every data replica slowed; both answers are decoded from the two coded workers,
    which only holds if coded query j reached a replica of worker j's own model."""
    from ray import serve

    run = make_run(tmp_path / "r2", spec("LinearSystematicEncoder"), spec("LinearSystematicDecoder"), k=2, r=2)  # a user's class-spec code
    slow = "+".join(f"slow:replica={i},p=1,delay_ms=1500" for i in range(4))
    handle = _deploy(run, "r2", mode="coded", deadline_ms=60, group_wait_ms=300, timeout_s=10, straggler=slow,
                     copies=2, cpus_per_replica=0.2)
    try:
        answers = _group(_send(handle, pixels, [0, 1]), 2)
        nodes = handle.placement.remote().result()
    finally:
        serve.delete("r2")
    assert sorted(nodes) == sorted([f"base:{i}" for i in range(4)] + [f"parity:{i}" for i in range(4)])
    assert [a["path"] for a in answers] == ["decoded", "decoded"]
    assert all(a["replica"] == "parity:[0, 1]" for a in answers)
    queries = normalise(pixels[[a["query_id"] for a in answers]], run.input_norm)
    outputs, dec = _offline(run, queries)
    available = torch.tensor([[False, False, True, True]])
    expected = dec.decode(outputs[None], available)[0].numpy()
    for position, answer in enumerate(answers):
        assert np.allclose(answer["output"], expected[position], atol=1e-4)


# name -> (encoder, decoder, k, r, make_run options, slowed replica): the registered code families.
SERVED_CODES = {
    "berrut": ("berrut", "berrut", 3, 1, {"parity_model": "base"}),
    "berrut-systematic": ("berrut", "berrut", 3, 2, {"systematic": True}),
    "berrut-byzantine": ("berrut", "berrut", 3, 4, {"parity_model": "base", "byzantine": 1}),
    "learned": ("mlp", "mlp", 2, 1, {"seed": 5}),
    "learned-conv-r2": ("conv", "mlp", 2, 2, {"parity_model": "base"}),
    "concatenation": ("concatenation", "subtraction", 2, 1, {}),
}


@pytest.mark.parametrize("name", sorted(SERVED_CODES))
def test_every_code_family_serves_what_the_offline_decoder_gives(name, tmp_path, pixels, serve_ray):
    """One replica slowed past the deadline: every query answered once; direct answers are F's output,
    decoded ones the offline decoder's under the pattern the answer reports (``decoded_from``)."""
    from ray import serve

    encoder, decoder, k, r, options = SERVED_CODES[name]
    run = make_run(tmp_path / name, encoder, decoder, k=k, r=r, **options)
    handle = _deploy(run, name, mode="coded", deadline_ms=80, group_wait_ms=300, timeout_s=10,
                     straggler="slow:replica=1,p=1,delay_ms=2000")
    try:
        answers = _group(_send(handle, pixels, list(range(k))), k)
    finally:
        serve.delete(name)
    layout = code_layout(run)
    queries = normalise(pixels[[a["query_id"] for a in answers]], run.input_norm)
    outputs, dec = _offline(run, queries)
    assert sorted(a["query_id"] for a in answers) == list(range(k))
    assert any(a["path"] == "decoded" for a in answers)
    for position, answer in enumerate(answers):
        if answer["path"] == "direct":
            assert layout.systematic
            assert np.allclose(answer["output"], outputs[position].numpy(), atol=1e-5)
            continue
        assert answer["path"] == "decoded", answer
        available = torch.zeros(1, layout.n, dtype=torch.bool)
        available[0, answer["decoded_from"]] = True
        assert len(answer["decoded_from"]) >= k and (not layout.systematic or not available[0, position])
        with torch.no_grad():
            expected = dec.decode(outputs[None], available)[0, position].numpy()
        assert np.allclose(answer["output"], expected, atol=1e-4), (name, answer["decoded_from"])


def test_coded_hedged_duplicates_a_query_its_group_cannot_decode(addition_run, pixels, serve_ray):
    """Replica 0 and the coded worker both slow: the group cannot be decoded, so the query on replica 0
    is sent again to replica 1 at the second deadline; plain coded waits for the slow batch."""
    from ray import serve

    straggler = "slow:replica=0,p=1,delay_ms=3000+slow:replica=2,p=1,delay_ms=3000"
    results = {}
    for mode in ("coded-hedged", "coded"):
        handle = _deploy(addition_run, f"ch-{mode}", mode=mode, deadline_ms=40, hedge_deadline_ms=600,
                         group_wait_ms=300, timeout_s=10, straggler=straggler)
        try:
            results[mode] = _group(_send(handle, pixels, [8, 9]), 2)
        finally:
            serve.delete(f"ch-{mode}")
    hedged = results["coded-hedged"][0]
    assert hedged["path"] == "direct" and hedged["replica"] == "base:1" and hedged["hedged"]
    plain = results["coded"][0]
    assert plain["path"] in ("direct", "decoded") and plain["replica"] != "base:1" and not plain["hedged"]
    assert results["coded-hedged"][1]["path"] == "direct"  # (a busy machine may hedge it too: its first batch is cold)
