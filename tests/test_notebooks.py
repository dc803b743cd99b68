"""Runs every notebook top to bottom, as a reader would; any error in any cell fails the test."""
import glob
import os
import shutil
import time

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_five_notebooks():
    assert [os.path.basename(n) for n in NOTEBOOKS] == [
        "01_bpe.ipynb", "02_transformer.ipynb", "03_adafactor.ipynb", "04_training.ipynb", "05_sampling.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path):
    folder = os.path.dirname(path)
    for leftover in glob.glob(os.path.join(folder, "nb0*_*")):  # outputs of an earlier run
        shutil.rmtree(leftover)
    notebook = nbformat.read(path, as_version=4)
    start = time.time()
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    print(f"{os.path.basename(path)}: {time.time() - start:.0f} s")
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
