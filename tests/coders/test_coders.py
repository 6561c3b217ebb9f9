"""Encoders and decoders: shapes, channel alignment, tiling, and exact decoding for r >= 1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity_ray import UsageError
from parity_ray.coders import (
    code_matrix,
    concatenation_grid,
    create_decoder,
    create_encoder,
    list_decoders,
    list_encoders,
)

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]


@pytest.mark.parametrize("encoder", list_encoders())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k,r", [(2, 1), (3, 1), (4, 2)])
def test_every_encoder_maps_k_queries_to_its_coded_queries(encoder, shape, k, r):
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
