"""Runs every notebook top to bottom, as a reader would; any error in any cell fails the test.
Also checks notebook 1's exercise checks and the setup cell that opens every notebook."""
import ast
import glob
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_eight_notebooks():
    """In the order the tests run them: 04b (the spine, which saves its run) before 05 (which loads it)."""
    assert [os.path.basename(n) for n in NOTEBOOKS] == [
        "01_bpe.ipynb", "02_transformer.ipynb", "03_adafactor.ipynb", "04_training.ipynb", "04b_first_model.ipynb",
        "05_sampling.ipynb", "06_will_it_fit.ipynb", "07_scale.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, record_property):
    """Each notebook deletes only its own leftovers (nb04b_* for 04b, ...): 04b's run, nb04b_run/, stays
    for notebook 5, which runs next in this list and must load it rather than train again. Its run
    time goes into the report (conftest.py prints them all at the end), failed or not."""
    folder, number = os.path.dirname(path), os.path.basename(path).split("_")[0]  # '04b'
    for leftover in glob.glob(os.path.join(folder, f"nb{number}_*")):  # this notebook's outputs of an earlier run
        shutil.rmtree(leftover)
    spine_saved = os.path.exists(os.path.join(folder, "nb04b_run", "checkpoint"))  # 04b's export marker
    notebook = nbformat.read(path, as_version=4)
    start = time.time()
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    finally:
        record_property("notebook_seconds", time.time() - start)
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    if number == "05" and spine_saved:  # notebook 5 loaded 04b's saved run, and trained nothing itself
        printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
        assert "loaded_spine = True" in printed and "(saved)" in printed and "running notebook 4b" not in printed


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
    "04b_first_model.ipynb": {1: 1024, 2: 7.68, 3: 0.9},
    "07_scale.ipynb": {1: 2e8, 2: 2.778, 3: 0.0283},
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
    checks = sorted(int(name[len("check_"):]) for name in namespace if name[len("check_"):].isdigit())
    assert 3 <= len(checks) <= 5 and checks == list(range(1, len(checks) + 1))
    for n in checks:  # every exercise cell holds the placeholder and calls its check
        assert any(f"answer_{n} = ..." in s and f"check_{n}(answer_{n})" in s for s in sources), n
    solutions = {}  # N -> the literal answer of check_N(...) in the Solutions cell (the last code cell)
    for node in ast.walk(ast.parse(sources[-1])):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "")[len("check_"):].isdigit():
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


# ---- the code exercises' checks: each typical mistake gets its hint, the solution passes ----------------
# Each bug below is a plausible learner's version with one mistake; its check must reject it with the
# hint written for that mistake. The inputs the checks use are chosen so that each mistake shows: T = 5
# keys for the mask, hs = 8 for the scale, gradients far from RMS 1 for the factored moment, n = 2 micro-
# batches of 2 rows each. The solutions are the notebooks' own (their "# Code exercises: solutions" cell).


def first_ids(chunk):
    import data
    return [{b: i for i, b in enumerate(data.BYTE_TO_CHAR)}[b] for b in chunk.encode()]


def bpe_variant(start, choose, once=False):
    """An encode_chunk: start(chunk) -> ids; choose(ids, ranks) -> index of the pair to merge, or None."""
    def encode_chunk(chunk, ranks, new_ids):
        ids = start(chunk)
        while (i := choose(ids, ranks)) is not None:
            ids = ids[:i] + [new_ids[ids[i], ids[i + 1]]] + ids[i + 2:]
            if once:
                break
        return ids
    return encode_chunk


def lowest_rank(ids, ranks):
    pairs = [ranks.get(p, float("inf")) for p in zip(ids, ids[1:])]
    return pairs.index(min(pairs)) if pairs and min(pairs) < float("inf") else None


def leftmost(ids, ranks):
    return next((i for i, p in enumerate(zip(ids, ids[1:])) if p in ranks), None)


def attention_variant(scale=True, by_hs=False, mask_it=True, axis=-1, zero_after=False, values=True):
    """A my_attention with the given mistakes."""
    import numpy as np

    def my_attention(q, k, v, mask):
        scores = q @ k.swapaxes(-1, -2)
        scores = scores / q.shape[-1] if by_hs else scores / np.sqrt(q.shape[-1]) if scale else scores
        if mask_it and not zero_after:
            scores = np.where(mask, scores, -np.inf)
        e = np.exp(scores - scores.max(axis, keepdims=True))
        weights = e / e.sum(axis, keepdims=True)
        weights = weights * mask if zero_after else weights
        return weights @ v if values else weights
    return my_attention


def factored_variant(r_first=True, swapped=False, sums=False, by_mean=True, root=True):
    """A my_factored_update with the given mistakes."""
    import numpy as np

    def my_factored_update(G, r, c, beta2_t, epsilon1=1e-30):
        G2 = G ** 2 + epsilon1
        rows = G2.sum(-1) if sums else G2.mean(-1)
        cols = G2.sum(-2) if sums else G2.mean(-2)
        old, new = (1 - beta2_t, beta2_t) if swapped else (beta2_t, 1 - beta2_t)
        r, c = old * r + new * rows, old * c + new * cols
        V = np.outer(r, c) / (r.mean() if by_mean else 1)
        U = G / (np.sqrt(V) if root else V)
        return (U, r, c) if r_first else (U, c, r)
    return my_factored_update


def accumulation_variant(divide=True, add=True, shift=1, by_rows=True, mean_loss=True):
    """A my_accumulated_gradients with the given mistakes."""
    import numpy as np
    import tensorflow as tf
    import gpt2

    def my_accumulated_gradients(model, batch, n):
        pieces = np.array_split(batch.numpy(), n, axis=0 if by_rows else 1)
        if not by_rows:  # cut along time: each piece keeps one more token, for the targets
            pieces = [batch.numpy()[:, i * 4:i * 4 + 5] for i in range(n)]
        loss, grads = 0.0, [tf.zeros(v.shape) for v in model.trainable_variables]
        for micro in pieces:
            x, y = micro[:, :-1], (micro[:, 1:] if shift == 1 else micro[:, :-1])
            with tf.GradientTape() as tape:
                micro_loss = gpt2.cross_entropy(model(x), y)
            micro_grads = [tf.convert_to_tensor(g) / (n if divide else 1)
                           for g in tape.gradient(micro_loss, model.trainable_variables)]
            loss += micro_loss / (n if mean_loss else 1)
            grads = [g + m for g, m in zip(grads, micro_grads)] if add else micro_grads
        return loss, grads
    return my_accumulated_gradients


def state_variant(per_matrix, per_vector):
    return lambda shapes: sum(per_matrix(*s) if len(s) == 2 else per_vector(s[0]) for s in shapes)


def bigram_variant(smooth=1, axis=1, shift=1, log2=False, mean=True, plus_one_total=False):
    """A my_bigram_loss with the given mistakes."""
    import numpy as np

    def my_bigram_loss(train_tokens, val_tokens, n_vocab):
        counts = np.zeros((n_vocab, n_vocab))
        np.add.at(counts, (train_tokens[:-1], train_tokens[1:]), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if plus_one_total:
                probs = (counts + 1) / (counts.sum(axis=1, keepdims=True) + 1)
            else:
                probs = (counts + smooth) / (counts + smooth).sum(axis=axis, keepdims=True)
            losses = -(np.log2 if log2 else np.log)(probs[val_tokens[:-1], val_tokens[shift:len(val_tokens) - 1 + shift]])
        return losses.mean() if mean else losses.sum()
    return my_bigram_loss


def top_p_variant(crossing=True, renormalise=True, order="descending"):
    """A my_top_p with the given mistakes."""
    import numpy as np

    def my_top_p(logits, p):
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        ranked = {"descending": np.argsort(-probs), "ascending": np.argsort(probs), "none": np.arange(len(probs))}[order]
        n = np.searchsorted(np.cumsum(probs[ranked]), p) + (1 if crossing else 0)
        kept = np.zeros_like(probs)
        kept[ranked[:n]] = probs[ranked[:n]]
        return kept / kept.sum() if renormalise else kept
    return my_top_p


def flops_variant(attention=True, passes=3, wpe=False, wte=True):
    """A my_flops_per_token with the given mistakes (passes: 1 forward, 3 forward and backward)."""
    import gpt2

    def my_flops_per_token(hp):
        N = gpt2.num_params(hp) - (0 if wpe else hp.n_ctx * hp.n_embd) - (0 if wte else hp.n_vocab * hp.n_embd)
        return 2 * passes * N + (4 * passes * hp.n_layer * hp.n_ctx * hp.n_embd if attention else 0)
    return my_flops_per_token


# notebook -> (the check, the function it checks, [(a mistake, a phrase of its hint)])
CODE_EXERCISES = {
    "01_bpe.ipynb": ("check_encode_chunk", "encode_chunk", [
        (bpe_variant(lambda chunk: list(chunk.encode()), lowest_rank), "not the byte values"),
        (bpe_variant(first_ids, leftmost), "the leftmost pair"),
        (bpe_variant(first_ids, lowest_rank, once=True), "stopped after one merge"),
        (lambda *args: tuple(bpe_variant(first_ids, lowest_rank)(*args)), "as a list")]),
    "02_transformer.ipynb": ("check_my_attention", "my_attention", [
        (attention_variant(mask_it=False), "the mask is missing"),
        (attention_variant(scale=False), "not divided by sqrt(hs)"),
        (attention_variant(by_hs=True), "divided by hs, not by sqrt(hs)"),
        (attention_variant(axis=-2), "over the queries"),
        (attention_variant(zero_after=True), "set to 0 after the softmax"),
        (attention_variant(values=False), "the output is (B, nh, T, hs)")]),
    "03_adafactor.ipynb": ("check_my_factored_update", "my_factored_update", [
        (factored_variant(r_first=False), "one number per row"),
        (factored_variant(swapped=True), "swapped"),
        (factored_variant(sums=True), "row *means*"),
        (factored_variant(by_mean=False), "division by mean(R) is missing"),
        (factored_variant(root=False), "square root is missing")]),
    "04_training.ipynb": ("check_my_accumulated_gradients", "my_accumulated_gradients", [
        (accumulation_variant(divide=False), "divide its gradients by n"),
        (accumulation_variant(add=False), "only the last micro-batch counts"),
        (accumulation_variant(shift=0), "moved one token to the left"),
        (accumulation_variant(by_rows=False), "groups of rows"),
        (accumulation_variant(mean_loss=False), "is not the large batch's mean")]),
    "06_will_it_fit.ipynb": ("check_my_state_floats", "my_state_floats", [
        (state_variant(lambda n, m: 2 * n * m, lambda n: 2 * n), "Adam's m and v"),
        (state_variant(lambda n, m: n * m, lambda n: n), "a full second moment"),
        (state_variant(lambda n, m: n + m, lambda n: 0), "the vectors are missing"),
        (state_variant(lambda n, m: n * m + n + m, lambda n: 2 * n), "no momentum")]),
    "04b_first_model.ipynb": ("check_my_bigram_loss", "my_bigram_loss", [
        (bigram_variant(smooth=0), "never seen in training"),
        (bigram_variant(axis=0), "each row (the previous token a) must sum to 1"),
        (bigram_variant(shift=0), "a token and the next one"),
        (bigram_variant(log2=True), "in bits"),
        (bigram_variant(mean=False), "the sum over the held-out pairs"),
        (bigram_variant(plus_one_total=True), "grows by V, not by 1")]),
    "05_sampling.ipynb": ("check_my_top_p", "my_top_p", [
        (top_p_variant(crossing=False), "carries the running total past p is kept too"),
        (top_p_variant(renormalise=False), "divide them by their total"),
        (top_p_variant(order="ascending"), "descending order"),
        (top_p_variant(order="none"), "sort before np.cumsum")]),
    "07_scale.ipynb": ("check_my_flops_per_token", "my_flops_per_token", [
        (flops_variant(attention=False), "attention's QK^T and AV are missing"),
        (flops_variant(passes=1), "the forward pass only"),
        (flops_variant(wpe=True), "wpe is counted"),
        (flops_variant(wte=False), "wte is left out")]),
}


@pytest.mark.parametrize("name", sorted(CODE_EXERCISES))
def test_code_exercise_checks(name, capsys):
    """The stub (NotImplementedError) is "not implemented yet", each mistake gets its own hint, and
    the notebook's solution passes. Only the checks' cell and the solutions' cell run."""
    check_name, function_name, mistakes = CODE_EXERCISES[name]
    sources = code_cells(name)
    namespace = {}
    for source in sources:
        if "def check_" in source:
            exec(source, namespace)
    stubs = [s for s in sources if f"def {function_name}(" in s and "raise NotImplementedError" in s]
    assert len(stubs) == 1 and f"{check_name}({function_name})" in stubs[0]  # the learner's cell
    check = namespace[check_name]

    def stub(*args, **kwargs):
        raise NotImplementedError
    check(stub)
    assert "not implemented yet" in capsys.readouterr().out
    for mistake, hint in mistakes:
        with pytest.raises(AssertionError, match=re.escape(hint)):
            check(mistake)
    [solution] = [s for s in sources if s.startswith("# Code exercises: solutions")]
    exec(solution, namespace)  # defines the solution and calls the check on it
    assert f"{function_name}: correct" in capsys.readouterr().out


def setup_cell(repo_url, repo_ref=None):
    """Notebook 1's first code cell (the same in every notebook), with REPO_URL (and REPO_REF) set."""
    source = code_cells("01_bpe.ipynb")[0]
    assert 'REPO_URL = ""' in source and "import tensorflow" not in source
    source = source.replace('REPO_URL = ""', f"REPO_URL = {repo_url!r}", 1)
    if repo_ref is not None:
        assert source.count("\nREPO_REF = ") == 1
        source = "\n".join(f"REPO_REF = {repo_ref!r}" if line.startswith("REPO_REF = ") else line
                           for line in source.splitlines())
    return source


@pytest.mark.parametrize("case", ["empty", "unreachable", "a data folder"])
def test_setup_cell_without_the_repository(tmp_path, case):
    """Opened alone (no data.py to import): one line, no traceback, in plain Python and in Jupyter.
    The unreachable address is a file:// path that does not exist: no network is touched. A folder
    named data/ in the working directory is no clone (importlib.util.find_spec("data") finds it)."""
    repo_url = (tmp_path / "missing.git").as_uri() if case == "unreachable" else ""
    expected = "Could not clone" if case == "unreachable" else "Set REPO_URL"
    workdir = tmp_path / "alone"  # its parent holds no data.py
    workdir.mkdir()
    if case == "a data folder":
        (workdir / "data").mkdir()
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


def test_setup_cell_clones_and_imports(tmp_path, monkeypatch):
    """The success path, offline: opened alone in an empty folder with REPO_URL set, the cell clones
    this repository (file://: its committed HEAD, at the current branch as REPO_REF), installs
    requirements.txt with PIP_NO_INDEX=1 (everything is installed here, so pip must succeed without
    an index), and notebook 1's next cell imports the clone's modules."""
    branch = subprocess.run(["git", "-C", ROOT, "branch", "--show-current"], capture_output=True, text=True).stdout.strip()
    if not branch:
        pytest.skip("no branch checked out (a detached HEAD, or no git): nothing for --branch to name")
    workdir = tmp_path / "alone"
    workdir.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the kernel inherits this process's environment
    monkeypatch.delenv("PYTHONPATH", raising=False)
    probe = "import data, gpt2\nprint(os.path.dirname(data.__file__), os.path.dirname(gpt2.__file__), os.getcwd())"
    cells = [setup_cell(pathlib.Path(ROOT).as_uri(), branch), code_cells("01_bpe.ipynb")[1], probe]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    clone = workdir / "gpt2-tf"
    printed = "".join(o.get("text", "") for o in notebook.cells[2].outputs).split()
    assert printed == [str(clone), str(clone), str(clone / "notebooks")]
    def head(folder):
        return subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert head(clone) == head(ROOT)  # the branch's committed HEAD


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
