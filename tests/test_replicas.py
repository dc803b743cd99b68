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
# The weights, compared in global norm relative to how far training moved them, never per
# element. Float32 sums taken in another order (two half-batches, then the all-reduce) differ
# in the last bits, ~1e-7 relative; Adafactor's step is normalised (gradient / its RMS), so
# for most weights that stays ~1e-6 after 5 steps. Two slices are different: the attention's
# key bias has a gradient that is zero in exact arithmetic (a constant added to every score of
# a softmax changes nothing), so it is pure rounding noise, which the normalised step turns
# into full steps in random directions; once it has moved, the query bias's gradient is a sum
# of keys that cancels that common part, and inherits the noise. On those two slices the runs
# may disagree by as much as both moved (the triangle inequality), so, in global norm:
#   |W1 - W2| <= 1e-5 |W1 - W0| + |q, k biases' movement in run 1| + |the same in run 2|.
# A replica bug (a gradient not summed, a replica skipping its update) moves every weight
# differently: |W1 - W2| of the order of |W1 - W0|, far above this bound.
w0 = {v.name: v.numpy() for v in gpt2.GPT2(h).variables}
norm = lambda arrays: float(np.sqrt(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays)))
moved = norm(w1[k] - w0[k] for k in w1)
differ = norm(w1[k] - w2[k] for k in w1)
qk1, qk2 = (norm((w[k] - w0[k])[:2 * h.n_embd] for k in w if k.endswith("attn/c_attn/b:0")) for w in (w1, w2))
print("moved", moved, "differ", differ, "q and k biases moved", qk1, qk2)
assert differ <= 1e-5 * moved + qk1 + qk2, (differ, moved, qk1, qk2)
assert moved > 1e-2  # training moved the weights
print("same")
'''


def test_one_and_two_replicas_agree():
    result = subprocess.run([sys.executable, "-c", SCRIPT.replace("ROOT", repr(ROOT))], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same" in result.stdout
