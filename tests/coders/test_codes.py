"""Every code through the one interface, parametrized over the encoder x decoder registries.

A new encoder or decoder is tested here for free: every combination the registries accept
(systematic and not) must encode, decode every erasure pattern up to r, and keep the contract.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from parity_ray import UsageError
from parity_ray.coders import (
    BerrutEncoder,
    LinearDecoder,
    berrut_points,
    berrut_weights,
    create_decoder,
    create_encoder,
    erasure_patterns,
    list_decoders,
    list_encoders,
    rebuilt_slots,
    scored_patterns,
)
from parity_ray.coders.berrut import locate_errors

SHAPE, CLASSES = (1, 8, 8), 10


def valid_codes():
    """(encoder, decoder, systematic) for every combination the registries accept together."""
    codes = []
    for enc_name, dec_name, systematic in itertools.product(list_encoders(), list_decoders(), (True, False)):
        try:
            encoder = create_encoder(enc_name, k=4, r=2, input_shape=SHAPE, systematic=systematic)
            decoder = create_decoder(dec_name, k=4, r=2, systematic=systematic, input_shape=SHAPE, num_outputs=CLASSES)
            decoder.check_encoder(encoder)
        except UsageError:
            continue
        codes.append((enc_name, dec_name, systematic))
    return codes


CODES = valid_codes()


def build(enc_name, dec_name, systematic, k, r, **kw):
    encoder = create_encoder(enc_name, k=k, r=r, input_shape=SHAPE, systematic=systematic)
    decoder = create_decoder(dec_name, k=k, r=r, systematic=systematic, input_shape=SHAPE, num_outputs=CLASSES, **kw)
    decoder.check_encoder(encoder)
    return encoder, decoder


def test_the_registries_hold_every_family():
    names = {(e, d, s) for e, d, s in CODES}
    assert ("addition", "subtraction", True) in names and ("concatenation", "subtraction", True) in names
    assert ("mlp", "mlp", True) in names and ("conv", "mlp", True) in names
    assert ("berrut", "berrut", True) in names and ("berrut", "berrut", False) in names


@pytest.mark.parametrize("enc_name,dec_name,systematic", CODES)
def test_every_code_decodes_every_pattern_up_to_r(enc_name, dec_name, systematic):
    k, r = 4, 2
    encoder, decoder = build(enc_name, dec_name, systematic, k, r)
    coded = encoder(torch.rand(3, k, *SHAPE))
    assert coded.shape == (3, encoder.num_coded, *SHAPE)
    outputs = torch.randn(3, k + r, CLASSES)
    for e in range(1, r + 1):
        patterns = erasure_patterns(k + r, e)
        assert len(patterns) == math.comb(k + r, e)
        decoded = decoder.decode_patterns(outputs, patterns)
        assert decoded.shape == (3, len(patterns), k, CLASSES) and torch.isfinite(decoded).all()
        # decode() on per-group patterns agrees with decode_patterns()
        one = decoder.decode(outputs, patterns[:3])
        assert torch.allclose(one, decoded[torch.arange(3), torch.arange(3)], atol=1e-5)


LINEAR_F = torch.nn.Linear(math.prod(SHAPE), CLASSES, bias=False)


def linear_f(x):
    return LINEAR_F(x.flatten(-3))


def linear_codes():
    """Codes whose encoder is linear in the queries and whose decoder defines the workers' targets."""
    out = []
    for enc_name, dec_name, systematic in CODES:
        encoder, decoder = build(enc_name, dec_name, systematic, 2, 1)
        if getattr(encoder, "linear_in_queries", False) and decoder.target(torch.zeros(1, 2, CLASSES)) is not None:
            out.append((enc_name, dec_name, systematic))
    return out


@pytest.mark.parametrize("enc_name,dec_name,systematic", linear_codes())
@pytest.mark.parametrize("k,r", [(2, 1), (4, 2), (5, 3), (8, 1)])
def test_a_linear_code_with_a_linear_f_decodes_exactly_under_every_pattern(enc_name, dec_name, systematic, k, r):
    """F itself as the worker: F(sum G X) = sum G F(X), so every pattern of up to r erasures decodes exactly."""
    torch.manual_seed(0)
    encoder, decoder = build(enc_name, dec_name, systematic, k, r)
    queries = torch.rand(5, k, *SHAPE)
    with torch.no_grad():
        base = linear_f(queries)
        outputs = torch.cat([base, linear_f(encoder(queries))], dim=1)
        for e in range(1, r + 1):
            decoded = decoder.decode_patterns(outputs, erasure_patterns(k + r, e))
            assert torch.allclose(decoded, base.unsqueeze(1).expand_as(decoded), atol=1e-3)


@pytest.mark.parametrize("dec_name", [d for d in list_decoders() if create_decoder(d, k=2, r=1, num_outputs=CLASSES).target(torch.zeros(1, 2, CLASSES)) is not None])
@pytest.mark.parametrize("k,r", [(2, 1), (3, 2), (5, 3)])
def test_a_decoder_with_worker_targets_rebuilds_exactly_from_exact_workers(dec_name, k, r):
    decoder = create_decoder(dec_name, k=k, r=r, num_outputs=CLASSES)
    base = torch.randn(6, k, CLASSES)
    outputs = torch.cat([base, decoder.target(base)], dim=1)
    for e in range(1, r + 1):
        decoded = decoder.decode_patterns(outputs, erasure_patterns(k + r, e))
        assert torch.allclose(decoded, base.unsqueeze(1).expand_as(decoded), atol=1e-3)


# --------------------------------------------------------------------------- Berrut


def test_berrut_is_exact_at_its_nodes():
    query, workers = berrut_points(5, 3, False)
    assert torch.allclose(berrut_weights(query, query), torch.eye(5, dtype=torch.float64))
    # a worker sitting on a query point receives exactly that query
    weights = berrut_weights(query, [query[2], 0.123])
    assert torch.equal(weights[0], torch.eye(5, dtype=torch.float64)[2])
    assert torch.allclose(weights.sum(1), torch.ones(2, dtype=torch.float64))  # interpolation reproduces constants


@pytest.mark.parametrize("k,r", [(4, 1), (8, 2), (6, 3)])
def test_systematic_berrut_returns_the_available_outputs_unchanged(k, r):
    encoder, decoder = build("berrut", "berrut", True, k, r)
    query, workers = berrut_points(k, r, True)
    assert workers[:k] == query  # the data workers sit at the query points: encoder and decoder share them
    outputs = torch.randn(4, k + r, CLASSES)
    for e in range(1, r + 1):
        patterns = erasure_patterns(k + r, e)
        decoded = decoder.decode_patterns(outputs, patterns)
        kept = ~rebuilt_slots(patterns, k, True)  # (P, k)
        for p in range(len(patterns)):
            assert torch.allclose(decoded[:, p][:, kept[p]], outputs[:, :k][:, kept[p]], atol=1e-6)


def test_berrut_encoder_and_decoder_use_the_same_points():
    for systematic in (True, False):
        encoder, decoder = build("berrut", "berrut", systematic, 5, 2)
        query, workers = berrut_points(5, 2, systematic)
        coded_points = workers[5:] if systematic else workers
        assert torch.allclose(encoder.weights.double(), berrut_weights(query, coded_points), atol=1e-6)
        assert decoder.worker_points == workers and decoder.query_points == query


def smooth_f(x):
    """A smooth nonlinear model of the queries: (..., 1, 8, 8) -> (..., 10)."""
    flat = x.flatten(-3)
    return torch.stack([torch.sin(1.5 * flat[..., i] + i) + 0.3 * flat[..., i + 1] ** 2 for i in range(CLASSES)], dim=-1)


def berrut_error(k, r, systematic=False):
    torch.manual_seed(1)
    encoder, decoder = build("berrut", "berrut", systematic, k, r)
    queries = torch.rand(200, k, *SHAPE)
    base = smooth_f(queries)
    coded = smooth_f(encoder(queries))
    outputs = torch.cat([base, coded], 1) if systematic else coded
    decoded = decoder.decode_patterns(outputs, erasure_patterns(k + r, 1))
    return float((decoded - base.unsqueeze(1)).abs().mean())


def test_berrut_error_shrinks_as_workers_grow_for_a_smooth_f():
    errors = [berrut_error(4, r) for r in (1, 4, 16, 60)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.5 * errors[0]


def test_byzantine_locator_finds_a_wrong_output():
    torch.manual_seed(3)
    k, r = 4, 4
    encoder, decoder = build("berrut", "berrut", False, k, r, byzantine=1)
    queries = torch.rand(100, k, *SHAPE)
    base = smooth_f(queries)
    outputs = smooth_f(encoder(queries))
    bad = torch.randint(0, k + r, (100,))
    corrupted = outputs.clone()
    corrupted[torch.arange(100), bad] += 5 * outputs.std() * torch.randn(100, CLASSES)
    found = locate_errors(corrupted, decoder.worker_points, 1, decoder.query_points)[:, 0]
    assert float((found == bad).float().mean()) >= 0.9
    available = torch.ones(100, k + r, dtype=torch.bool)
    located = decoder.decode(corrupted, decoder.drop_suspects(corrupted, available))
    unlocated = decoder.decode(corrupted, available)
    assert (located - base).abs().mean() < 0.5 * (unlocated - base).abs().mean()


@pytest.mark.parametrize("systematic", [False, True])
@pytest.mark.parametrize("k,r,errors", [(12, 2, 1), (5, 4, 2), (3, 6, 3), (4, 7, 2)])
def test_locator_is_exact_for_a_linear_f(k, r, errors, systematic):
    """F linear: y(z) D(z) is a polynomial of degree k - 1, so every injected error is found whenever
    r >= 2E, and decoding with the suspects left out ignores the errors."""
    torch.manual_seed(k * 100 + r)
    encoder, decoder = build("berrut", "berrut", systematic, k, r)  # (--byzantine asks for a margin a network F needs)
    queries = torch.randn(60, k, 6)
    coded = encoder(queries)
    outputs = torch.cat([queries, coded], dim=1) if systematic else coded  # F = identity
    bad = torch.rand(60, k + r).topk(errors, dim=1, largest=False).indices
    corrupted = outputs.scatter_add(1, bad.unsqueeze(-1).expand(-1, -1, 6), 5 * torch.randn(60, errors, 6))
    found = locate_errors(corrupted.double(), decoder.worker_points, errors, decoder.query_points)
    assert torch.equal(found.sort(dim=1).values, bad.sort(dim=1).values)
    kept = torch.ones(60, k + r, dtype=torch.bool).scatter(1, found, False)
    assert torch.allclose(decoder.decode(corrupted, kept), decoder.decode(outputs, kept), atol=1e-5)  # errors left out


def test_decoding_never_locates():
    """The contract: ``decode`` is a function of the available outputs only, Byzantine decoder or not."""
    torch.manual_seed(0)
    plain = create_decoder("berrut", k=4, r=4, systematic=False)
    byzantine = create_decoder("berrut", k=4, r=4, systematic=False, byzantine=1)
    outputs, available = torch.randn(30, 8, CLASSES), torch.rand(30, 8) > 0.2
    assert torch.equal(plain.decode(outputs, available), byzantine.decode(outputs, available))
    patterns = torch.tensor([[True] * 8, [False] + [True] * 7])
    assert torch.equal(plain.decode_patterns(outputs, patterns), byzantine.decode_patterns(outputs, patterns))


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("build_it,message", [
    (lambda: create_encoder("addition", k=4, r=5, input_shape=SHAPE), "supports r <= 4"),
    (lambda: create_encoder("addition", k=4, r=1, input_shape=SHAPE, systematic=False), "systematic only"),
    (lambda: create_decoder("berrut", k=4, r=1, byzantine=1), "needs r >= 2E"),
    (lambda: create_decoder("berrut", k=12, r=4, byzantine=1), r"needs r >= 2E \+ 4 = 6 .*valid byzantine for k=12, r=4: 0..0"),
    (lambda: create_decoder("subtraction", k=4, r=1, byzantine=1), "cannot locate Byzantine"),
    (lambda: build("addition", "berrut", True, 4, 1), "can only read the berrut encoder"),
    (lambda: build("berrut", "subtraction", False, 4, 1), "systematic codes only"),
    (lambda: create_decoder("mlp", k=4, r=1), "needs the number of outputs"),
])
def test_codes_refuse_what_they_cannot_do(build_it, message):
    with pytest.raises(UsageError, match=message):
        build_it()


def test_linear_decoders_cache_their_matrices():
    decoder = create_decoder("berrut", k=4, r=2)
    assert isinstance(decoder, LinearDecoder)
    patterns = erasure_patterns(6, 2)
    decoder.decode_patterns(torch.randn(2, 6, 3), patterns)
    assert len(decoder.__dict__["_decode_matrices"]) == len(patterns)
    assert isinstance(create_encoder("berrut", k=4, r=2, input_shape=SHAPE), BerrutEncoder)


@pytest.mark.parametrize("n,e,limit", [(7, 2, 500), (7, 3, 35), (7, 3, 10), (26, 13, 64), (36, 24, 500)])
def test_scored_patterns_are_every_pattern_or_a_seeded_uniform_sample(n, e, limit):
    """Every pattern while C(n, e) <= limit; beyond it, ``limit`` distinct patterns of exactly e
    unavailable, the same for the same seed, another sample for another seed."""
    patterns = scored_patterns(n, e, limit, seed=0)
    if math.comb(n, e) <= limit:
        assert torch.equal(patterns, erasure_patterns(n, e))
        return
    assert patterns.shape == (limit, n) and bool(((~patterns).sum(dim=1) == e).all())
    assert len({tuple(row.tolist()) for row in patterns}) == limit
    assert torch.equal(patterns, scored_patterns(n, e, limit, seed=0))
    assert not torch.equal(patterns, scored_patterns(n, e, limit, seed=1))


def test_sampled_patterns_leave_every_worker_out_equally_often():
    """Uniform over the C(n, e) patterns: each worker is unavailable in about e / n of them (a biased
    draw, e.g. the first rows of the lexicographic enumeration, would leave worker 0 out far more)."""
    n, e, limit = 26, 13, 4000
    share = (~scored_patterns(n, e, limit, seed=0)).double().mean(dim=0)
    assert float((share - e / n).abs().max()) < 0.05, share


def test_byzantine_figures_keep_half_the_spare_workers_back():
    """The Byzantine figures' stragglers: half of r beyond the locator's need (all of it located
    only 84-96% at k = 12; benchmarks/locator.py)."""
    assert create_decoder("berrut", k=12, r=14, systematic=False, byzantine=1).tolerated_stragglers == 4
    assert create_decoder("berrut", k=4, r=4, systematic=False, byzantine=1).tolerated_stragglers == 0
    assert create_decoder("berrut", k=4, r=4, systematic=False).tolerated_stragglers == 4
