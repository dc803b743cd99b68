"""train.py: Adafactor against the paper's equations in NumPy, and the training loop's promises."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import data
import gpt2
import train
from conftest import assert_trained_alike, global_norm


def adafactor_reference(params, grads_per_step, lr=None, beta1=0.0, weight_decay=0.0, factored=True,
                        beta2=None, clip=1.0, relative_step=True):
    """Shazeer and Stern 2018, Algorithms 4 and 5, step by step in NumPy float64, written from the
    paper (with row/column means, which give the same estimate as its sums). The options are the
    paper's ablations: a full second moment, a fixed beta2 with Adam's bias correction (its
    section 7.1 form), no update clipping (clip=inf), and absolute steps (alpha_t = rho_t)."""
    x = [p.astype(np.float64) for p in params]
    state = [{} for _ in params]
    for t, grads in enumerate(grads_per_step, start=1):
        rho = min(1e-2, 1 / np.sqrt(t)) if lr is None else lr(t)
        decay = 1 - t ** -0.8 if beta2 is None else beta2 * (1 - beta2 ** (t - 1)) / (1 - beta2 ** t)
        for i, g in enumerate(grads):
            g = g.astype(np.float64)
            s = state[i]
            g2 = g * g + 1e-30
            if g.ndim >= 2 and factored:
                s["r"] = decay * s.get("r", 0) + (1 - decay) * g2.mean(-1)
                s["c"] = decay * s.get("c", 0) + (1 - decay) * g2.mean(-2)
                v = np.einsum("...i,...j->...ij", s["r"], s["c"]) / s["r"].mean(-1)[..., None, None]
            else:
                v = s["v"] = decay * s.get("v", 0) + (1 - decay) * g2
            u = g / np.sqrt(v)
            u = u / max(1.0, np.sqrt(np.mean(u * u)) / clip)
            if beta1 > 0:
                u = s["m"] = beta1 * s.get("m", 0) + (1 - beta1) * u
            alpha = max(1e-3, np.sqrt(np.mean(x[i] ** 2))) * rho if relative_step else rho
            x[i] = x[i] - alpha * u - rho * weight_decay * x[i]
    return x


@pytest.mark.parametrize("options", [{}, {"lr": 0.05}, {"beta1": 0.9, "weight_decay": 0.1},
                                     {"factored": False, "beta2": 0.999, "clip": np.inf, "relative_step": False}])
def test_adafactor_matches_the_paper(options):
    rng = np.random.default_rng(0)
    shapes = [(6, 5), (3, 4, 7), (9,), (1,)]  # a matrix, a 3-D tensor, vectors
    params = [rng.standard_normal(s).astype(np.float32) * 0.1 for s in shapes]
    params[2] *= 0  # a zero vector: exercises the eps2 floor of the parameter scale
    grads = [[rng.standard_normal(s).astype(np.float32) * 10 ** rng.uniform(-3, 1) for s in shapes] for _ in range(8)]
    variables = [tf.Variable(p) for p in params]
    lr = (lambda t: options["lr"]) if "lr" in options else None
    ablation = {k: options[k] for k in ("factored", "beta2", "relative_step") if k in options}
    beta1, weight_decay = options.get("beta1", 0.0), options.get("weight_decay", 0.0)
    opt = train.Adafactor(learning_rate=lr, beta1=beta1, weight_decay=weight_decay,
                          clip_threshold=options.get("clip", 1.0), **ablation)
    opt.build(variables)
    for step in range(1, len(grads) + 1):  # compare after every step, not only the last
        opt.apply_gradients(zip([tf.constant(g) for g in grads[step - 1]], variables))
        expected = adafactor_reference(params, grads[:step], lr=lr, beta1=beta1, weight_decay=weight_decay, **ablation,
                                       clip=options.get("clip", 1.0))
        for ours, theirs in zip(variables, expected):
            # relative to the tensor's largest entry: float32 against float64 math
            assert np.max(np.abs(ours.numpy() - theirs)) / np.max(np.abs(theirs)) < 1e-6


def test_adafactor_matches_keras():
    """An independent implementation, Keras 3's keras.optimizers.Adafactor (same defaults: decay
    0.8, eps1 1e-30, eps2 1e-3, clip 1, steps relative to the weights' RMS), on a matrix, a 3-D
    tensor and a vector, 30 steps of a loss whose gradients depend on the weights, at lr 1e-2.
    Both compute in float32 in another order (Keras forms V, we G times a row and a column factor):
    each step's update is about lr x RMS(X) with a rounding error of a few float32 ulps of it,
    so 30 steps stay within 30 x 1e-2 x 1e-5 of max|X|, far below a changed rule (a sum for a
    mean, no clipping, another beta2 changes a step by a whole part of itself: 1e-3 of max|X|)."""
    import keras  # the reference (requirements-dev.txt); imported here: only this test needs it
    rng = np.random.default_rng(0)
    shapes = [(6, 5), (3, 4, 5), (7,)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    start[2] *= 0  # a zero vector: its steps are eps2 x lr, the floor of the weights' scale
    targets = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours, theirs = [tf.Variable(w) for w in start], [tf.Variable(w) for w in start]
    ours_opt, keras_opt = train.Adafactor(learning_rate=1e-2), keras.optimizers.Adafactor(learning_rate=1e-2)
    ours_opt.build(ours)
    keras_opt.build(theirs)

    def gradients(variables):  # of sum (w - target)^4: every step's gradient depends on the weights
        with tf.GradientTape() as tape:
            loss = sum(tf.reduce_sum((w - t) ** 4) for w, t in zip(variables, targets))
        return tape.gradient(loss, variables)
    for _ in range(30):
        ours_opt.apply_gradients(zip(gradients(ours), ours))
        keras_opt.apply_gradients(zip(gradients(theirs), theirs))
    for a, b, w in zip(ours, theirs, start):
        assert np.max(np.abs(a.numpy() - w)) > 1e-4  # moved: 30 steps of 1e-2 x max(eps2, RMS(X)) each
        assert np.max(np.abs(a.numpy() - b.numpy())) <= 30 * 1e-2 * 1e-5 * np.max(np.abs(b.numpy())), a.shape


def test_adafactor_zero_gradient_rows_stay_finite():
    """Rows of an embedding whose tokens are absent from the batch get a gradient of 0. Their
    second-moment estimate is tiny (R = eps1 = 1e-30 per entry, times C): formed as one product
    it underflows float32 to 0, and 0 / sqrt(0) is NaN. Such rows must not move, the others must."""
    var = tf.Variable(np.full((4, 3), 0.02, np.float32))
    grad = np.zeros((4, 3), np.float32)
    grad[0] = [1e-4, -2e-4, 3e-4]  # only token 0 was in the batch
    opt = train.Adafactor()
    opt.build([var])
    for _ in range(3):
        opt.apply_gradients([(tf.constant(grad), var)])
    moved = var.numpy() - 0.02
    assert np.all(np.isfinite(moved))
    assert np.all(moved[1:] == 0) and np.all(moved[0] != 0)
    # the first step is the paper's: U = G / sqrt(G^2 + eps1) (beta2_1 = 0) has entries +-1 in
    # row 0, RMS(U) = sqrt(3 / 12) = 0.5 needs no clipping, alpha = max(1e-3, 0.02) * 0.01
    var.assign(np.full((4, 3), 0.02, np.float32))
    opt = train.Adafactor()
    opt.build([var])
    opt.apply_gradients([(tf.constant(grad), var)])
    np.testing.assert_allclose(var.numpy()[0], 0.02 - 2e-4 * np.sign(grad[0]), rtol=1e-5)


def test_adafactor_state_is_factored():
    model = gpt2.GPT2(gpt2.PRESETS["tiny"])
    opt = train.Adafactor()
    opt.build(model.trainable_variables)
    floats = sum(int(np.prod(v.shape)) for v in opt.variables if v.dtype == tf.float32)
    shapes = [v.shape.as_list() for v in model.trainable_variables]
    assert floats == train.optimizer_state_floats(shapes, opt)
    # an n x m matrix keeps n + m numbers: wte (4096 x 128) keeps 4,224
    wte_slots = opt.slots[opt.index[model.wte.ref()]]
    assert {k: v.shape.as_list() for k, v in wte_slots.items()} == {"r": [4096], "c": [128]}
    params = gpt2.num_params(gpt2.PRESETS["tiny"])
    assert floats < params / 20 and train.optimizer_state_floats(shapes, train.AdamW(1e-3)) == 2 * params


def test_schedule_endpoints():
    config = train.TrainConfig(steps=1000, warmup_steps=100, learning_rate=0.01, min_lr_ratio=0.1)
    schedule = train.learning_rate_schedule(config)
    assert float(schedule(1)) == pytest.approx(1e-4)  # 1/100 of the peak at the first step
    assert float(schedule(100)) == pytest.approx(0.01)  # the peak at the end of warmup
    assert float(schedule(550)) == pytest.approx(0.0055)  # half way down the cosine
    assert float(schedule(1000)) == pytest.approx(0.001)  # the floor at the last step
    assert float(schedule(5000)) == pytest.approx(0.001)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, gpt2_vocab_dir):
    """A prepared data directory: a few stdlib files, GPT-2's vocabulary."""
    import data
    folder = tmp_path_factory.mktemp("corpus")
    files = data.corpus_files("stdlib")[:40]
    for i, f in enumerate(files):
        (folder / f"{i}.txt").write_text(data.read_text(f))
    out = str(folder / "prepared")
    data.prepare(str(folder / "*.txt"), out, gpt2_vocab_dir, val_fraction=0.1, processes=1)
    return out


def tiny_config(out, corpus, **changes):
    fields = dict(data=corpus, out=str(out), steps=6, batch_size=4, steps_per_loop=2, log_interval=2,
                  eval_interval=6, eval_steps=1, save_interval=2, warmup_steps=2, sample_length=0)
    fields.update(changes)
    return train.TrainConfig(**fields)


TINY = gpt2.HParams(n_vocab=50257, n_ctx=32, n_embd=32, n_head=2, n_layer=2)


def weights(trainer):
    return [v.numpy() for v in trainer.model.variables]


def test_overfits_one_batch():
    h = gpt2.HParams(n_vocab=64, n_ctx=16, n_embd=64, n_head=4, n_layer=2)
    trainer = train.Trainer(h, train.TrainConfig(batch_size=4, steps=200, warmup_steps=10, learning_rate=0.03),
                            tf.distribute.get_strategy())
    batch = tf.constant(np.random.default_rng(0).integers(0, 64, size=(4, 17)), tf.int32)
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    first, _ = trainer.train_loop(iterator, tf.constant(1))
    last, _ = trainer.train_loop(iterator, tf.constant(150))
    assert float(first) > 4.0 and float(trainer.eval_loop(iterator, tf.constant(1))) < 0.5


def test_bfloat16_step_runs(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, precision="bfloat16", steps=4)
    trainer = train.train(TINY, config, log=lambda *a: None)
    assert trainer.model.compute_dtype == tf.bfloat16
    losses = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert all(np.isfinite(r["train_loss"]) for r in losses if "train_loss" in r)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, corpus, grad_accum=2):
    # with gradient accumulation on, so the micro-batch loop is resumed too (test_replicas.py
    # resumes a run without it, across replica counts)
    straight = train.train(TINY, tiny_config(tmp_path / "a", corpus, grad_accum=grad_accum), log=lambda *a: None)
    # "interrupted" at step 2; a new process would start here, and the same command resumes
    # from checkpoints/ckpt-2
    train.train(TINY, tiny_config(tmp_path / "b", corpus, steps=2, grad_accum=grad_accum), log=lambda *a: None)
    resumed = train.train(TINY, tiny_config(tmp_path / "b", corpus, grad_accum=grad_accum), log=lambda *a: None)
    assert int(resumed.optimizer.iterations) == 6
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert (tmp_path / "b" / "model.ckpt.index").exists() and (tmp_path / "b" / "encoder.json").exists()
    assert np.array_equal(gpt2.load(str(tmp_path / "b")).wte.numpy(), resumed.model.wte.numpy())
    # a run cut off before its export: gpt2.load falls back to the training checkpoints
    (tmp_path / "b" / "checkpoint").unlink()
    assert np.array_equal(gpt2.load(str(tmp_path / "b")).wte.numpy(), resumed.model.wte.numpy())
    # a finished run continued for longer and cut off: not its old export, its newest checkpoint
    gpt2.save(resumed.model, str(tmp_path / "b"))

    def stop_at_step_8(line):
        if line.startswith("step      8"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train.train(TINY, tiny_config(tmp_path / "b", corpus, steps=10, grad_accum=grad_accum), log=stop_at_step_8)
    continued = gpt2.load(str(tmp_path / "b"))
    assert not np.array_equal(continued.wte.numpy(), resumed.model.wte.numpy())
    assert os.path.basename(tf.train.latest_checkpoint(str(tmp_path / "b" / "checkpoints"))) == "ckpt-8"


def test_metrics_jsonl(tmp_path, corpus):
    train.train(TINY, tiny_config(tmp_path, corpus), log=lambda *a: None)
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in records if "train_loss" in r] == [2, 4, 6]
    assert "val_loss" in records[-1]
    assert {"learning_rate", "tokens_per_sec", "mfu"} <= set(records[0])


def test_memory_plan_adds_up_and_knows_the_shapes():
    tiny = gpt2.HParams(n_vocab=300, n_ctx=32, n_embd=64, n_head=4, n_layer=3)
    # the same shapes as the variables the model creates (as multisets: tf.Module orders by name)
    assert sorted(map(tuple, train.variable_shapes(tiny))) == sorted(tuple(v.shape) for v in gpt2.GPT2(tiny).variables)
    h = gpt2.PRESETS["124M"]
    n = gpt2.num_params(h)
    plain = train.memory_plan(h, train.TrainConfig(batch_size=8))
    terms = list(plain.values())
    assert terms[-1] == pytest.approx(0.1 * sum(terms[:-1]))  # the margin: 10% of the rest
    assert plain["weights (float32)"] == 4 * n and plain["adafactor state"] < 4 * n / 100  # < 1% of the weights
    # 8 rows of 1,024 tokens: the start of the backward pass is the peak, and the logits are
    # 8 x 1024 x 50257 x 16 bytes (logits, softmax, the gradient twice)
    assert plain["logits, their softmax and gradient"] == 8 * 1024 * 50257 * 16
    # 4 micro-batches of 2 rows hold the activations of 2 rows, plus a float32 gradient buffer
    accumulated = train.memory_plan(h, train.TrainConfig(batch_size=8, grad_accum=4))
    two_rows = train.memory_plan(h, train.TrainConfig(batch_size=2))
    assert accumulated["activations (2 rows)"] == two_rows["activations (2 rows)"]
    assert accumulated["gradient accumulation buffer (float32)"] == 4 * n
    recomputed = train.memory_plan(h, train.TrainConfig(batch_size=8, recompute=True))
    assert recomputed["activations (8 rows, recomputed)"] < plain["activations (8 rows)"] / 5
    adam = train.memory_plan(h, train.TrainConfig(batch_size=8, optimizer="adam"))
    assert adam["adam state"] == 8 * n


def test_dry_run_tells_the_1558m_story():
    # The 2019 run's setting: float32, one sequence of 1,024 tokens per core. With Adafactor and
    # recomputation the plan fits a 16 GiB core; with Adam's state (12.5 GB more) it does not.
    config = train.TrainConfig(batch_size=1, recompute=True)
    adafactor = sum(train.memory_plan(gpt2.PRESETS["1558M"], config).values())
    adam = sum(train.memory_plan(gpt2.PRESETS["1558M"], dataclasses.replace(config, optimizer="adam")).values())
    assert adafactor < 16 * train.GIB < adam
    lines = train.memory_table(gpt2.PRESETS["1558M"], config, replicas=1)
    assert "parameters: 1,557,611,200" in lines[0]
    assert lines[-1].split()[0] == "total" and float(lines[-1].split()[1]) == round(adafactor / train.GIB, 2)


def test_dry_run_plans_one_replica_of_the_run(capsys):
    # README's Kaggle v5e-8 line: 64 sequences over 8 chips, each in 2 micro-batches of 4. The plan
    # is one chip's; planning all 64 rows on one replica gave 78.93 GiB.
    kaggle = ["--config", "124M", "--precision", "bfloat16", "--batch_size", "64", "--grad_accum", "2", "--dry_run"]
    train.main(kaggle + ["--replicas", "8"])
    out = capsys.readouterr().out.splitlines()
    assert "one replica of 8 (--replicas)" in out[1] and "8 rows in 2 micro-batch(es)" in out[1]
    assert out[-1].split()[:3] == ["total", "10.98", "GiB"]
    train.main(kaggle)  # this machine: one CPU, one replica, all 64 rows
    out = capsys.readouterr().out.splitlines()
    assert "one replica of 1 (found here" in out[1] and out[-1].split()[:2] == ["total", "78.93"]
    with pytest.raises(SystemExit) as exit:
        train.main(kaggle + ["--replicas", "3"])
    assert str(exit.value.code) == "error: --batch_size 64 does not split into 3 replica(s) x --grad_accum 2 equal micro-batches"


def accumulated_gradients(h, **changes):
    """Loss and gradients of one batch of 8 through the Trainer's compiled path (XLA)."""
    trainer = train.Trainer(h, train.TrainConfig(batch_size=8, **changes), tf.distribute.get_strategy())
    batch = tf.constant(np.random.default_rng(0).integers(0, h.n_vocab, size=(8, h.n_ctx + 1)), tf.int32)
    loss, grads = tf.function(trainer.accumulated_gradients, jit_compile=True)(batch, tf.constant([0, 7]))
    return float(loss), [g.numpy() for g in grads]


def relative_difference(a, b):
    return global_norm(x - y for x, y in zip(a, b)) / global_norm(b)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_recompute_gives_the_same_gradients(dropout):
    # The same computation run twice (dropout's masks come from the same stateless seeds), so
    # the gradients agree to float32 rounding: 1e-6 in global norm.
    h = gpt2.HParams(n_vocab=64, n_ctx=16, n_embd=32, n_head=2, n_layer=2, dropout=dropout)
    loss, grads = accumulated_gradients(h)
    loss_recomputed, grads_recomputed = accumulated_gradients(h, recompute=True)
    assert abs(loss - loss_recomputed) <= 1e-6 * loss and relative_difference(grads_recomputed, grads) <= 1e-6


def test_four_micro_batches_equal_one_batch():
    # The mean of 4 micro-batches' mean gradients is the mean gradient over the 8 rows: only the
    # order of the float32 sums differs, so 1e-6 in global norm. (Two replicas: test_replicas.py.)
    h = gpt2.HParams(n_vocab=64, n_ctx=16, n_embd=32, n_head=2, n_layer=2)
    loss, grads = accumulated_gradients(h)
    loss_accumulated, grads_accumulated = accumulated_gradients(h, grad_accum=4)
    assert abs(loss - loss_accumulated) <= 1e-6 * loss and relative_difference(grads_accumulated, grads) <= 1e-6
    # and after whole optimizer steps (clipping after the average): the weights agree
    batch = np.random.default_rng(1).integers(0, 64, size=(8, 17)).astype(np.int32)
    runs = []
    for accum in (1, 4):
        trainer = train.Trainer(h, train.TrainConfig(batch_size=8, grad_accum=accum, warmup_steps=1),
                                tf.distribute.get_strategy())
        trainer.train_loop(iter(tf.data.Dataset.from_tensors(batch).repeat()), tf.constant(3))
        runs.append({gpt2.variable_name(v): v.numpy() for v in trainer.model.variables})
    initial = {gpt2.variable_name(v): v.numpy() for v in gpt2.GPT2(h).variables}
    assert_trained_alike(initial, runs[0], runs[1])


def test_bad_input_gets_one_line(tmp_path, corpus, capsys):
    def run_cli(*args):  # train.py's command line, in this process: (exit code, last line of errors)
        try:
            train.main(list(args))
            return 0, ""
        except SystemExit as exit:  # argparse prints its errors and exits 2; ours exit with "error: ..."
            return (2, capsys.readouterr().err.strip().splitlines()[-1]) if exit.code == 2 else (1, exit.code)

    code, line = run_cli("--nonsense", "1")
    assert code != 0 and "unrecognized arguments" in line
    code, line = run_cli("--recompute", "ture")  # a switch takes no value: not a silent False
    assert code != 0 and line.endswith("unrecognized arguments: ture")
    (tmp_path / "c.json").write_text(json.dumps({"n_layers": 3}))
    code, line = run_cli("--config", str(tmp_path / "c.json"))
    assert code != 0 and "unknown config field(s) ['n_layers']" in line
    code, line = run_cli("--data", corpus, "--out", str(tmp_path / "o"), "--init_from", str(tmp_path / "missing"))
    assert code != 0 and line == f"error: no model directory {tmp_path / 'missing'}"  # --init_from's
    small = gpt2.HParams(n_vocab=300, n_ctx=16, n_embd=8, n_head=2, n_layer=1)  # another vocabulary than corpus's
    gpt2.save_hparams(small, str(tmp_path))
    code, line = run_cli("--data", corpus, "--out", str(tmp_path / "o6"), "--init_from", str(tmp_path))
    assert code != 0 and line.startswith(f"error: --init_from {tmp_path} has a vocabulary of 300, but {corpus}")
    code, line = run_cli("--data", str(tmp_path / "none*.txt"), "--out", str(tmp_path / "o2"))
    assert code != 0 and "no files match" in line
    code, line = run_cli("--data", corpus, "--out", str(tmp_path / "o3"), "--config", "tiny", "--batch_size", "100000")
    assert code != 0 and "too few for 100000 window(s)" in line
    code, line = run_cli("--batch_size", "6", "--grad_accum", "4", "--out", str(tmp_path / "o4"))
    assert code != 0 and line == "error: --batch_size 6 does not split into 1 replica(s) x --grad_accum 4 equal micro-batches"
    (tmp_path / "bad.json").write_text('{"n_layer": 3,}')
    code, line = run_cli("--config", str(tmp_path / "bad.json"))
    assert code != 0 and line.startswith(f"error: --config {tmp_path / 'bad.json'}: not a JSON object")
    for flags, message in [(["--batch_size", "0"], "error: --batch_size 0: must be finite and at least 1"),
                           (["--steps", "-5"], "error: --steps -5: must be finite and at least 1"),
                           (["--learning_rate", "-1"], "error: --learning_rate -1.0: must be finite and at least 0"),
                           (["--n_head", "5"], "error: n_embd (256) must be a multiple of n_head (5)"),
                           (["--dropout", "1"], "error: --dropout 1.0: must be in [0, 1)")]:
        code, line = run_cli(*flags, "--out", str(tmp_path / "o5"))
        assert code != 0 and line == message, (flags, line)
    assert not (tmp_path / "o5").exists()  # refused before any work


def test_resume_from_a_checkpoint_of_other_names_fails_loudly(tmp_path):
    # tests/data/pre_rename: a training checkpoint written before the blocks' attributes were
    # renamed (model.h[0].c_attn then, model.blocks[0].attn.c_attn now); restoring it must not
    # leave the model's weights at their random initial values in silence.
    h = gpt2.HParams(n_vocab=16, n_ctx=4, n_embd=8, n_head=2, n_layer=1)
    model = gpt2.GPT2(h)
    prefix = os.path.join(os.path.dirname(__file__), "data", "pre_rename", "checkpoints", "ckpt-1")
    with pytest.raises(ValueError, match=r"written by another version of this code: it lacks model/h0/"):
        gpt2.restore(tf.train.Checkpoint(model=model), prefix)


def test_nan_loss_stops_with_the_step(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, learning_rate=1e30, optimizer="adam", steps=8)
    with pytest.raises(FloatingPointError, match=r"loss is nan in steps \d+\.\.\d+"):
        train.train(TINY, config, log=lambda *a: None)
    assert not (tmp_path / "model.ckpt.index").exists()
    # but the vocabulary is in OUT from the start: sample.py --model OUT works on the checkpoints
    assert data.Encoder.load(str(tmp_path)).n_vocab == TINY.n_vocab
