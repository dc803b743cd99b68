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

from conftest import ROOT, assert_trained_alike

pytestmark = pytest.mark.slow  # every test reads the results of one process of one to two minutes


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
        assert abs(ours["loss"] - reference["loss"]) <= 1e-6 * reference["loss"], where


def test_train_runs_under_two_replicas_and_samples_after(results):
    # train.train under MirroredStrategy, end to end (it failed on int() of a MirroredVariable),
    # then the closing sample `python train.py` prints, on the mirrored model.
    assert results["replicas"] == [1, 2]
    assert results["steps_two"] == 4
    assert isinstance(results["closing_sample"], str) and len(results["closing_sample"]) > 0


def assert_same_curves(one, other):
    """The loss and the all-reduced gradient's norm at every step, and the held-out loss: a
    gradient summed wrongly across replicas (or a loss scaled wrongly) shows here, although
    Adafactor's updates, which divide by the gradient's size, would hide it. Float32 sums in
    another order (two half batches, then the all-reduce) differ by ~1e-7 relative; after 4
    steps of different rounding, 1e-5 holds with room to spare."""
    assert [r["step"] for r in one] == [r["step"] for r in other] == [1, 2, 3, 4]
    for a, b in zip(one, other):
        for key in set(a) & set(b) & {"train_loss", "grad_norm", "val_loss"}:
            assert abs(a[key] - b[key]) <= 1e-5 * abs(a[key]), (key, a, b)


def test_one_and_two_replicas_agree(results):
    assert_same_curves(results["metrics_one"], results["metrics_two"])
    # The weights: see conftest.assert_trained_alike for the bound and why.
    assert_trained_alike(results["weights_init"], results["weights_one"], results["weights_two"])


def test_micro_batches_on_two_replicas_equal_one_batch(results):
    # --grad_accum 2 on two replicas: each replica's 2 rows run as 2 micro-batches of 1, against
    # the one-replica, one-batch run: the same losses, gradient norms and weights.
    assert_same_curves(results["metrics_one"], results["metrics_accum"])
    assert_trained_alike(results["weights_init"], results["weights_one"], results["weights_accum"])


@pytest.mark.parametrize("run", ["recompute", "both"])
def test_recomputation_on_two_replicas_equals_one_device(results, run):
    # --recompute (and --recompute --grad_accum 2) on two replicas, the plain step functions
    # TPUStrategy runs (tested before only under one device's XLA), against one device without
    # either: recomputing a block's activations gives the same gradients
    assert_same_curves(results["metrics_one"], results[f"metrics_{run}"])
    assert_trained_alike(results["weights_init"], results["weights_one"], results[f"weights_{run}"])


def test_resume_with_another_replica_count(results):
    # Two steps on one replica (Colab's one core), resumed to four on two (Kaggle's eight, in
    # miniature): the checkpoint holds the weights, the optimizer and the host's data position,
    # none of which depend on the replica count. Steps 3 and 4 then equal the uninterrupted
    # one-replica run's (which resumed from the same checkpoint on one replica).
    assert_same_curves(results["metrics_one"], results["metrics_resumed"])


def test_replica_step_graph_is_what_a_tpu_compiles(results):
    # The graph of one step under the two-replica strategy (the host's row split and strategy.run
    # of the step, as TPUStrategy compiles it): XLA on a TPU has no float64 and no strings,
    # cannot call back into Python, reads no dataset inside the step, and drops Assert, Print
    # and CheckNumerics without a word.
    lint = results["lint"]
    assert lint["ops"] > 100  # the whole step was traced: forward, backward, all-reduce, update
    assert lint["bad_dtypes"] == [] and lint["bad_ops"] == [], lint
