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
* Byzantine workers (``byzantine=E``): :meth:`BerrutDecoder.drop_suspects` finds the E returned
  outputs least consistent with the code and marks them unavailable; the caller then decodes as
  for any erasure. :meth:`BerrutDecoder.decode` itself never locates, so a run's erasure figures
  are the same with and without ``byzantine`` (only the ``byzantine_*`` figures use the locator).

Why the locator works on ``y(z) D(z)``: the encoder sends ``sum_j w_j(z) X_j`` with
``w_j(z) = (s_j / (z - a_j)) / sum_l (s_l / (z - a_l))``. Multiplying by
``D(z) = sum_l s_l prod_{m != l} (z - a_m)`` (a polynomial of degree k - 1, known to both sides)
gives ``sum_j s_j X_j prod_{m != j} (z - a_m)``: a polynomial of degree k - 1 in z. So for a linear
F the returned outputs times ``D(z_n)`` are evaluations of one degree k - 1 polynomial, which is a
Reed-Solomon code: E wrong values among N returned are found by a Berlekamp-Welch fit
``P(z) = u(z) Q(z)``, ``deg P = k - 1 + E``, ``deg Q = E``, whenever ``N >= k + 2E``. Every
returned output enters the fit, so extra ones make the fit more robust. For a nonlinear F it holds
only approximately; ``locator_bound`` states where it was measured to work.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Sequence, Tuple

import torch

from ..errors import UsageError
from . import Encoder, LinearDecoder, register_decoder, register_encoder

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


# The locator's measured reach (benchmarks/locator.py: LeNet-5 on MNIST, 200 groups per cell, E wrong
# outputs of 5 output standard deviations among k + r returned). For a linear F, r >= 2E suffices
# (m >= k + 2E, the Reed-Solomon bound); for a trained network the rational fit needs spare outputs
# that grow with k. Every measured (k, E) at r >= 2E + locator_margin(k) located >= LOCATOR_BOUND:
# k = 2: 100% at r = 2E; k = 4: 99.8-100% at r = 2E + 2 (90.0% at E = 1, r = 2); k = 8: 96.0%,
# 98.2%, 98.7% for E = 1, 2, 3 at r = 2E + 2; k = 12: 96.5%, 99.2%, 98.5% at r = 2E + 4.
LOCATOR_BOUND = 0.95


def locator_margin(k: int) -> int:
    """Returned outputs beyond k + 2E the locator needs for ``LOCATOR_BOUND``: ``2 * ceil((k - 2) / 6)``."""
    return 2 * math.ceil(max(0, k - 2) / 6)


def locator_min_r(k: int, errors: int) -> int:
    """The smallest r at which ``errors`` Byzantine outputs are located (see ``LOCATOR_BOUND``)."""
    return 2 * errors + locator_margin(k) if errors else 0


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
        if self.byzantine and self.r < locator_min_r(self.k, self.byzantine):
            most = max(0, (self.r - locator_margin(self.k)) // 2)
            raise UsageError(
                f"berrut cannot locate {self.byzantine} Byzantine worker(s) reliably at k={self.k}, r={self.r}: it needs "
                f"r >= 2E + {locator_margin(self.k)} = {locator_min_r(self.k, self.byzantine)} (measured >= "
                f"{LOCATOR_BOUND:.0%} located, benchmarks/locator.py); valid byzantine for k={self.k}, r={self.r}: 0..{most}"
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
    @property
    def tolerated_stragglers(self) -> int:
        """Unavailable workers the locator still finds its E errors with: half of r beyond its need.

        Not all of it: ``locator_min_r`` was measured with every output back, at the full grid of
        points. With stragglers the returned points have gaps, and at k = 12 (LeNet-5, MNIST) leaving
        all of the spare r out located only 84-96% (E = 1: 91% at r = 14, 84% at r = 20), while half
        of it kept >= 95% at every r up to 2k (``benchmarks/locator.py`` measures both)."""
        return (self.r - locator_min_r(self.k, self.byzantine)) // 2 if self.byzantine else self.r

    def drop_suspects(self, outputs: Tensor, available: Tensor) -> Tensor:
        """The availability mask ``(B, n)`` with each group's E most suspect returned outputs removed.

        Decode with the returned mask (:meth:`decode`) to leave the suspects out.
        """
        available = available.bool().clone()
        for pattern in torch.unique(available, dim=0):
            rows = (available == pattern).all(dim=1).nonzero().flatten()
            used = pattern.nonzero().flatten()
            suspects = locate_errors(outputs[rows][:, used], [self.worker_points[i] for i in used.tolist()],
                                     self.byzantine, self.query_points)
            available[rows.unsqueeze(1), used[suspects]] = False
        return available


def _chebyshev_basis(z: Tensor, degree: int) -> Tensor:
    """``T_0..T_degree`` at z: (m,) -> (m, degree + 1)."""
    columns = [torch.ones_like(z), z]
    while len(columns) < degree + 1:
        columns.append(2 * z * columns[-1] - columns[-2])
    return torch.stack(columns[: degree + 1], dim=1)


def code_denominator(points: Sequence[float], query_points: Sequence[float]) -> Tensor:
    """``D(z_i) = sum_l s_l prod_{m != l} (z_i - a_m)``, scaled to a largest magnitude of 1: (len(points),).

    ``s_l`` are the signs :func:`berrut_weights` gives the query points, so ``y(z) D(z)`` is a
    polynomial of degree k - 1 for a linear F (see the module docstring).
    """
    z = torch.tensor(list(points), dtype=torch.float64)
    a = torch.tensor(list(query_points), dtype=torch.float64)
    sign = 1.0 - 2.0 * (a.argsort().argsort() % 2).to(torch.float64)
    diff = z.unsqueeze(1) - a.unsqueeze(0)  # (m, k)
    k = len(a)
    others = torch.stack([torch.cat([diff[:, :l], diff[:, l + 1:]], dim=1).prod(dim=1) for l in range(k)], dim=1)
    d = (others * sign).sum(dim=1)
    return d / d.abs().max().clamp_min(1e-300)


MAX_SUSPECT_SETS = 20_000  # C(m, E) candidate sets the locator compares; above it refuses (E too large for m)
_CHUNK_ELEMENTS = 1 << 24  # residual-tensor elements per batch chunk (~128 MB of float64)


@lru_cache(maxsize=64)
def _suspect_projections(points: Tuple[float, ...], query_points: Tuple[float, ...], errors: int):
    """``(sets (S, E), kept (S, m - E), projections (S, m - E, m - E))`` for every candidate set.

    For each way of leaving E of the m returned outputs out, the projection onto what a rational
    function ``P(z) / D(z)`` with ``deg P = k - 1`` cannot explain at the kept points. Depends on
    the points only, so it is computed once per erasure pattern and reused for every group.
    """
    m, k = len(points), len(query_points)
    sets = list(itertools.combinations(range(m), errors))
    if len(sets) > MAX_SUSPECT_SETS:
        raise UsageError(f"locating {errors} Byzantine output(s) among {m} compares {len(sets)} candidate sets "
                         f"(at most {MAX_SUSPECT_SETS}); use a smaller --byzantine")
    z = torch.tensor(list(points), dtype=torch.float64)
    model = _chebyshev_basis(z, min(k - 1, m - errors - 1)) / code_denominator(points, query_points).unsqueeze(1)
    kept = torch.tensor([[i for i in range(m) if i not in chosen] for chosen in sets], dtype=torch.long)
    columns = model[kept]  # (S, m - E, k)
    eye = torch.eye(m - errors, dtype=torch.float64)
    projections = eye - columns @ torch.linalg.pinv(columns)
    return torch.tensor(sets, dtype=torch.long).reshape(len(sets), errors), kept, projections


def locate_errors(outputs: Tensor, points: Sequence[float], errors: int, query_points: Sequence[float]) -> Tensor:
    """Indices (B, errors) into the m returned outputs ``(B, m, C)`` at worker ``points``: the suspects.

    For a linear F the outputs times ``D(z)`` (:func:`code_denominator`) lie on one polynomial of
    degree k - 1, i.e. ``y(z) = P(z) / D(z)``. For every set of E returned outputs the rest are
    fitted by such a function in the least-squares sense (all C coordinates, each its own P); the
    set whose removal leaves the smallest residual is the suspects: the maximum-likelihood choice
    under Gaussian noise, exact for a linear F whenever ``m >= k + 2E``, and far more robust for a
    nonlinear F than one algebraic (Berlekamp-Welch) fit (``benchmarks/locator.py`` measures both).
    Every returned output enters every fit, so returned outputs beyond ``k + 2E`` add robustness.
    """
    b, m, c = outputs.shape
    sets, kept, projections = _suspect_projections(tuple(points), tuple(query_points), int(errors))
    y = outputs.detach().cpu().double()
    y = y / y.std(dim=(1, 2), keepdim=True).clamp_min(1e-12)  # scale-free: the same choice for any logits' scale
    step = max(1, _CHUNK_ELEMENTS // max(1, len(sets) * (m - errors) * c))
    best = []
    for chunk in y.split(step):
        rest = chunk[:, kept]  # (b, S, m - E, C)
        residual = torch.einsum("sij,bsjc->bsic", projections, rest).square().sum(dim=(2, 3))  # (b, S)
        best.append(residual.argmin(dim=1))
    return sets[torch.cat(best)].to(outputs.device)
