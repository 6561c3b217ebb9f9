"""95% intervals for the latency figures every serving table reports (one owner for how they are made).

* :func:`t_interval`: from independent replications' values (a sweep cell's replications, a
  simulation's repetitions): the point plus or minus Student's t (R - 1 degrees of freedom) times
  their standard error.
* :func:`bootstrap_interval`: from one run's latencies: the percentile bootstrap of a percentile
  (resampling the queries with replacement, seeded), what one Serve run's p50/p99/p99.9 can claim.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

import numpy as np

LEVEL = 0.95
RESAMPLES = 1000

Interval = Tuple[Optional[float], Optional[float]]


def t_interval(values: Iterable[Optional[float]], point: Optional[float] = None) -> Interval:
    """``point`` (default: the values' mean) plus or minus t x standard error; (None, None) below 2 values."""
    from scipy import stats

    finite = np.asarray([v for v in values if v is not None and v == v], dtype=float)
    if len(finite) < 2:
        return None, None
    centre = float(finite.mean()) if point is None else float(point)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, len(finite) - 1) * finite.std(ddof=1) / np.sqrt(len(finite)))
    return centre - half, centre + half


def bootstrap_interval(latencies: np.ndarray, percentile: float, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """The percentile bootstrap interval of ``percentile`` of ``latencies``; (None, None) below 20 values."""
    latencies = np.asarray(latencies, dtype=float)
    if len(latencies) < 20:
        return None, None
    rng = np.random.default_rng([seed, 4099])
    estimates = np.empty(resamples)
    for start in range(0, resamples, 100):  # blocks of 100 resamples: bounded memory at any run size
        stop = min(start + 100, resamples)
        picks = rng.integers(0, len(latencies), size=(stop - start, len(latencies)))
        estimates[start:stop] = np.percentile(latencies[picks], percentile, axis=1)
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(estimates, [tail, 100 - tail])
    return float(lo), float(hi)
