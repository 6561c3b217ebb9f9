"""The analysis notebooks: committed clean, and executed headless (nbclient) against a real experiment.

The experiment is injected through ``$PARITY_RAY_EXPERIMENT``, which the notebooks read after
their ``parameters`` cell (``analysis.experiment_path``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from parity_ray.analysis.tables import EXPERIMENT_ENV

NOTEBOOKS = Path(__file__).resolve().parents[2] / "analysis" / "notebooks"
NAMES = ["degraded_accuracy", "tail_latency", "erasure_analysis"]
FIGURES = {"degraded_accuracy": 2, "tail_latency": 1, "erasure_analysis": 2}  # plots each one draws


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean_with_a_parameters_cell(name):
    book = _read(name)
    nbformat.validate(book)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), "commit notebooks without outputs"
    assert "parameters" in code[0].metadata.get("tags", [])
    assert code[0].source.startswith('EXPERIMENT = "results/q1"')
    assert "analysis.experiment_path(EXPERIMENT)" in code[1].source
    assert book.cells[0].cell_type == "markdown" and EXPERIMENT_ENV in book.cells[0].source


def _execute(name: str, experiment: str, monkeypatch) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    monkeypatch.setenv(EXPERIMENT_ENV, experiment)  # the kernel inherits this process's environment
    book = _read(name)
    NotebookClient(book, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return book


def _outputs(book: nbformat.NotebookNode) -> list:
    return [out for cell in book.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_headless_on_a_real_experiment(name, small_experiment, monkeypatch):
    book = _execute(name, small_experiment.uri, monkeypatch)
    outputs = _outputs(book)
    assert not [out for out in outputs if out.output_type == "error"]
    assert sum("image/png" in out.get("data", {}) for out in outputs) == FIGURES[name]
    assert small_experiment.uri in "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    html = "".join(out.get("data", {}).get("text/html", "") for out in outputs)
    expected = {"degraded_accuracy": "speech-commands", "tail_latency": "replication", "erasure_analysis": "lost_by_decoding"}
    assert expected[name] in html


def test_tail_latency_notebook_says_when_there_is_no_simulation(small_experiment, monkeypatch):
    book = _execute("tail_latency", small_experiment.no_simulation, monkeypatch)
    outputs = _outputs(book)
    assert "no simulation in this experiment" in "".join(out.get("text", "") for out in outputs)
    assert not any("image/png" in out.get("data", {}) for out in outputs)
