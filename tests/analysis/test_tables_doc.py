"""docs/tables.md's "Joining the tables" snippet, run as written on a real tuned and simulated experiment."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def joining_snippet() -> str:
    """The first ``python`` code block of docs/tables.md's "Joining the tables" section, verbatim."""
    text = (REPO / "docs" / "tables.md").read_text()
    section = text.split("### Joining the tables", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_join_of_runs_simulations_and_queries_runs(small_experiment, tmp_path, monkeypatch, capsys):
    # the snippet names the experiment "results/q1", as the quickstart makes it: a copy of the real one there
    shutil.copytree(small_experiment.uri, tmp_path / "results" / "q1")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(joining_snippet(), "docs/tables.md", "exec"), namespace)  # noqa: S102 - the documented code
    printed = capsys.readouterr().out
    assert "latency_ms" in printed and "decoded_accuracy" in printed

    tables = namespace["tables"]
    served, per_query = namespace["served"], namespace["per_query"]
    # every simulation row found its run, and every query its simulation row: nothing lost, nothing doubled
    assert len(served) == len(tables.simulations) > 0
    assert len(per_query) == len(tables.queries) > 0
    # one identity: the experiment's name in runs and simulations alike (not the path it was simulated by)
    assert set(tables.simulations.experiment) == set(tables.runs.experiment) == {"small"}
    # the served run's identity as columns, equal to the run's own
    runs = tables.runs.set_index("run_id")
    for column in ("dataset", "model", "k", "r"):
        expected = tables.simulations.run_id.map(runs[column])
        assert (tables.simulations[column].astype(object) == expected.astype(object)).all(), column
    assert set(per_query.dataset) == {"digits"} and set(per_query.k) == {2}
    assert pd.api.types.is_integer_dtype(tables.simulations.k) and pd.api.types.is_integer_dtype(tables.simulations.r)
