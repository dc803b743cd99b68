"""sample.py: cached generation against uncached generation and the NumPy reference; the
sampling filters against their definitions; scoring against a direct computation."""
import gc
import json
import os
import shutil
import sys
import weakref

import numpy as np
import pytest
import tensorflow as tf

import data
import gpt2
import reference
import sample

H = {"n_vocab": 97, "n_ctx": 16, "n_embd": 32, "n_head": 4, "n_layer": 2}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model"))
    params = reference.random_openai_checkpoint(path, H, seed=5, position_scale=3.0)
    return path, params


@pytest.fixture(scope="module")
def model(checkpoint):
    return gpt2.load(checkpoint[0])


@pytest.mark.parametrize("xla", [False, True])
def test_greedy_cached_equals_uncached_and_reference(model, checkpoint, xla):
    context = np.random.default_rng(0).integers(0, 97, size=(3, 4))
    length = H["n_ctx"] - 4  # fills the whole context
    cached = sample.generate(model, context, length, temperature=0, xla=xla)
    uncached = sample.generate(model, context, length, temperature=0, use_cache=False, xla=xla)
    assert cached.shape == (3, length) and cached.dtype == np.int32
    assert np.array_equal(cached, uncached)
    for row, ctx in zip(cached, context):
        assert row.tolist() == reference.greedy(checkpoint[1], H, ctx, length)
    assert len(set(cached[0].tolist())) > 3  # the continuation wanders: the test can fail


def test_sampled_cached_equals_uncached(model):
    context = np.random.default_rng(1).integers(0, 97, size=(2, 3))
    a = sample.generate(model, context, 13, temperature=1.5, seed=7)
    b = sample.generate(model, context, 13, temperature=1.5, seed=7, use_cache=False)
    assert np.array_equal(a, b)


def test_same_seed_same_samples(model):
    context = [[1, 2, 3]]
    a = sample.generate(model, context, 12, seed=3)
    assert np.array_equal(a, sample.generate(model, context, 12, seed=3))
    assert not np.array_equal(a, sample.generate(model, context, 12, seed=4))


def test_beyond_the_context_slides(model):
    out = sample.generate(model, [[5, 6, 7]], 40, temperature=0)  # 43 tokens > n_ctx = 16
    assert out.shape == (1, 40)
    # the first n_ctx - 3 tokens are generated before any slide: they equal the uncached ones
    assert np.array_equal(out[:, :13], sample.generate(model, [[5, 6, 7]], 13, temperature=0, use_cache=False))


def test_compiled_generation_is_freed_with_its_model():
    # generate keeps its compiled loops on the model, so a notebook that builds many models
    # does not keep them all (and their XLA programs) alive
    small = gpt2.GPT2(gpt2.HParams(n_vocab=64, n_ctx=16, n_embd=16, n_head=2, n_layer=1))
    sample.generate(small, [[1, 2]], 4, temperature=0)
    alive = weakref.ref(small)
    del small
    gc.collect()
    assert alive() is None


def test_top_k_keeps_the_k_most_likely():
    logits = tf.constant([[1.0, 5.0, 3.0, 4.0, 2.0], [0.0, -1.0, 2.0, 1.0, -2.0]])
    filtered = sample.top_k_filter(logits, 2).numpy()
    assert np.isfinite(filtered).tolist() == [[False, True, False, True, False], [False, False, True, True, False]]


def test_filters_equal_their_definitions():
    # random rows with ties, -0.0 beside +0.0 and -inf, against the definitions computed in NumPy
    rng = np.random.default_rng(5)
    for trial in range(60):
        V = int(rng.integers(1, 200))
        x = (rng.normal(size=(3, V)) * [0.01, 1, 100][trial % 3]).astype(np.float32)
        if trial % 4 == 0:
            x = np.round(x) * np.where(rng.random(x.shape) < 0.5, -1, 1).astype(np.float32)  # ties, -0.0
        x[0, :V // 3] = -np.inf
        k = int(rng.integers(1, V + 3))
        kept = np.isfinite(sample.top_k_filter(tf.constant(x), k).numpy())
        kth = -np.sort(-x, axis=1)[:, min(k, V) - 1:min(k, V)]  # the k-th largest of each row
        assert np.array_equal(kept, (x >= kth) & np.isfinite(x)), (trial, k)
        p = float(rng.uniform(0.05, 0.99))
        kept = np.isfinite(sample.top_p_filter(tf.constant(x), p).numpy())
        probs = tf.nn.softmax(x).numpy()
        for row, prob, got in zip(x, probs, kept):
            order = np.argsort(-row, kind="stable")
            before = np.cumsum(prob[order]) - prob[order]  # mass ahead of each, most likely first
            bar = row[order][before < p].min()
            assert np.array_equal(got, (row >= bar) & np.isfinite(row)), (trial, p)


def test_top_p_keeps_the_nucleus():
    probs = np.array([[0.5, 0.2, 0.15, 0.1, 0.05]])
    logits = tf.constant(np.log(probs), tf.float32)
    # mass before each token: 0, 0.5, 0.7, 0.85, 0.95. p = 0.6 keeps the first two (0.7 >= 0.6)
    assert np.isfinite(sample.top_p_filter(logits, 0.6).numpy()).tolist() == [[True, True, False, False, False]]
    assert np.isfinite(sample.top_p_filter(logits, 0.5).numpy()).tolist() == [[True, False, False, False, False]]
    assert np.isfinite(sample.top_p_filter(logits, 1.0).numpy()).all()


def test_samples_stay_inside_top_k_and_top_p(model):
    context = np.random.default_rng(2).integers(0, 97, size=(16, 5))
    logits = model(tf.constant(context)).numpy()[:, -1]  # the distribution of the first new token
    first_k = sample.generate(model, context, 1, top_k=3, seed=11)[:, 0]
    first_p = sample.generate(model, context, 1, top_p=0.3, seed=11)[:, 0]
    for row, k_token, p_token in zip(logits, first_k, first_p):
        assert k_token in np.argsort(row)[-3:]
        order = np.argsort(-row)
        probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        before = np.cumsum(probs[order]) - probs[order]
        assert p_token in order[before < 0.3]


def test_stop_at_eot(model):
    eot = H["n_vocab"] - 1
    out = sample.generate(model, np.full((8, 2), 3), 15, temperature=3.0, seed=1, stop_at_eot=True)
    for row in out.tolist():  # after the first <|endoftext|>, only <|endoftext|>
        if eot in row:
            assert set(row[row.index(eot):]) == {eot}


def test_score_equals_direct_mean(model):
    tokens = np.random.default_rng(3).integers(0, 97, size=40)
    result = sample.score(model, tokens, batch_size=2)
    logits = model(tf.constant(tokens[None, :-1][:, :16])).numpy()[0]  # the first window, by hand
    first = -np.mean([logits[i, tokens[i + 1]] - np.log(np.exp(logits[i]).sum()) for i in range(16)])
    losses = []
    for start in range(0, 39, 16):  # three windows: 16 + 16 + 7 predictions
        x = tokens[start:start + 16]
        y = tokens[start + 1:start + 17]
        out = model(tf.constant(x[None]))[0].numpy()[:len(y)]
        losses += [np.log(np.exp(row).sum()) - row[t] for row, t in zip(out, y)]
    assert result["tokens"] == 39
    assert abs(result["loss"] - np.mean(losses)) < 1e-5 and abs(np.mean(losses[:16]) - first) < 1e-5
    assert result["perplexity"] == pytest.approx(np.exp(result["loss"]))


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="top_p"):
        sample.generate(model, [[1]], 5, top_p=0)
    with pytest.raises(ValueError, match=r"ids in \[0, "):
        sample.generate(model, [[97]], 5)


@pytest.fixture(scope="module")
def model_dir(checkpoint, tmp_path_factory):
    """The random checkpoint plus a 97-token vocabulary (256 bytes are too many: a tiny one)."""
    path = tmp_path_factory.mktemp("with_vocab")
    for name in os.listdir(checkpoint[0]):
        (path / name).write_bytes(open(os.path.join(checkpoint[0], name), "rb").read())
    # 96 tokens + <|endoftext|> cannot hold 256 bytes, so write a vocabulary of a bigger model
    # and widen the model to it instead: n_vocab 300.
    enc = data.Encoder.train(["the cat sat on the mat " * 20 + "abcdefghijklmnopqrstuvwxyz0123456789"], 300)
    enc.save(str(path))
    model = gpt2.GPT2(gpt2.HParams(**{**H, "n_vocab": 300}))
    gpt2.save(model, str(path))
    return str(path)


def run_cli(capsys, *args):
    """sample.py's command line, in this process: (exit code, standard output, last line of errors)."""
    try:
        sample.main(list(args))
        code = 0
    except SystemExit as exit:  # argparse's errors print and exit 2; ours exit with "error: ..."
        code = exit.code if isinstance(exit.code, int) else 1
        if not isinstance(exit.code, int):
            print(exit.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, (err.strip().splitlines() or [""])[-1]


def test_cli_samples_and_scores(model_dir, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "--model", model_dir, "--prompt", "the cat", "--length", "5", "--num_samples", "3",
                           "--batch_size", "2", "--seed", "1")
    assert code == 0 and out.count("SAMPLE") == 3 and out.count("the cat") == 3
    (tmp_path / "text.txt").write_text("the cat sat on the mat. " * 10)
    code, out, _ = run_cli(capsys, "--model", model_dir, "--score", str(tmp_path / "text.txt"))
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and set(result) == {"tokens", "loss", "perplexity"} and result["tokens"] > 20
    code, out, err = run_cli(capsys, "--model", model_dir, "--prompt", "the cat " * 40, "--length", "2")
    assert code == 0 and err.startswith("warning: the prompt has")
    # files through tf.io.gfile, as gs:// needs: TensorFlow's in-memory file system stands in for it
    with tf.io.gfile.GFile("ram://score/text.txt", "w") as f:
        f.write("the cat sat on the mat. " * 10)
    code, out, _ = run_cli(capsys, "--model", model_dir, "--score", "ram://score/*.txt", "--prompt_file",
                           "ram://score/text.txt")
    assert code == 0 and json.loads(out.strip().splitlines()[-1]) == result


def test_cli_bad_input(model_dir, tmp_path, capsys):
    for args, message in [(["--top_p", "1.5"], "--top_p 1.5"), (["--top_p", "0"], "--top_p 0"),
                          (["--temperature", "-1"], "--temperature -1"), (["--top_k", "-2"], "--top_k -2"),
                          (["--length", "0"], "--length 0"), (["--batch_size", "0"], "--batch_size 0"),
                          (["--prompt_file", str(tmp_path / "none.txt")], "none.txt; No such file")]:
        code, _, line = run_cli(capsys, "--model", model_dir, *args)
        assert code != 0 and message in line, (args, line)
    code, _, line = run_cli(capsys, "--model", str(tmp_path / "missing"))
    assert code != 0 and line.startswith("error: --model") and "no such directory" in line
    (tmp_path / "empty.txt").write_text("")
    code, _, line = run_cli(capsys, "--model", model_dir, "--score", str(tmp_path / "empty.txt"))
    assert code != 0 and line.startswith("error:") and "no text" in line
    cut = tmp_path / "cut"  # a model whose weights file was cut off half-way
    shutil.copytree(model_dir, cut)
    weights = next(cut.glob("model.ckpt.data-*"))
    weights.write_bytes(weights.read_bytes()[:1000])
    code, _, line = run_cli(capsys, "--model", str(cut))
    assert code != 0 and line.startswith("error: ") and "unreadable" in line and "\n" not in line


def test_generate_stops_at_the_eot_it_is_given(model):
    # A vocabulary whose <|endoftext|> is not the last id: call the 4th token row 0 draws the end,
    # and the same seed must end row 0 there (draws are equal until a row ends)
    free = sample.generate(model, np.full((4, 2), 3), 10, temperature=3.0, seed=1)
    eot = int(free[0, 3])
    assert eot not in free[0, :3]
    out = sample.generate(model, np.full((4, 2), 3), 10, temperature=3.0, seed=1, stop_at_eot=True, eot=eot)
    assert out[0, :4].tolist() == free[0, :4].tolist() and set(out[0, 3:].tolist()) == {eot}
