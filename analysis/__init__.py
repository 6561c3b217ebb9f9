"""Analysis of parity_ray experiments: tables, figures, notebooks and the static report.

>>> from parity_ray import analysis
>>> tables = analysis.load("results/q1")            # or an s3:// URI
>>> analysis.degraded_accuracy_table(tables.runs)  # the paper's main result, one row per run
>>> analysis.differing_decodes(tables.predictions)  # what the report's instance explorer shows
"""

from .tables import (
    ErasureBreakdown,
    answer_paths,
    code_comparison_table,
    degraded_accuracy_table,
    erasure_breakdown,
    experiment_path,
    latency_by_path,
    latency_cdf,
    latency_summary,
    learning_curves,
    load,
    run_labels,
    simulation_context,
    simulation_labels,
    with_outcomes,
)
from .instances import (
    RunComparison,
    compare_runs,
    differing_decodes,
    group_members,
    instance_summary,
    lineage,
)
from .figures import (
    degraded_accuracy_figure,
    erasure_figure,
    instance_figure,
    latency_cdf_figure,
    learning_curves_figure,
    to_png,
)

__all__ = [
    "ErasureBreakdown", "code_comparison_table", "degraded_accuracy_table", "erasure_breakdown", "experiment_path", "latency_cdf",
    "latency_summary", "learning_curves", "load", "run_labels", "degraded_accuracy_figure", "erasure_figure",
    "latency_cdf_figure", "learning_curves_figure", "to_png", "with_outcomes", "RunComparison", "compare_runs",
    "differing_decodes", "group_members", "instance_summary", "lineage", "instance_figure",
    "answer_paths", "latency_by_path", "simulation_context", "simulation_labels",
]
