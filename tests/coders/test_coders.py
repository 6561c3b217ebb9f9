"""Encoders and decoders: shapes, channel alignment, tiling, and exact decoding for r >= 1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity_ray import UsageError
from parity_ray.coders import (
    ENCODERS,
    code_matrix,
    concatenation_grid,
    create_decoder,
    create_encoder,
    erasure_patterns,
    list_decoders,
    list_encoders,
)

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]


@pytest.mark.parametrize("encoder", list_encoders())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k,r", [(2, 1), (3, 1), (4, 2)])
def test_every_encoder_maps_k_queries_to_its_coded_queries(encoder, shape, k, r):
    max_r = getattr(ENCODERS.resolve(encoder)[0], "max_r", None)
    if max_r is not None and r > max_r:  # refused in one line, naming the limit
        with pytest.raises(UsageError, match=f"supports r <= {max_r}"):
            create_encoder(encoder, k=k, r=r, input_shape=shape)
        return
    enc = create_encoder(encoder, k=k, r=r, input_shape=shape)
    out = enc(torch.randn(5, k, *shape))
    assert out.shape == (5, enc.num_coded, *shape)
    assert enc.num_coded == (r if enc.systematic else k + r)


def test_addition_keeps_channels_aligned():
    """Channel c of the parity mixes only channel c of the queries (a flat reshape would not)."""
    k, shape = 3, (3, 4, 5)
    queries = torch.zeros(2, k, *shape)
    for i in range(k):
        for c in range(3):
            queries[:, i, c] = 10.0 ** c * (i + 1)  # channel c of query i holds (i+1) * 10^c
    parity = create_encoder("addition", k=k, r=1, input_shape=shape)(queries)
    for c in range(3):
        assert torch.allclose(parity[:, 0, c], torch.full((2, 4, 5), 6.0 * 10.0 ** c))
    # and the sum equals the per-sample sum of the queries
    x = torch.randn(4, k, *shape)
    assert torch.allclose(create_encoder("addition", k=k, r=1, input_shape=shape)(x)[:, 0], x.sum(dim=1), atol=1e-6)


@pytest.mark.parametrize("k,grid", [(2, (1, 2)), (3, (1, 3)), (4, (2, 2)), (6, (2, 3)), (9, (3, 3))])
def test_concatenation_grid(k, grid):
    assert concatenation_grid(k) == grid


@pytest.mark.parametrize("k", [2, 3, 4])
def test_concatenation_tiles_downsampled_images_in_place(k):
    shape = (3, 32, 32)
    x = torch.rand(2, k, *shape)
    enc = create_encoder("concatenation", k=k, r=1, input_shape=shape)
    parity = enc(x)[:, 0]
    rows, cols = concatenation_grid(k)
    th, tw = 32 // rows, 32 // cols
    for i in range(k):
        row, col = divmod(i, cols)
        expected = F.interpolate(x[:, i], size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
        assert torch.allclose(parity[:, :, row * th : (row + 1) * th, col * tw : (col + 1) * tw], expected, atol=1e-6)
    # A leftover border (32 is not a multiple of 3) stays zero.
    assert float(parity[:, :, rows * th :, :].abs().sum() + parity[:, :, :, cols * tw :].abs().sum()) == 0.0


def test_concatenation_rejects_a_k_the_grid_cannot_tile():
    with pytest.raises(UsageError, match="cannot tile k=5 .*valid k for this input: 2, 3, 4"):
        create_encoder("concatenation", k=5, r=1, input_shape=(1, 8, 8))


def test_subtraction_is_the_papers_formula_for_r1():
    dec = create_decoder("subtraction", k=3, r=1)
    outputs, parity = torch.randn(4, 3, 10), torch.randn(4, 1, 10)
    for e in range(3):
        available = torch.ones(4, 4, dtype=torch.bool)
        available[:, e] = False
        decoded = dec.decode(torch.cat([outputs, parity], 1), available)
        others = sum(outputs[:, i] for i in range(3) if i != e)
        assert torch.allclose(decoded[:, e], parity[:, 0] - others, atol=1e-5)


def test_decoder_refuses_more_erasures_than_parities():
    dec = create_decoder("subtraction", k=3, r=1)
    available = torch.tensor([[False, False, True, True]])
    with pytest.raises(ValueError, match="cannot decode 2 erasures from 1"):
        dec.decode(torch.randn(1, 4, 10), available)


def test_code_matrix_minors_are_invertible():
    import itertools

    g = code_matrix(6, 3).double()
    for cols in itertools.combinations(range(6), 3):
        assert abs(float(torch.linalg.det(g[:, list(cols)]))) > 1e-9


@pytest.mark.parametrize("k,r", [(1, 1), (2, 0)])
def test_bad_k_r(k, r):
    with pytest.raises(UsageError):
        create_encoder("addition", k=k, r=r, input_shape=(1, 8, 8))


def test_projection_lays_each_query_into_its_own_slot():
    """Slot i of the coded query is a function of query i alone: changing query 2 changes only slot 2."""
    torch.manual_seed(0)
    k, shape = 4, (1, 8, 8)
    enc = create_encoder("projection", k=k, r=1, input_shape=shape)
    queries = torch.randn(3, k, *shape)
    changed = queries.clone()
    changed[:, 2] = torch.randn(3, *shape)
    before, after = enc(queries).flatten(2), enc(changed).flatten(2)
    slot = 64 // k
    moved = (before - after).abs().reshape(3, k, slot).amax(dim=(0, 2))
    assert moved[2] > 1e-3 and torch.all(moved[[0, 1, 3]] == 0)


@pytest.mark.parametrize("k,r", [(3, 1), (4, 2), (3, 3)])
def test_projection_with_slot_parity_models_decodes_exactly_for_any_r(k, r):
    """Where each worker's output is the slot network's own function of a query, f(X) (slot-mlp with one
    slot, no head bias), the parity models return sum_i G[j, i] f(X_i) exactly (the encoder scales slot i
    by G[j, i] and a slot's term is positively homogeneous), so subtraction rebuilds every pattern of
    up to r erasures exactly. A slot network with a hidden bias, or an encoder scaling after the
    parity model's nonlinearity, breaks this."""
    from parity_ray.models import create_model

    torch.manual_seed(0)
    shape = (1, 8, 8)
    enc = create_encoder("projection", k=k, r=r, input_shape=shape)
    dec = create_decoder("subtraction", k=k, r=r, input_shape=shape, num_outputs=10)
    dec.check_encoder(enc)
    parity = create_model("slot-mlp", input_shape=shape, num_classes=10, group_size=k)
    with torch.no_grad():
        parity.head.bias.zero_()
    slot = enc.slot_size

    def f(query):  # the same slot network on one query's compressed slot
        return parity.head(parity.slot(enc.net(query.reshape(query.shape[0], -1))[:, :slot]))

    queries = torch.randn(6, k, *shape, dtype=torch.float64)
    enc, parity = enc.double(), parity.double()
    with torch.no_grad():
        outputs = torch.stack([f(queries[:, i]) for i in range(k)], dim=1)
        coded = enc(queries)
        parities = torch.stack([parity(coded[:, j]) for j in range(r)], dim=1)
        workers = torch.cat([outputs, parities], dim=1)
        for e in range(1, r + 1):
            for available in erasure_patterns(k + r, e):
                decoded = dec.decode(workers, available.expand(6, -1))
                assert torch.allclose(decoded, outputs, atol=1e-8), (e, available)


def test_slot_mlp_returns_a_sum_of_one_function_of_each_slot():
    """What the subtraction decoder needs of a parity model: P(a, b) - P(a', b) = P(a, b') - P(a', b')
    (the slots add). A plain MLP of the same input fails this by far."""
    torch.manual_seed(0)
    from parity_ray.models import create_model

    def separability_gap(model):
        a, a2, b, b2 = (torch.randn(5, 32) for _ in range(4))
        p = lambda x, y: model(torch.cat([x, y], 1).reshape(5, 1, 8, 8))  # noqa: E731
        return ((p(a, b) - p(a2, b)) - (p(a, b2) - p(a2, b2))).abs().max().item()

    slot_mlp = create_model("slot-mlp", input_shape=(1, 8, 8), num_classes=10, group_size=2)
    plain = create_model("base-mlp", input_shape=(1, 8, 8), num_classes=10)
    assert separability_gap(slot_mlp) < 1e-5
    assert separability_gap(plain) > 1e-3


STARTS_AT_THE_SUMS = ["mlp", "conv"]


@pytest.mark.parametrize("name", STARTS_AT_THE_SUMS)
def test_learned_encoder_starts_as_the_linear_codes_sums_and_learns_a_residual(name):
    """At k = 12 the published random start left F answering the same for every coded query (loss at
    ln 10 for 5 epochs); the learned encoders now start at addition's coded queries, sum_i G[j, i] X_i
    (row j scaled to a largest entry of 1: the plain sum for row 0)."""
    torch.manual_seed(0)
    k, r, shape = 5, 2, (1, 8, 8)
    enc = create_encoder(name, k=k, r=r, input_shape=shape)
    queries = torch.randn(3, k, *shape)
    generator = code_matrix(k, r)
    sums = torch.einsum("rk,bk...->br...", generator / generator.amax(dim=1, keepdim=True), queries)
    assert torch.allclose(enc(queries), sums, atol=1e-5)
    assert torch.allclose(enc(queries)[:, 0], queries.sum(dim=1), atol=1e-5)
    (enc(queries) ** 2).sum().backward()
    assert enc.net[-1].weight.grad.abs().sum() > 0  # the residual trains from its zero start


@pytest.mark.parametrize("name", STARTS_AT_THE_SUMS)
def test_learned_encoder_start_stays_in_scale_at_a_large_r(name):
    """G[j, i] = (i + 1) ** j reaches 12 ** 13 at k = 12, r = 14; the start scales each row to 1."""
    enc = create_encoder(name, k=12, r=14, input_shape=(1, 4, 4))
    queries = torch.rand(2, 12, 1, 4, 4)
    assert enc(queries).abs().max() <= 12.0 + 1e-4


@pytest.mark.parametrize("name", STARTS_AT_THE_SUMS)
def test_a_learned_encoder_checkpoint_from_before_the_sums_loads_as_it_was_trained(name):
    torch.manual_seed(0)
    enc = create_encoder(name, k=3, r=1, input_shape=(1, 8, 8))
    with torch.no_grad():
        enc.net[-1].weight.normal_()
    old = {key: value for key, value in enc.state_dict().items() if key != "sum_skip"}  # as written before
    loaded = create_encoder(name, k=3, r=1, input_shape=(1, 8, 8))
    loaded.load_state_dict(old)
    queries = torch.randn(2, 3, 1, 8, 8)
    with torch.no_grad():
        enc.sum_skip.zero_()  # the network alone: what the checkpoint computed when it was written
    assert torch.allclose(loaded(queries), enc(queries))
    assert torch.allclose(create_encoder(name, k=3, r=1, input_shape=(1, 8, 8)).state_dict()["sum_skip"], torch.ones(()))


@pytest.mark.parametrize("k,r", [(3, 1), (4, 2), (3, 3)])
def test_corrected_subtraction_rebuilds_from_the_corrected_terms_and_returns_arrived_outputs(k, r):
    """A coded worker that returns sum_i G[j, i] (F_i + c(F_i)) is decoded exactly: every unavailable
    query gets F + c of its own output, every arrived query its own output unchanged."""
    torch.manual_seed(0)
    decoder = create_decoder("corrected-subtraction", k=k, r=r, num_outputs=5)
    with torch.no_grad():
        for p in decoder.correction.parameters():
            p.normal_()  # a trained correction, not its zero start
        own = torch.randn(4, k, 5)
        terms = own + decoder.correction(own)
        outputs = torch.cat([own, torch.einsum("rk,bkc->brc", code_matrix(k, r), terms)], dim=1)
        for e in range(1, r + 1):
            patterns = erasure_patterns(k + r, e)
            decoded = decoder.decode_patterns(outputs, patterns)
            arrived = patterns[:, :k].view(1, -1, k, 1)
            expected = torch.where(arrived, own.unsqueeze(1), terms.unsqueeze(1)).expand_as(decoded)
            assert torch.allclose(decoded, expected, atol=1e-3)
            one_by_one = torch.stack([decoder.decode(outputs, row.expand(len(outputs), -1)) for row in patterns], dim=1)
            assert torch.allclose(one_by_one, decoded, atol=1e-4)
            garbled = outputs.clone()
            garbled[:, ~patterns[0]] = float("nan")  # what an unavailable worker left must not matter
            assert torch.allclose(decoder.decode(garbled, patterns[0].expand(len(outputs), -1)), decoded[:, 0], atol=1e-4)


def test_corrected_subtraction_starts_as_subtraction():
    outputs, available = torch.randn(6, 5, 4), erasure_patterns(5, 2)[3].expand(6, -1)
    plain = create_decoder("subtraction", k=3, r=2)
    corrected = create_decoder("corrected-subtraction", k=3, r=2, num_outputs=4)
    assert torch.allclose(corrected.decode(outputs, available), plain.decode(outputs, available))
