"""One replica and two replicas (the CPU split into two logical devices) train identically.

Its own file, run in its own process by the test below: logical devices must be configured
before TensorFlow touches any device, which the other tests have long done by then."""
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = r'''
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, ROOT)
import gpt2, train
h = gpt2.HParams(n_vocab=64, n_ctx=16, n_embd=32, n_head=2, n_layer=2)
config = train.TrainConfig(batch_size=4, steps=10, warmup_steps=2)
batches = np.random.default_rng(0).integers(0, 64, size=(5, 4, 17)).astype(np.int32)
results = []
for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
    trainer = train.Trainer(h, config, strategy)
    iterator = iter(tf.data.Dataset.from_tensor_slices(batches))
    curve = [[float(t) for t in trainer.train_loop(iterator, tf.constant(1))] for _ in range(5)]  # (loss, grad norm)
    results.append((curve, {v.name: v.numpy() for v in trainer.model.variables}, strategy.num_replicas_in_sync))
(c1, w1, r1), (c2, w2, r2) = results
print("replicas", r1, r2, "losses and gradient norms", c1, c2)
assert (r1, r2) == (1, 2)
# The loss and the all-reduced gradient's norm at every step: a gradient summed wrongly
# across replicas (or a loss scaled wrongly) shows here, even though Adafactor's updates would hide it.
assert np.allclose(c1, c2, rtol=1e-5, atol=0), (c1, c2)
# The weights. One slice is left out: the key bias (the middle third of c_attn/b). Its gradient
# is zero in exact arithmetic (a constant added to every score of a softmax changes nothing),
# so it is rounding noise, and Adafactor's normalised update turns noise into a full step.
C = h.n_embd
for name in w1:
    a, b = w1[name], w2[name]
    if name.endswith("attn/c_attn/b:0"):
        a, b = np.delete(a, np.s_[C:2 * C]), np.delete(b, np.s_[C:2 * C])
    assert np.abs(a - b).max() < 1e-6, (name, np.abs(a - b).max())
assert np.abs(w1["model/wte:0"] - gpt2.GPT2(h).wte.numpy()).max() > 1e-3  # training moved the weights
print("same")
'''


def test_one_and_two_replicas_agree():
    result = subprocess.run([sys.executable, "-c", SCRIPT.replace("ROOT", repr(ROOT))], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same" in result.stdout
