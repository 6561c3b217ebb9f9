"""Encoder and decoder registries.

Shapes used throughout: ``k`` data queries and ``r`` parity queries per group,
``B`` groups a batch, ``n`` outputs per query (class scores).

* An encoder maps queries ``(B, k, C, H, W)`` to parity queries ``(B, r, C, H, W)``.
* A decoder defines what each parity model should output (``target``) and rebuilds
  unavailable outputs from any ``k`` of the ``k + r`` outputs (``decode``).

The built-in coders share one linear code over outputs: parity ``j`` stands for
``sum_i G[j, i] * F(X_i)`` where ``G`` is a Vandermonde matrix whose first row is
all ones (so ``r = 1`` is the published addition/subtraction code) and any
``r`` columns are invertible (so any ``r`` erasures are decodable).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UsageError
from .registry import Registry, Spec

Tensor = torch.Tensor

ENCODERS: Registry = Registry("encoder")
DECODERS: Registry = Registry("decoder")
register_encoder = ENCODERS.register
register_decoder = DECODERS.register


def list_encoders() -> List[str]:
    return ENCODERS.names()


def list_decoders() -> List[str]:
    return DECODERS.names()


def create_encoder(spec: Spec, *, k: int, r: int, input_shape: Sequence[int]) -> "Encoder":
    return ENCODERS.create(spec, k=k, r=r, input_shape=tuple(input_shape))


def create_decoder(spec: Spec, *, k: int, r: int) -> "Decoder":
    return DECODERS.create(spec, k=k, r=r)


def code_matrix(k: int, r: int) -> Tensor:
    """``G[j, i] = (i + 1) ** j``: row 0 is a plain sum; every r x r column minor is invertible."""
    nodes = torch.arange(1, k + 1, dtype=torch.float64)
    return torch.stack([nodes**j for j in range(r)]).float()


def _check_kr(k: int, r: int) -> None:
    if int(k) != k or k < 2:
        raise UsageError(f"k must be an integer >= 2, got {k}")
    if int(r) != r or r < 1:
        raise UsageError(f"r must be an integer >= 1, got {r}")


class Encoder(nn.Module):
    """Base class: ``forward(queries (B, k, C, H, W)) -> parity queries (B, r, C, H, W)``."""

    def __init__(self, k: int, r: int, input_shape: Sequence[int]):
        super().__init__()
        _check_kr(k, r)
        self.k, self.r, self.input_shape = int(k), int(r), tuple(input_shape)
        self.register_buffer("generator", code_matrix(self.k, self.r), persistent=False)


class Decoder(nn.Module):
    """Base class; subclasses define :meth:`target`, :meth:`decode` and :meth:`decode_each_single`."""

    def __init__(self, k: int, r: int):
        super().__init__()
        _check_kr(k, r)
        self.k, self.r = int(k), int(r)


@register_encoder("addition")
class AdditionEncoder(Encoder):
    """``P_j = sum_i G[j, i] * X_i``, element-wise, so channel c of P mixes only channel c of the X_i."""

    def forward(self, queries: Tensor) -> Tensor:
        return torch.einsum("rk,bk...->br...", self.generator.to(queries.dtype), queries)


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
class ConcatenationEncoder(Encoder):
    """Downsample each of the k images (anti-aliased) and tile them into one image of the original size.

    The grid is ``rows x cols = k`` (1x2 for k=2, 1x3 for k=3, 2x2 for k=4, ...). When the
    image size is not a multiple of the grid, the leftover border stays zero. Parity ``j``
    scales tile ``i`` by ``G[j, i]`` so that ``r > 1`` stays a decodable linear code.
    """

    def __init__(self, k: int, r: int, input_shape: Sequence[int]):
        super().__init__(k, r, input_shape)
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
class SubtractionDecoder(Decoder):
    """Rebuild erased outputs by subtracting the available ones from the parity outputs.

    For ``r = 1``: ``F(X_e) = Fp(P) - sum_{i != e} F(X_i)``. For ``r > 1`` the same idea
    solves the small linear system of the code for up to ``r`` erasures.
    """

    def __init__(self, k: int, r: int):
        super().__init__(k, r)
        self.register_buffer("generator", code_matrix(self.k, self.r), persistent=False)

    def target(self, outputs: Tensor) -> Tensor:
        """What parity model j should output: ``sum_i G[j, i] F(X_i)``; (B, k, n) -> (B, r, n)."""
        return torch.einsum("rk,bkn->brn", self.generator.to(outputs.dtype), outputs)

    def decode_each_single(self, outputs: Tensor, parity_outputs: Tensor) -> Tensor:
        """Reconstruction of every position e from every parity j, all else available: (B, r, k, n)."""
        g = self.generator.to(outputs.dtype)
        residual = parity_outputs - self.target(outputs)  # (B, r, n) = Fp_j - sum_i G_ji F_i
        # F_e = (Fp_j - sum_{i != e} G_ji F_i) / G_je = F_e + residual_j / G_je
        return outputs.unsqueeze(1) + residual.unsqueeze(2) / g.view(1, self.r, self.k, 1)

    def decode(self, outputs: Tensor, parity_outputs: Tensor, erased: Tensor, parity_available: Tensor = None) -> Tensor:
        """Fill the erased slots of ``outputs`` (B, k, n).

        ``erased`` (B, k) marks unavailable data outputs (their values are ignored);
        ``parity_available`` (B, r) marks parity outputs that arrived (default: all).
        Raises ``ValueError`` for a group with more erasures than available parities.
        """
        erased = erased.bool()
        if parity_available is None:
            parity_available = torch.ones(outputs.shape[0], self.r, dtype=torch.bool, device=outputs.device)
        parity_available = parity_available.bool()
        result = outputs.clone()
        g = self.generator.to(torch.float64)
        patterns = torch.cat([erased, parity_available], dim=1)
        for pattern in torch.unique(patterns, dim=0):
            lost = pattern[: self.k].nonzero().flatten()
            if len(lost) == 0:
                continue
            arrived = pattern[self.k :].nonzero().flatten()
            if len(arrived) < len(lost):
                raise ValueError(f"cannot decode {len(lost)} erasures from {len(arrived)} parity outputs")
            rows = (patterns == pattern).all(dim=1)
            use = arrived[: len(lost)]
            kept = (~pattern[: self.k]).nonzero().flatten()
            known = torch.einsum("pk,bkn->bpn", g[use][:, kept], outputs[rows][:, kept].double())
            rhs = parity_outputs[rows][:, use].double() - known  # (b, e, n)
            solved = torch.linalg.solve(g[use][:, lost], rhs)  # (b, e, n)
            block = result[rows]
            block[:, lost] = solved.to(outputs.dtype)
            result[rows] = block
        return result


__all__ = [
    "AdditionEncoder",
    "ConcatenationEncoder",
    "DECODERS",
    "Decoder",
    "ENCODERS",
    "Encoder",
    "SubtractionDecoder",
    "code_matrix",
    "concatenation_grid",
    "create_decoder",
    "create_encoder",
    "list_decoders",
    "list_encoders",
    "register_decoder",
    "register_encoder",
    "valid_concatenation_ks",
]
