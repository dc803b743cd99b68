"""Runs every notebook top to bottom, as a reader would; any error in any cell fails the test.
Also checks notebook 1's exercise checks and the setup cell that opens every notebook."""
import ast
import glob
import os
import shutil
import subprocess
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_six_notebooks():
    assert [os.path.basename(n) for n in NOTEBOOKS] == [
        "01_bpe.ipynb", "02_transformer.ipynb", "03_adafactor.ipynb", "04_training.ipynb", "05_sampling.ipynb",
        "06_will_it_fit.ipynb"]


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


# ---- the exercises' checks and the setup cell that opens every notebook ----------------------------------


def code_cells(name):
    notebook = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


# one tempting mistake per exercise, per notebook that has exercises
WRONG_ANSWERS = {
    "01_bpe.ipynb": {1: 32, 2: [256, 256, 256, 256], 3: (b".", b" "), 4: 50257, 5: 4},
    "02_transformer.ipynb": {1: 8, 2: [4, 5], 3: 12, 4: 5322240, 5: 2},
    "03_adafactor.ipynb": {1: 2 * 768 * 3072, 2: 0.0625, 3: 0.01, 4: 768 + 3072},
    "04_training.ipynb": {1: 4.0, 2: 12.0, 3: 5},
    "05_sampling.ipynb": {1: 37_748_736, 2: 128, 3: [0.25, 0.0625, 0.0625], 4: 2, 5: 6.931},
    "06_will_it_fit.ipynb": {1: 0.00025, 2: 2, 3: 6.23, 4: 60, 5: 52_428_800_000},
}


@pytest.mark.parametrize("name", sorted(WRONG_ANSWERS))
def test_exercise_checks(name, capsys):
    """Each check_N says "not answered yet" to ..., rejects a wrong answer with a hint, and accepts
    the answer of the Solutions cell. Only the cells defining the checks run, not the notebook."""
    sources = code_cells(name)
    namespace = {}
    for source in sources:
        if "def check_" in source:
            exec(source, namespace)
    checks = sorted(int(name[len("check_"):]) for name in namespace if name.startswith("check_"))
    assert 3 <= len(checks) <= 5 and checks == list(range(1, len(checks) + 1))
    for n in checks:  # every exercise cell holds the placeholder and calls its check
        assert any(f"answer_{n} = ..." in s and f"check_{n}(answer_{n})" in s for s in sources), n
    solutions = {}  # N -> the literal answer of check_N(...) in the Solutions cell (the last code cell)
    for node in ast.walk(ast.parse(sources[-1])):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "").startswith("check_"):
            solutions[int(node.func.id[len("check_"):])] = ast.literal_eval(node.args[0])
    assert sorted(solutions) == checks
    for n in checks:
        check = namespace[f"check_{n}"]
        check(...)
        assert "not answered yet" in capsys.readouterr().out
        with pytest.raises(AssertionError) as wrong:
            check(WRONG_ANSWERS[name][n])
        assert str(wrong.value)  # a hint, not a bare assert
        check(solutions[n])
        assert "correct" in capsys.readouterr().out


def setup_cell(repo_url):
    """Notebook 1's first code cell (the same in every notebook), with REPO_URL set."""
    source = code_cells("01_bpe.ipynb")[0]
    assert 'REPO_URL = ""' in source and "import tensorflow" not in source
    return source.replace('REPO_URL = ""', f"REPO_URL = {repo_url!r}", 1)


@pytest.mark.parametrize("case", ["empty", "unreachable"])
def test_setup_cell_without_the_repository(tmp_path, case):
    """Opened alone (no data.py to import): one line, no traceback, in plain Python and in Jupyter.
    The unreachable address is a file:// path that does not exist: no network is touched."""
    repo_url = "" if case == "empty" else (tmp_path / "missing.git").as_uri()
    expected = "Set REPO_URL" if case == "empty" else "Could not clone"
    workdir = tmp_path / "alone"  # its parent holds no data.py
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", setup_cell(repo_url)], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=120)
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode != 0 and len(lines) == 1 and expected in lines[0], lines
    assert not (workdir / "gpt2-tf").exists()

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup_cell(repo_url))])
    NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    outputs = notebook.cells[0].outputs
    shown = [line for o in outputs for line in (o.get("traceback") or o.get("text", "").splitlines())]
    assert len(shown) == 1 and expected in shown[0] and "Traceback" not in shown[0], outputs


def test_setup_cells_are_one_cell():
    """Every notebook that opens with the course's setup cell has it word for word, but for the
    line naming its extra packages: one cell to fix, tested above through notebook 1."""
    def without_extras(source):
        return [line for line in source.splitlines() if not line.startswith("EXTRA_PACKAGES")]
    first = without_extras(code_cells("01_bpe.ipynb")[0])
    opened = [name for name in map(os.path.basename, NOTEBOOKS) if code_cells(name)[0].startswith("# Setup:")]
    assert opened == [os.path.basename(n) for n in NOTEBOOKS]  # all six open with it
    for name in opened:
        assert without_extras(code_cells(name)[0]) == first, name
