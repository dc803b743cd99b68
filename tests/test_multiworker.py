"""Several machines, stood in for by two worker processes on this one: TF_CONFIG names two
loopback ports, and train.py builds MultiWorkerMirroredStrategy (RING collectives over gRPC).

What this proves: the one code path under that strategy (every worker makes every call, only the
chief writes OUT's files, checkpoints as TensorFlow requires), equal to one process with the same
global batch; preemption (SIGTERM to one worker) saving and resuming; mistakes in one line. What it
does not: NCCL on GPUs, a real network (latency, a host lost mid-step), TPU pods.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import gpt2
import train
from conftest import ROOT, assert_trained_alike

TINY = ["--config", "tiny", "--n_ctx", "32", "--n_embd", "32", "--n_head", "2", "--n_layer", "1", "--batch_size", "4",
        "--steps", "12", "--steps_per_loop", "2", "--log_interval", "2", "--eval_interval", "4", "--eval_steps", "2",
        "--save_interval", "4", "--warmup_steps", "1", "--sample_length", "0"]
LONG_STEPS = 150  # long enough that a SIGTERM sent at the first checkpoint (step 10) lands mid-run: 140
# more steps (about 3 s on 2 cores) for the workers to agree on a step and save it
LONG = ["--steps", str(LONG_STEPS), "--steps_per_loop", "1", "--log_interval", "10", "--eval_interval", "50",
        "--save_interval", "10"]


@pytest.fixture(scope="module")
def corpus(stdlib_corpus):  # several workers need prepared data
    return stdlib_corpus


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def start(args, ports, indices=(0, 1)):
    """train.py as the workers `indices` of the cluster on `ports`, one intra-op thread each."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args],
                             env={**env, "TF_CONFIG": tf_config(ports, i)}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for i in indices]


def finish(workers, timeout=300):
    """Each worker's (exit code, output)."""
    return [(w.wait(timeout), w.communicate()[0]) for w in workers]


def weights(path):
    reader = tf.train.load_checkpoint(os.path.join(path, "model.ckpt"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def records(out):
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def two_workers(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("two") / "out")
    results = finish(start([*TINY, "--data", corpus, "--out", out], free_ports(2)))
    assert all(code == 0 for code, _ in results), results
    return out, results


@pytest.mark.slow  # worker processes
def test_two_workers_train_as_one_process(two_workers, corpus, tmp_path):
    out, results = two_workers
    hparams, config = train.parse_config([*TINY, "--data", corpus, "--out", str(tmp_path / "one")])
    one = train.train(hparams, config, log=lambda *_: None)  # one process, one device, the same global batch
    gpt2.save(gpt2.GPT2(one.model.hparams, seed=0), str(tmp_path / "init"))  # where both started (seed 0)
    assert_trained_alike(weights(tmp_path / "init"), weights(tmp_path / "one"), weights(out))
    # one metrics.jsonl (the chief's), one record per log step, the losses and norms of one process:
    # float32 sums in another order (two rows per worker, then the ring all-reduce), ~1e-7 relative a step
    ours, reference = records(out), records(tmp_path / "one")
    assert [r["step"] for r in ours] == [r["step"] for r in reference] == [2, 4, 6, 8, 10, 12]
    for a, b in zip(ours, reference):
        for key in set(a) & {"train_loss", "grad_norm", "val_loss"}:
            assert abs(a[key] - b[key]) <= 1e-5 * abs(b[key]), (key, a, b)
    assert gpt2.load(out).hparams.n_layer == 1  # the chief's export loads
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == sorted(
        ["checkpoint", *[f"ckpt-{s}.{e}" for s in (4, 8, 12) for e in ("data-00000-of-00001", "index")]])  # no temp-*
    assert not os.path.exists(os.path.join(out, "train.lock"))
    assert "saved the model" in results[0][1]


@pytest.mark.slow  # worker processes
def test_sigterm_to_one_worker_saves_and_the_same_command_resumes(corpus, tmp_path):
    args, ports = [*TINY, *LONG, "--data", corpus, "--out", str(tmp_path / "out")], free_ports(2)
    workers = start(args, ports)
    first = tmp_path / "out" / "checkpoints" / "ckpt-10.index"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and all(w.poll() is None for w in workers):
        time.sleep(0.05)
    workers[1].send_signal(signal.SIGTERM)  # a cloud's preemption notice, to the worker that is not the chief
    (code0, text0), (code1, text1) = finish(workers)
    assert code0 == code1 == 42, (text0[-2000:], text1[-2000:])  # the handler's exit: "restart me"
    saved = [int(line.split("saved step ")[1].split(";")[0]) for line in text0.splitlines() if "preempted: saved" in line]
    assert len(saved) == 1 and 10 <= saved[0] < LONG_STEPS, text0[-2000:]  # mid-run: a test, not a finished run
    assert (tmp_path / "out" / "checkpoints" / f"ckpt-{saved[0]}.index").exists()

    resumed = finish(start(args, free_ports(2)))
    assert all(code == 0 for code, _ in resumed), resumed
    assert all(f"ckpt-{saved[0]} at step {saved[0]}" in text for _, text in resumed)
    uninterrupted = finish(start([*args[:-1], str(tmp_path / "whole")], free_ports(2)))
    assert all(code == 0 for code, _ in uninterrupted)
    # The same run: data position, weights and optimizer from the checkpoint, dropout a function of the step
    a, b = weights(tmp_path / "out"), weights(tmp_path / "whole")
    assert all(np.array_equal(a[k], b[k]) for k in b)
    steps = [r["step"] for r in records(tmp_path / "out")]
    assert steps == list(range(10, LONG_STEPS + 1, 10))  # every log step once, none written twice
    for x, y in zip(records(tmp_path / "out"), records(tmp_path / "whole")):
        assert (x["grad_norm"], x.get("val_loss")) == (y["grad_norm"], y.get("val_loss"))
        # a log's train_loss is the mean since the last log: the first log after the resume has the resumed steps only
        assert x["train_loss"] == y["train_loss"] or saved[0] < x["step"] < saved[0] + 10
    assert not [n for n in os.listdir(tmp_path / "out" / "checkpoints") if n.startswith("temp-")]


# ---- mistakes: one line each, never a hang ------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("{not json", "TF_CONFIG is not {'cluster'"),
    (json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}), "names one worker"),
    (json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]}}), "TF_CONFIG is not {'cluster'"),  # no task
    (json.dumps({"cluster": {"worker": ["a:1", "a:2", "a:3"]}, "task": {"type": "worker", "index": 0}}),
     "--batch_size 4 does not split into 3 replica(s)"),
    (json.dumps({"cluster": {"worker": ["a:1", "a:2"]}, "task": {"type": "worker", "index": 0}}),
     "several workers train on prepared data only"),
])
def test_a_mistake_in_the_cluster_is_one_line(monkeypatch, tmp_path, capsys, value, message):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(SystemExit) as exit:
        train.main([*TINY, "--data", "stdlib", "--out", str(tmp_path / "out")])
    assert str(exit.value.code).startswith("error: ") and message in str(exit.value.code), exit.value.code
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")  # nothing written


@pytest.mark.slow  # worker processes
def test_a_port_in_use_is_one_line(corpus, tmp_path):
    ports = free_ports(2)
    with socket.socket() as taken:
        taken.bind(("", ports[0]))
        taken.listen()
        [(code, text)] = finish(start([*TINY, "--data", corpus, "--out", str(tmp_path / "out")], ports, [0]), 120)
    assert code == 1 and text.splitlines()[-1].startswith("error: this worker could not serve TF_CONFIG's "
                                                          f"localhost:{ports[0]} (a port in use?)"), text[-2000:]


@pytest.mark.slow  # worker processes
def test_a_worker_that_never_joins_ends_in_one_line(corpus, tmp_path):
    args = [*TINY, "--data", corpus, "--out", str(tmp_path / "out"), "--join_timeout", "5"]
    [(code, text)] = finish(start(args, free_ports(2), [0]), 120)  # worker 1 is never started
    assert code != 0 and text.splitlines()[-1] == ("error: not every worker in TF_CONFIG started within "
                                                   "--join_timeout 5 s (each runs this same command)"), text[-2000:]
