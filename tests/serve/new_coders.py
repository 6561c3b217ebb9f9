"""A user's own code, written outside the registry and entered as a class-spec ``{"cls": ...}``.

It follows the coder contract (``parity_ray.coders.Decoder``) without subclassing the platform's
bases: ``encoder(queries (B, k, C, H, W)) -> (B, num_coded, C, H, W)`` with ``systematic`` and
``num_coded``; ``decoder.decode(outputs (B, n, C), available (B, n)) -> (B, k, C)``. The serving
tests run the registered coders themselves; this one checks that a class-spec code serves too.
"""

from __future__ import annotations

import torch
from torch import nn


def vandermonde(k: int, r: int) -> torch.Tensor:
    nodes = torch.arange(1, k + 1, dtype=torch.float64)
    return torch.stack([nodes**j for j in range(r)]).float()


class LinearSystematicEncoder(nn.Module):
    """Coded query j = sum_i G[j, i] X_i (the addition code for r = 1)."""

    systematic = True

    def __init__(self, k: int, r: int, input_shape=None):
        super().__init__()
        self.k, self.r, self.num_coded = k, r, r
        self.register_buffer("generator", vandermonde(k, r), persistent=False)

    def forward(self, queries):
        return torch.einsum("rk,bk...->br...", self.generator.to(queries.dtype), queries)


class LinearSystematicDecoder(nn.Module):
    """Least squares over the available rows of [I; G]: exact for any k available outputs."""

    def __init__(self, k: int, r: int):
        super().__init__()
        self.k, self.r = k, r
        self.register_buffer("full", torch.cat([torch.eye(k), vandermonde(k, r)]).double(), persistent=False)

    def decode(self, outputs, available):
        result = torch.zeros(outputs.shape[0], self.k, outputs.shape[2], dtype=outputs.dtype)
        for b in range(outputs.shape[0]):
            rows = available[b].nonzero().flatten()
            solution = torch.linalg.lstsq(self.full[rows], outputs[b, rows].double()).solution
            result[b] = solution.to(outputs.dtype)
        return result
