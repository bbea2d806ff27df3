"""A fit in a notebook (issue 30), run in a headless Jupyter kernel (nbclient): the progress of sampling shows
in the cell's output while it runs, and the fit displays as HTML with the lme4-style summary and the verdict."""
from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import SPECS


@pytest.mark.sampling
def test_a_notebook_fit_shows_progress_and_a_summary(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import stangen\n"
                                  f"fit = stangen.fit({str(SPECS / 'sleepstudy.yaml')!r}, backend='pystan')"),
        nbformat.v4.new_code_cell("fit"),
        nbformat.v4.new_code_cell(f"quiet = stangen.fit({str(SPECS / 'sleepstudy.yaml')!r}, backend='pystan', "
                                  "quiet=True, draws=100, warmup=100)"),
    ])
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    fitting, shown, quiet = (cell.outputs for cell in notebook.cells)
    progress = "".join(o.get("text", "") for o in fitting if o.output_type == "stream" and o.name == "stderr")
    assert "chain 1:" in progress and "chain 4:" in progress and "sampling" in progress
    page = next(o for o in shown if o.output_type == "execute_result").data["text/html"]
    assert "Random effects" in page and "convergence: pass" in page
    assert not any(o.output_type == "stream" and "chain 1:" in o.get("text", "") for o in quiet)
