"""Stand-ins for a TPU, on this CPU split into two logical devices.

No machine here has a TPU, so everything a TPU run does beyond a one-device run is done here on
two logical CPUs, under the same code path: the model placed on the second device, a
MirroredStrategy of two replicas (TPUStrategy's path: plain step functions, the host cutting
each batch into the replicas' rows), strict placement (an op on the wrong device fails instead
of being moved), and the per-replica step's graph checked for what XLA on a TPU rejects or
drops. One process runs it all, in tests/replicas_script.py's order, because logical devices
must be configured before TensorFlow touches any device; the tests below read its results.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def results(tmp_path_factory, gpt2_vocab_dir):
    out = tmp_path_factory.mktemp("replicas")
    script = os.path.join(ROOT, "tests", "replicas_script.py")
    done = subprocess.run([sys.executable, script, str(out), gpt2_vocab_dir], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "results.json") as f:
        found = json.load(f)
    return {key: ({name: np.array(v) for name, v in value.items()} if key.startswith("weights") else value)
            for key, value in found.items()}


def test_generate_and_score_wherever_the_model_lives(results):
    # The same weights on the default device, on /cpu:1 alone, and mirrored on /cpu:1 and /cpu:0
    # (first replica on cpu:1): before sample.generate placed itself beside the weights, the last
    # two failed ("Trying to access resource model/wte ... located in device CPU:1 from device CPU:0").
    reference = results["placement"]["default"]
    for where in ("cpu1", "mirrored"):
        ours = results["placement"][where]
        assert ours["greedy"] == reference["greedy"], where
        assert ours["sampled"] == reference["sampled"], where
        assert abs(ours["loss"] - reference["loss"]) <= 1e-6 * reference["loss"], where


def test_train_runs_under_two_replicas_and_samples_after(results):
    # train.train under MirroredStrategy, end to end (it failed on int() of a MirroredVariable),
    # then the closing sample `python train.py` prints, on the mirrored model.
    assert results["replicas"] == [1, 2]
    assert results["steps_two"] == 4
    assert isinstance(results["closing_sample"], str) and len(results["closing_sample"]) > 0


def test_one_and_two_replicas_agree(results):
    one, two = results["metrics_one"], results["metrics_two"]
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3, 4]
    # The loss and the all-reduced gradient's norm at every step: a gradient summed wrongly
    # across replicas (or a loss scaled wrongly) shows here, although Adafactor's updates, which
    # divide by the gradient's size, would hide it. Float32 sums in another order (two half
    # batches, then the all-reduce) differ by ~1e-7 relative; after 4 steps of different
    # rounding, 1e-5 holds with room to spare.
    for a, b in zip(one, two):
        for key in ("train_loss", "grad_norm", "val_loss"):
            if key in a:
                assert abs(a[key] - b[key]) <= 1e-5 * abs(a[key]), (key, a, b)
    # The weights, in global norm relative to how far training moved them, never per element.
    # Adafactor's step is normalised (gradient / its RMS), so rounding in most weights stays
    # ~1e-6 of the movement. Two slices are different: the attention's key bias has a gradient
    # that is zero in exact arithmetic (a constant added to every score of a softmax changes
    # nothing), so it is pure rounding noise, which the normalised step turns into full steps in
    # random directions; once it has moved, the query bias's gradient is a sum of keys that
    # cancels that common part, and inherits the noise. On those two slices the runs may
    # disagree by as much as both moved (the triangle inequality), so, in global norm:
    #   |W1 - W2| <= 1e-5 |W1 - W0| + |q, k biases' movement in run 1| + |the same in run 2|.
    # A replica bug (a gradient not summed, a replica's rows read twice) moves every weight
    # differently: |W1 - W2| of the order of |W1 - W0|, far above this bound.
    w0, w1, w2 = results["weights_init"], results["weights_one"], results["weights_two"]
    moved, differ = global_norm(w1[k] - w0[k] for k in w0), global_norm(w1[k] - w2[k] for k in w0)
    C = results["n_embd"]
    qk1, qk2 = (global_norm((w[k] - w0[k])[:2 * C] for k in w0 if k.endswith("attn/c_attn/b")) for w in (w1, w2))
    assert moved > 1e-2  # training moved the weights
    assert differ <= 1e-5 * moved + qk1 + qk2, (differ, moved, qk1, qk2)


def global_norm(arrays):
    return float(np.sqrt(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays)))


def test_resume_with_another_replica_count(results):
    # Two steps on one replica (Colab's one core), resumed to four on two (Kaggle's eight, in
    # miniature): the checkpoint holds the weights, the optimizer and the host's data position,
    # none of which depend on the replica count. Steps 3 and 4 then equal the uninterrupted
    # one-replica run's, with the tolerance of the test above.
    one, resumed = results["metrics_one"], results["metrics_resumed"]
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]  # step 2 also evaluated: it ended the first run
    for a, b in zip(one, resumed):
        for key in ("train_loss", "grad_norm", "val_loss"):
            if key in a:
                assert abs(a[key] - b[key]) <= 1e-5 * abs(a[key]), (key, a, b)


def test_replica_step_graph_is_what_a_tpu_compiles(results):
    # The graph of one step under the two-replica strategy (the host's row split and strategy.run
    # of the step, as TPUStrategy compiles it): XLA on a TPU has no float64 and no strings,
    # cannot call back into Python, reads no dataset inside the step, and drops Assert, Print
    # and CheckNumerics without a word.
    lint = results["lint"]
    assert lint["ops"] > 100  # the whole step was traced: forward, backward, all-reduce, update
    assert lint["bad_dtypes"] == [] and lint["bad_ops"] == [], lint
