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
    assert trainer.strategy.num_replicas_in_sync in (1, 2)
    loss, _ = trainer.train_loop(iter(tf.data.Dataset.from_tensor_slices(batches)), tf.constant(5))
    results.append((float(loss), [v.numpy() for v in trainer.model.variables]))
(l1, w1), (l2, w2) = results
print("losses", l1, l2)
assert abs(l1 - l2) < 1e-5, (l1, l2)
assert max(np.abs(a - b).max() for a, b in zip(w1, w2)) < 1e-5
assert max(np.abs(a - b).max() for a, b in zip(w1, [v.numpy() for v in gpt2.GPT2(h).variables])) > 1e-3
print("same")
'''


def test_one_and_two_replicas_agree():
    result = subprocess.run([sys.executable, "-c", SCRIPT.replace("ROOT", repr(ROOT))], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same" in result.stdout
