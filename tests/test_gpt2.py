"""gpt2.py against the independent NumPy GPT-2 in reference.py, on checkpoints in OpenAI's layout."""
import json
import os

import shutil
import numpy as np
import pytest
import tensorflow as tf

import gpt2
import reference

SMALL = {"n_vocab": 97, "n_ctx": 16, "n_embd": 32, "n_head": 4, "n_layer": 2}


@pytest.fixture(scope="module")
def openai_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("openai"))
    params = reference.random_openai_checkpoint(path, SMALL)
    return path, params


def test_logits_match_numpy_reference(openai_checkpoint):
    path, params = openai_checkpoint
    model = gpt2.load(path)
    tokens = np.random.default_rng(0).integers(0, SMALL["n_vocab"], size=(3, SMALL["n_ctx"]))
    logits = model(tf.constant(tokens, tf.int32)).numpy()
    assert logits.shape == (3, 16, 97) and logits.dtype == np.float32
    for row, toks in zip(logits, tokens):
        expected = reference.forward(params, SMALL, toks)
        assert np.abs(row - expected).max() < 1e-4


def test_param_count_formula():
    # Derivation: V*C + n_ctx*C + n_layer*(12C^2 + 13C) + 2C; 124M by hand:
    # 50257*768 + 1024*768 + 12*(12*768^2 + 13*768) + 2*768
    # = 38,597,376 + 786,432 + 85,054,464 + 1,536 = 124,439,808
    assert gpt2.num_params(gpt2.PRESETS["124M"]) == 124_439_808
    assert gpt2.num_params(gpt2.PRESETS["355M"]) == 354_823_168
    assert gpt2.num_params(gpt2.PRESETS["774M"]) == 774_030_080
    assert gpt2.num_params(gpt2.PRESETS["1558M"]) == 1_557_611_200
    for name in ("tiny", "mini"):  # the formula equals the variables actually created
        h = gpt2.PRESETS[name]
        model = gpt2.GPT2(h)
        assert sum(int(np.prod(v.shape)) for v in model.variables) == gpt2.num_params(h)


def test_124M_variables_have_openai_names_and_shapes():
    model = gpt2.GPT2(gpt2.PRESETS["124M"])
    shapes = {gpt2.variable_name(v): v.shape.as_list() for v in model.variables}
    assert sum(np.prod(s) for s in shapes.values()) == 124_439_808
    assert shapes["model/wte"] == [50257, 768] and shapes["model/wpe"] == [1024, 768]
    assert shapes["model/h11/attn/c_attn/w"] == [768, 2304] and shapes["model/h0/mlp/c_proj/b"] == [768]
    assert len(shapes) == 2 + 2 + 12 * 12


def test_residual_projections_are_scaled_at_init():
    h = gpt2.HParams(n_vocab=100, n_ctx=8, n_embd=64, n_head=4, n_layer=8)
    model = gpt2.GPT2(h)
    std = np.std(model.blocks[0].attn.c_proj.w.numpy())
    assert abs(std - 0.02 / np.sqrt(16)) < 0.001 and abs(np.std(model.blocks[0].attn.c_attn.w.numpy()) - 0.02) < 0.002


def test_causality():
    model = gpt2.GPT2(gpt2.HParams(**SMALL))
    tokens = np.random.default_rng(1).integers(0, 97, size=(1, 16))
    changed = tokens.copy()
    changed[0, 9] = (changed[0, 9] + 1) % 97
    a, b = model(tf.constant(tokens)).numpy(), model(tf.constant(changed)).numpy()
    assert np.array_equal(a[0, :9], b[0, :9])  # positions before 9 cannot see the change
    assert not np.allclose(a[0, 9:], b[0, 9:])


def test_save_then_load_is_identical(openai_checkpoint, tmp_path):
    path, _ = openai_checkpoint
    model = gpt2.load(path)
    gpt2.save(model, str(tmp_path))
    reader = tf.train.load_checkpoint(str(tmp_path / "model.ckpt"))
    original = tf.train.load_checkpoint(os.path.join(path, "model.ckpt"))
    assert reader.get_variable_to_shape_map() == original.get_variable_to_shape_map()  # OpenAI's names and shapes
    again = gpt2.load(str(tmp_path))
    tokens = tf.constant([[1, 2, 3, 4, 5]])
    assert np.array_equal(model(tokens).numpy(), again(tokens).numpy())
    assert json.load(open(tmp_path / "hparams.json")) == SMALL


def test_cached_equals_uncached(openai_checkpoint):
    path, _ = openai_checkpoint
    model = gpt2.load(path)
    tokens = tf.constant(np.random.default_rng(2).integers(0, 97, size=(2, 16)), tf.int32)
    full = model(tokens).numpy()
    for n, length in ((16, None), (12, 12)):  # a cache of n_ctx positions; one of just the 12 used
        cache = model.empty_cache(2, length)
        logits, cache = model.forward_with_cache(tokens[:, :5], cache, 0)  # a prompt of 5, then one at a time
        steps = [logits.numpy()]
        for t in range(5, n):
            logits, cache = model.forward_with_cache(tokens[:, t:t + 1], cache, t)
            steps.append(logits.numpy())
        assert np.abs(np.concatenate(steps, axis=1) - full[:, :n]).max() < 1e-5


def test_bfloat16_is_close_to_float32(openai_checkpoint):
    path, _ = openai_checkpoint
    tokens = tf.constant([[5, 6, 7, 8, 9, 10]])
    full = gpt2.load(path)(tokens).numpy()
    half = gpt2.load(path, compute_dtype=tf.bfloat16)(tokens)
    assert half.dtype == tf.float32  # logits come back in float32
    assert np.abs(half.numpy() - full).max() < 0.1 * np.abs(full).max()


def test_compiled_forward_matches_eager(openai_checkpoint):
    path, _ = openai_checkpoint
    model = gpt2.load(path)
    tokens = tf.constant([[3, 1, 4, 1, 5, 9, 2, 6]])
    compiled = tf.function(model.__call__, jit_compile=True)
    assert np.abs(compiled(tokens).numpy() - model(tokens).numpy()).max() < 1e-5


def test_dropout_only_in_training_and_seeded():
    model = gpt2.GPT2(gpt2.HParams(**SMALL, dropout=0.1))
    tokens = tf.constant([[1, 2, 3, 4]])
    assert np.array_equal(model(tokens).numpy(), model(tokens).numpy())
    a = model(tokens, training=True, seed=tf.constant([1, 2])).numpy()
    assert np.array_equal(a, model(tokens, training=True, seed=tf.constant([1, 2])).numpy())
    assert not np.allclose(a, model(tokens).numpy())


def test_bad_tokens_and_lengths():
    model = gpt2.GPT2(gpt2.HParams(**SMALL))
    with pytest.raises(tf.errors.InvalidArgumentError, match="n_vocab = 97"):
        model(tf.constant([[1, 97]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=">= 0"):
        model(tf.constant([[-1, 2]]))
    with pytest.raises(ValueError, match="longer than n_ctx = 16"):
        model(tf.zeros([1, 17], tf.int32))


def test_shape_mismatch_names_the_variable(openai_checkpoint, tmp_path):
    path, _ = openai_checkpoint
    for name in os.listdir(path):
        (tmp_path / name).write_bytes(open(os.path.join(path, name), "rb").read())
    (tmp_path / "hparams.json").write_text(json.dumps({**SMALL, "n_vocab": 98}))
    with pytest.raises(ValueError, match=r"model/wte has shape \[97, 32\], but hparams.json implies \[98, 32\]"):
        gpt2.load(str(tmp_path))


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(ValueError, match="no model directory"):
        gpt2.load(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no hparams.json"):
        gpt2.load(str(tmp_path))
    (tmp_path / "hparams.json").write_text(json.dumps(SMALL))
    with pytest.raises(ValueError, match="no checkpoint"):
        gpt2.load(str(tmp_path))
    (tmp_path / "hparams.json").write_text(json.dumps({**SMALL, "n_embed": 3}))
    with pytest.raises(ValueError, match="unknown fields"):
        gpt2.load(str(tmp_path))


def test_flops_per_token():
    # 124M: N without wpe = 124,439,808 - 786,432 = 123,653,376; 6N = 741,920,256;
    # attention 12 * 12 * 1024 * 768 = 113,246,208; total 855,166,464
    assert gpt2.flops_per_token(gpt2.PRESETS["124M"]) == 855_166_464


def test_checkpoints_of_other_names_or_cut_off_fail_in_one_line(openai_checkpoint, tmp_path):
    old = os.path.join(os.path.dirname(__file__), "data", "pre_rename")  # written before the renames
    with pytest.raises(ValueError, match=r"ckpt-1 was written by another version of this code: it lacks model/h0/"):
        gpt2.load(old)
    cut = tmp_path / "cut"
    shutil.copytree(openai_checkpoint[0], cut)
    data_file = cut / "model.ckpt.data-00000-of-00001"
    data_file.write_bytes(data_file.read_bytes()[:1000])  # a download cut off
    with pytest.raises(ValueError, match=r"model.ckpt: unreadable"):
        gpt2.load(str(cut))
