"""The parity-models family: linear codes over outputs (addition, concatenation -> subtraction).

Parity ``j`` stands for ``sum_i G[j, i] * F(X_i)`` where ``G`` is a Vandermonde matrix whose first
row is all ones (so ``r = 1`` is the published addition/subtraction code) and any r columns are
invertible (so any r erasures are decodable). A trained parity model learns to return that sum
from the coded query; with F itself as the worker the code is exact when F is linear.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import UsageError
from . import Decoder, Encoder, LinearDecoder, register_decoder, register_encoder

Tensor = torch.Tensor

MAX_LINEAR_R = 4  # the Vandermonde rows grow as k**(r-1); past this float32 decoding loses digits


def code_matrix(k: int, r: int) -> Tensor:
    """``G[j, i] = (i + 1) ** j``: row 0 is a plain sum; every r x r column minor is invertible."""
    # Built on the CPU even under a ``torch.device("meta")`` context (config validation), where
    # float64 factories go through Python decompositions that import torch._dynamo (seconds).
    nodes = torch.arange(1, k + 1, dtype=torch.float64, device="cpu")
    return torch.stack([nodes**j for j in range(r)]).float()


def coded_sums(generator: Tensor, queries: Tensor) -> Tensor:
    """``P_j = sum_i G[j, i] * X_i`` element-wise: ``(r, k)`` and ``(B, k, ...)`` -> ``(B, r, ...)``."""
    return torch.einsum("rk,bk...->br...", generator.to(queries.dtype), queries)


class LinearEncoder(Encoder):
    family = "parity-models"
    max_r = MAX_LINEAR_R

    def __init__(self, k: int, r: int, input_shape: Sequence[int], systematic=None):
        super().__init__(k, r, input_shape, systematic)
        self.register_buffer("generator", code_matrix(self.k, self.r), persistent=False)


@register_encoder("addition")
class AdditionEncoder(LinearEncoder):
    """``P_j = sum_i G[j, i] * X_i``, element-wise, so channel c of P mixes only channel c of the X_i."""

    linear_in_queries = True  # F(P_j) = sum_i G[j, i] F(X_i) for a linear F: exact with F as the worker

    def forward(self, queries: Tensor) -> Tensor:
        return coded_sums(self.generator, queries)


def concatenation_grid(k: int) -> Tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == k`` and as square as possible (2 -> 1x2, 4 -> 2x2)."""
    rows = max(d for d in range(1, int(k**0.5) + 1) if k % d == 0)
    return rows, k // rows


MIN_TILE = 2  # pixels per side below which a tile holds no usable image


def valid_concatenation_ks(input_shape: Sequence[int], k_max: int = 16) -> List[int]:
    out = []
    for k in range(2, k_max + 1):
        rows, cols = concatenation_grid(k)
        if input_shape[1] // rows >= MIN_TILE and input_shape[2] // cols >= MIN_TILE:
            out.append(k)
    return out


@register_encoder("concatenation")
class ConcatenationEncoder(LinearEncoder):
    """Downsample each of the k images (anti-aliased) and tile them into one image of the original size.

    The grid is ``rows x cols = k`` (1x2 for k=2, 1x3 for k=3, 2x2 for k=4, ...). When the
    image size is not a multiple of the grid, the leftover border stays zero. Parity ``j``
    scales tile ``i`` by ``G[j, i]`` so that ``r > 1`` stays a decodable linear code.
    """

    def __init__(self, k: int, r: int, input_shape: Sequence[int], systematic=None):
        super().__init__(k, r, input_shape, systematic)
        _, height, width = self.input_shape
        self.rows, self.cols = concatenation_grid(self.k)
        self.tile_h, self.tile_w = height // self.rows, width // self.cols
        if self.tile_h < MIN_TILE or self.tile_w < MIN_TILE:
            raise UsageError(
                f"concatenation cannot tile k={k} images of {height}x{width} into a {self.rows}x{self.cols} grid "
                f"(tiles under {MIN_TILE} px); valid k for this input: "
                f"{', '.join(map(str, valid_concatenation_ks(self.input_shape)))}"
            )

    def forward(self, queries: Tensor) -> Tensor:
        batch, k, channels, height, width = queries.shape
        tiles = F.interpolate(
            queries.reshape(batch * k, channels, height, width),
            size=(self.tile_h, self.tile_w),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        ).reshape(batch, k, channels, self.tile_h, self.tile_w)
        parity = queries.new_zeros(batch, self.r, channels, height, width)
        weights = self.generator.to(queries.dtype)
        for i in range(k):
            row, col = divmod(i, self.cols)
            ys, xs = row * self.tile_h, col * self.tile_w
            parity[:, :, :, ys : ys + self.tile_h, xs : xs + self.tile_w] = (
                weights[:, i].view(1, -1, 1, 1, 1) * tiles[:, i : i + 1]
            )
        return parity


@register_decoder("subtraction")
class SubtractionDecoder(LinearDecoder):
    """Rebuild erased outputs by subtracting the available ones from the parity outputs.

    For ``r = 1``: ``F(X_e) = Fp(P) - sum_{i != e} F(X_i)``. For ``r > 1`` the same idea solves the
    small linear system of the code for up to r erasures, in the least-squares sense when more
    parities arrived than outputs are missing (their errors then average out).
    """

    family = "parity-models"

    def __init__(self, k: int, r: int, systematic: bool = True):
        super().__init__(k, r, systematic)
        if not systematic:
            raise UsageError(f"decoder '{getattr(type(self), 'registry_name', type(self).__name__)}' decodes systematic codes only; use --systematic or the berrut decoder")
        self.register_buffer("generator", code_matrix(self.k, self.r), persistent=False)

    def check_encoder(self, encoder: Encoder) -> None:
        if not encoder.systematic:
            raise UsageError(f"decoder '{getattr(type(self), 'registry_name', type(self).__name__)}' cannot read a non-systematic code; use --systematic or the berrut decoder")

    def target(self, base_outputs: Tensor) -> Tensor:
        """What parity model j should output: ``sum_i G[j, i] F(X_i)``; (B, k, n) -> (B, r, n)."""
        return torch.einsum("rk,bkn->brn", self.generator.to(base_outputs.dtype), base_outputs)

    def decode_matrix(self, available) -> Tensor:
        k = self.k
        g = self.generator.detach().to("cpu", torch.float64)  # decode matrices are small: built on the CPU, cached, moved at use
        avail = torch.tensor(available, dtype=torch.bool)
        lost = (~avail[:k]).nonzero().flatten()
        kept = avail[:k].nonzero().flatten()
        parities = avail[k:].nonzero().flatten()
        matrix = torch.zeros(k, self.n, dtype=torch.float64)
        matrix[kept, kept] = 1.0
        if len(lost) == 0:
            return matrix
        if len(parities) < len(lost):
            raise ValueError(f"cannot decode {len(lost)} erasures from {len(parities)} parity outputs")
        # Parities P = G_A,lost F_lost + G_A,kept F_kept  =>  F_lost = pinv(G_A,lost) (P - G_A,kept F_kept)
        solve = torch.linalg.pinv(g[parities][:, lost])  # (e, a)
        matrix[lost.unsqueeze(1), (k + parities).unsqueeze(0)] = solve
        matrix[lost.unsqueeze(1), kept.unsqueeze(0)] = -solve @ g[parities][:, kept]
        return matrix
