"""Analysis of parity_ray experiments: tables, figures, notebooks and the static report.

>>> import analysis
>>> tables = analysis.load("results/q1")            # or an s3:// URI
>>> analysis.degraded_accuracy_table(tables.runs)  # the paper's main result, one row per run
"""

from .tables import (
    ErasureBreakdown,
    code_comparison_table,
    degraded_accuracy_table,
    erasure_breakdown,
    experiment_path,
    latency_cdf,
    latency_summary,
    learning_curves,
    load,
    run_labels,
)
from .figures import (
    degraded_accuracy_figure,
    erasure_figure,
    latency_cdf_figure,
    learning_curves_figure,
    to_png,
)

__all__ = [
    "ErasureBreakdown", "code_comparison_table", "degraded_accuracy_table", "erasure_breakdown", "experiment_path", "latency_cdf",
    "latency_summary", "learning_curves", "load", "run_labels", "degraded_accuracy_figure", "erasure_figure",
    "latency_cdf_figure", "learning_curves_figure", "to_png",
]
