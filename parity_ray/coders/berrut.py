"""Berrut rational-interpolation codes (ApproxIFER): nothing to train, any base model, any k and r.

The k queries sit at Chebyshev points of the first kind ``a_j``; worker n receives the Berrut
interpolant of the queries evaluated at its own point ``z_n``, and every worker runs the deployed
model F (or, new here, a trained parity model). The decoder interpolates the returned outputs
back at the ``a_j``. The encoder and decoder share one function for the points, so they can never
disagree (the public systematic decoder interpolated at other points than its encoder used).

* non-systematic (ApproxIFER): ``N = k + r`` workers at ``z_n = cos(n pi / N)``; every output is
  rebuilt.
* systematic: the k raw queries go to F (their workers sit at the ``a_j`` themselves, where the
  interpolant is exact) and r coded workers sit at the r points of ``cos(n pi / N)`` farthest from
  every ``a_j``; available outputs come back unchanged.
* Byzantine workers (``byzantine=E``, needs ``r >= 2E``): a rational fit ``P(z) = y(z) Q(z)`` with
  ``deg Q = E`` to the returned outputs; the E returned points where ``|Q|`` is smallest are the
  suspects, and decoding leaves them out.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence, Tuple

import torch

from ..errors import UsageError
from . import Decoder, Encoder, LinearDecoder, register_decoder, register_encoder

Tensor = torch.Tensor


@lru_cache(maxsize=256)
def berrut_points(k: int, r: int, systematic: bool) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(query points a (k,), worker points (k + r,))``; for a systematic code workers 0..k-1 sit at a."""
    query = [math.cos((2 * j + 1) * math.pi / (2 * k)) for j in range(k)]
    n = k + r
    chebyshev2 = [math.cos(i * math.pi / n) for i in range(n)]
    if not systematic:
        return tuple(query), tuple(chebyshev2)
    # The r candidates farthest from every query point (ties by index), kept in index order.
    distance = [min(abs(z - a) for a in query) for z in chebyshev2]
    chosen = sorted(sorted(range(n), key=lambda i: (-distance[i], i))[:r])
    return tuple(query), tuple(query) + tuple(chebyshev2[i] for i in chosen)


def berrut_weights(nodes: Sequence[float], at: Sequence[float]) -> Tensor:
    """Berrut's first-form weights: ``W[t, l]`` so that ``f(at[t]) ~ sum_l W[t, l] f(nodes[l])``.

    The sign alternates with each node's rank along the axis (Berrut's rule for ordered nodes);
    a point that coincides with a node takes that node's value exactly.
    """
    nodes_t = torch.tensor(list(nodes), dtype=torch.float64)
    at_t = torch.tensor(list(at), dtype=torch.float64)
    rank = nodes_t.argsort().argsort()
    sign = 1.0 - 2.0 * (rank % 2).to(torch.float64)
    diff = at_t.unsqueeze(1) - nodes_t.unsqueeze(0)  # (T, L)
    exact = diff.abs() < 1e-12
    terms = sign / torch.where(exact, torch.ones_like(diff), diff)
    weights = terms / terms.sum(dim=1, keepdim=True)
    hit = exact.any(dim=1)
    return torch.where(hit.unsqueeze(1), exact.to(torch.float64), weights)


@register_encoder("berrut")
class BerrutEncoder(Encoder):
    """Coded query n = the Berrut interpolant of the k queries at the worker's point."""

    family = "berrut"
    default_systematic = False  # ApproxIFER's scheme; --systematic sends the raw queries to F as well
    evaluates_with_base = True  # nothing to train: evaluated (--epochs 0) with no worker named, every worker is F
    supports_non_systematic = True

    def __init__(self, k: int, r: int, input_shape: Sequence[int], systematic=None):
        super().__init__(k, r, input_shape, systematic)
        query, workers = berrut_points(self.k, self.r, self.systematic)
        coded_points = workers[self.k:] if self.systematic else workers
        self.register_buffer("weights", berrut_weights(query, coded_points).float(), persistent=False)  # (m, k)

    def forward(self, queries: Tensor) -> Tensor:
        return torch.einsum("mk,bk...->bm...", self.weights.to(queries.dtype), queries)


@register_decoder("berrut")
class BerrutDecoder(LinearDecoder):
    """Interpolate the returned outputs at the query points (exactly the points the encoder used)."""

    family = "berrut"

    def __init__(self, k: int, r: int, systematic: bool = False, byzantine: int = 0):
        super().__init__(k, r, systematic)
        self.byzantine = int(byzantine)
        if self.byzantine < 0:
            raise UsageError(f"byzantine must be >= 0, got {byzantine}")
        if 2 * self.byzantine > self.r:
            raise UsageError(
                f"berrut cannot locate {self.byzantine} Byzantine worker(s) with r={self.r}: it needs r >= 2E "
                f"(k + S + 2E workers); valid byzantine for r={self.r}: 0..{self.r // 2}"
            )
        self.query_points, self.worker_points = berrut_points(self.k, self.r, self.systematic)

    def check_encoder(self, encoder: Encoder) -> None:
        if not isinstance(encoder, BerrutEncoder):
            raise UsageError(
                f"decoder 'berrut' can only read the berrut encoder's points, not encoder "
                f"'{getattr(type(encoder), 'registry_name', type(encoder).__name__)}'; use --encoder berrut"
            )
        if encoder.systematic != self.systematic:
            raise UsageError("berrut encoder and decoder disagree on --systematic")

    def decode_matrix(self, available) -> Tensor:
        used = [i for i, a in enumerate(available) if a]
        if not used:
            raise ValueError("cannot decode: no worker output arrived")
        matrix = torch.zeros(self.k, self.n, dtype=torch.float64)
        matrix[:, used] = berrut_weights([self.worker_points[i] for i in used], self.query_points)
        return matrix

    # ------------------------------------------------------------------ Byzantine workers
    def decode(self, outputs: Tensor, available: Tensor, locate: bool = True) -> Tensor:
        """Interpolate; with ``byzantine=E`` (and ``locate``) the E most suspect outputs are left out first."""
        if self.byzantine and locate:
            available = self.drop_suspects(outputs, available)
        return super().decode(outputs, available)

    def decode_patterns(self, outputs: Tensor, available: Tensor) -> Tensor:
        if self.byzantine:  # suspects differ per group: decode group by group
            return Decoder.decode_patterns(self, outputs, available)
        return super().decode_patterns(outputs, available)

    def drop_suspects(self, outputs: Tensor, available: Tensor) -> Tensor:
        """The availability mask with each group's E most suspect returned outputs removed."""
        available = available.bool().clone()
        for pattern in torch.unique(available, dim=0):
            rows = (available == pattern).all(dim=1).nonzero().flatten()
            used = pattern.nonzero().flatten()
            suspects = locate_errors(outputs[rows][:, used], [self.worker_points[i] for i in used.tolist()], self.byzantine)
            available[rows.unsqueeze(1), used[suspects]] = False
        return available


def _chebyshev_basis(z: Tensor, degree: int) -> Tensor:
    """``T_0..T_degree`` at z: (m,) -> (m, degree + 1)."""
    columns = [torch.ones_like(z), z]
    while len(columns) < degree + 1:
        columns.append(2 * z * columns[-1] - columns[-2])
    return torch.stack(columns[: degree + 1], dim=1)


def locate_errors(outputs: Tensor, points: Sequence[float], errors: int) -> Tensor:
    """Indices (B, errors) of the returned outputs a rational fit finds least consistent.

    Fits, per group and jointly over the C output coordinates, ``P_c(z) = y_c(z) Q(z)`` with
    ``Q = T_E + sum_{d<E} q_d T_d`` (Chebyshev basis, for conditioning on [-1, 1]) and
    ``deg P = m - 2E - 1 + E`` in the least-squares sense; a wrong output forces a root of Q
    next to its point, so the E points with the smallest ``|Q(z_i)|`` are the suspects.
    """
    b, m, c = outputs.shape
    z = torch.tensor(list(points), dtype=torch.float64, device=outputs.device)
    degree_p = max(0, m - errors - 1 - errors)
    basis_p = _chebyshev_basis(z, degree_p)  # (m, dp+1)
    basis_q = _chebyshev_basis(z, errors)  # (m, E+1)
    y = outputs.double()
    y = (y - y.mean(dim=(1, 2), keepdim=True)) / y.std(dim=(1, 2), keepdim=True).clamp_min(1e-9)
    # Unknowns: P coefficients (C x (dp+1)), then q_0..q_{E-1}. Rows: (point i, coordinate c).
    eye = torch.eye(c, dtype=torch.float64, device=outputs.device)
    p_block = torch.einsum("id,ce->iced", basis_p, eye).reshape(m * c, c * (degree_p + 1))
    p_block = p_block.unsqueeze(0).expand(b, -1, -1)
    q_block = -(y.unsqueeze(-1) * basis_q[:, :errors].unsqueeze(0).unsqueeze(2)).reshape(b, m * c, errors)
    system = torch.cat([p_block, q_block], dim=2)
    rhs = (y * basis_q[:, errors].view(1, m, 1)).reshape(b, m * c, 1)
    # gelsd (SVD-based: rank-deficient systems are fine) exists on the CPU only; the systems are small.
    solution = torch.linalg.lstsq(system.cpu(), rhs.cpu(), driver="gelsd").solution[:, -errors:, 0]
    solution = solution.to(outputs.device)  # (B, E)
    q_values = basis_q[:, errors].unsqueeze(0) + torch.einsum("id,bd->bi", basis_q[:, :errors], solution)
    return q_values.abs().topk(errors, dim=1, largest=False).indices
