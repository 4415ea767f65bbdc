"""docs/explore-results.ipynb, the example of fer_bench.open_results: stored without outputs, and every cell runs
(in a kernel of this interpreter, from the notebook's folder so its relative paths hold) without an error."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "explore-results.ipynb"


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells(notebook))


def test_every_cell_of_the_notebook_runs_and_the_figure_is_shown():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises on a failing cell
    outputs = [output for cell in code_cells(notebook) for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert all(cell.execution_count for cell in code_cells(notebook))
    # the confusion figure reaches the page as an image, not as "<Figure size ...>" text
    assert any("image/png" in output.get("data", {}) for output in outputs)
