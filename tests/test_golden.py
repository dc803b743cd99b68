"""The refactoring guard: numbers from a seeded tiny model, recorded once in tests/golden.json
(python tests/test_golden.py records them anew), must come out the same after any change that
is meant to change no arithmetic: the training losses and gradient norms of 60 steps with
dropout, a held-out loss, greedy tokens with and without the KV cache, and top-k's rule for ties."""
import json
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gpt2  # noqa: E402
import sample  # noqa: E402
import train  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")


def golden_numbers():
    hparams = gpt2.HParams(n_vocab=64, n_ctx=16, n_embd=32, n_head=4, n_layer=2, dropout=0.1)
    config = train.TrainConfig(batch_size=4, steps=60, learning_rate=0.05, warmup_steps=5, seed=3)
    trainer = train.Trainer(hparams, config, tf.distribute.get_strategy())
    # counting mod 64 from random starts: learnable in a few dozen steps, so greedy text varies
    starts = np.random.default_rng(0).integers(0, 64, size=(20, 4, 1))
    tokens = ((starts + np.arange(17)) % 64).astype(np.int32)  # 20 batches (4, 17)
    batches = iter(tf.data.Dataset.from_tensor_slices(tokens).repeat())
    losses, norms = [], []
    for _ in range(6):  # 60 steps, 10 per call: the mean loss of each call
        loss, norm = trainer.train_loop(batches, tf.constant(10))
        losses.append(float(loss))
        norms.append(float(norm))
    held_out = float(trainer.eval_loop(iter(tf.data.Dataset.from_tensor_slices(tokens[18:])), tf.constant(2)))
    prompt = tokens[0, :2, :3]
    greedy = {f"cache={use_cache}": sample.generate(trainer.model, prompt, 12, temperature=0, use_cache=use_cache).tolist()
              for use_cache in (True, False)}
    ties = sample.top_k_filter(tf.constant([[1.0, 3.0, 2.0, 3.0, 2.0, 0.0]]), 3).numpy()  # keeps 3, 3, 2, 2
    return {"losses": losses, "grad_norms": norms, "held_out": held_out, "greedy": greedy,
            "top_k_ties_kept": np.isfinite(ties).tolist()}


def test_golden_numbers_unchanged():
    with open(GOLDEN) as f:
        golden = json.load(f)
    ours = golden_numbers()
    # float32 training on a different processor: agreement to rounding, not to the bit
    np.testing.assert_allclose(ours["losses"], golden["losses"], rtol=1e-5)
    np.testing.assert_allclose(ours["grad_norms"], golden["grad_norms"], rtol=1e-4)
    np.testing.assert_allclose(ours["held_out"], golden["held_out"], rtol=1e-5)
    assert ours["greedy"] == golden["greedy"]
    assert ours["top_k_ties_kept"] == golden["top_k_ties_kept"] == [[False, True, True, True, True, False]]


if __name__ == "__main__":
    with open(GOLDEN, "w") as f:
        json.dump(golden_numbers(), f, indent=1)
    print(open(GOLDEN).read())
