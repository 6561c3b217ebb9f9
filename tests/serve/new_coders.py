"""Coders written to the new coder interface, for serving tests (entered as class-specs).

* ``encoder(queries (B, k, C, H, W)) -> (B, num_coded, C, H, W)``, with ``systematic`` and
  ``num_coded`` (r when systematic, k + r when not);
* ``decoder.decode(outputs (B, n, C), available (B, n)) -> (B, k, C)``, n = k + r slots.

They stand in for the platform's own coders of that interface, so the Serve layer can be tested
against every kind of code: systematic and not, linear and learned (nonlinear), r > 1.
"""

from __future__ import annotations

import math

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


def _berrut_weights(z: float, points) -> torch.Tensor:
    for j, a in enumerate(points):
        if abs(z - a) < 1e-12:
            w = torch.zeros(len(points), dtype=torch.float64)
            w[j] = 1.0
            return w
    terms = torch.tensor([(-1) ** j / (z - a) for j, a in enumerate(points)], dtype=torch.float64)
    return terms / terms.sum()


class BerrutEncoder(nn.Module):
    """Non-systematic Berrut code (ApproxIFER): all n = k + r workers get rational interpolants."""

    systematic = False

    def __init__(self, k: int, r: int, input_shape=None):
        super().__init__()
        self.k, self.r, self.num_coded = k, r, k + r
        n = k + r
        self.query_points = [math.cos((2 * j + 1) * math.pi / (2 * k)) for j in range(k)]
        self.worker_points = [math.cos(i * math.pi / n) for i in range(n)]
        weights = torch.stack([_berrut_weights(z, self.query_points) for z in self.worker_points]).float()
        self.register_buffer("weights", weights, persistent=False)  # (n, k)

    def forward(self, queries):
        return torch.einsum("nk,bk...->bn...", self.weights.to(queries.dtype), queries)


class BerrutDecoder(nn.Module):
    def __init__(self, k: int, r: int):
        super().__init__()
        self.k, self.r = k, r
        n = k + r
        self.query_points = [math.cos((2 * j + 1) * math.pi / (2 * k)) for j in range(k)]
        self.worker_points = [math.cos(i * math.pi / n) for i in range(n)]

    def decode(self, outputs, available):
        result = torch.zeros(outputs.shape[0], self.k, outputs.shape[2], dtype=outputs.dtype)
        for b in range(outputs.shape[0]):
            slots = available[b].nonzero().flatten().tolist()
            points = [self.worker_points[i] for i in slots]
            for j, a in enumerate(self.query_points):
                w = _berrut_weights(a, points).to(outputs.dtype)
                result[b, j] = (w[:, None] * outputs[b, slots]).sum(0)
        return result


class MLPEncoder(nn.Module):
    """A learned (nonlinear) systematic encoder: the k queries flattened -> MLP -> r coded queries."""

    systematic = True

    def __init__(self, k: int, r: int, input_shape, hidden: int = 32):
        super().__init__()
        self.k, self.r, self.num_coded, self.input_shape = k, r, r, tuple(input_shape)
        size = math.prod(self.input_shape)
        self.net = nn.Sequential(nn.Linear(k * size, hidden), nn.ReLU(), nn.Linear(hidden, r * size))

    def forward(self, queries):
        b = queries.shape[0]
        return self.net(queries.reshape(b, -1)).reshape((b, self.r) + self.input_shape)


class MLPDecoder(nn.Module):
    """A learned (nonlinear) decoder: the n outputs (unavailable ones zeroed) -> MLP -> k outputs."""

    def __init__(self, k: int, r: int, num_classes: int, hidden: int = 32):
        super().__init__()
        self.k, self.r, self.classes = k, r, num_classes
        self.net = nn.Sequential(nn.Linear((k + r) * num_classes, hidden), nn.ReLU(), nn.Linear(hidden, k * num_classes))

    def decode(self, outputs, available):
        masked = outputs * available[:, :, None].to(outputs.dtype)
        return self.net(masked.reshape(outputs.shape[0], -1)).reshape(outputs.shape[0], self.k, self.classes)
