"""Run by tests/test_replicas.py in a process of its own: python replicas_script.py OUT VOCAB_DIR.
Splits the CPU into two logical devices, runs the checks, writes OUT/results.json."""
import json
import os
import shutil
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.set_soft_device_placement(False)  # strict: an op placed where it cannot run fails
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import gpt2  # noqa: E402
import sample  # noqa: E402
import train  # noqa: E402

out, vocab_dir = sys.argv[1], sys.argv[2]
results = {}


def two_replicas():
    return tf.distribute.MirroredStrategy(["/cpu:1", "/cpu:0"])  # the first replica on cpu:1


# 1. Placement: one set of weights on three placements; generate and score on each.
h = gpt2.HParams(n_vocab=64, n_ctx=16, n_embd=32, n_head=2, n_layer=2)


def probe(model):
    return {"greedy": sample.generate(model, [[5, 17, 3, 9]], 12, temperature=0, seed=0).tolist(),
            "loss": sample.score(model, [i * 7 % 64 for i in range(40)], batch_size=2)["loss"]}


results["placement"] = {"default": probe(gpt2.GPT2(h, seed=3))}
with tf.device("/cpu:1"):
    results["placement"]["cpu1"] = probe(gpt2.GPT2(h, seed=3))
with two_replicas().scope():
    mirrored = gpt2.GPT2(h, seed=3)
results["placement"]["mirrored"] = probe(mirrored)

# 2. train.train on one replica and on two, and a run resumed across replica counts.
texts = os.path.join(out, "texts")
os.makedirs(texts)
for i, file in enumerate(data.corpus_files("stdlib")[:40]):
    with open(os.path.join(texts, f"{i}.txt"), "w") as f:
        f.write(data.read_text(file))
corpus = os.path.join(out, "prepared")
data.prepare(os.path.join(texts, "*.txt"), corpus, vocab_dir, val_fraction=0.2, processes=1)
tiny = gpt2.HParams(n_vocab=50257, n_ctx=32, n_embd=32, n_head=2, n_layer=2)


def config(name, steps=4, grad_accum=1, recompute=False):
    return train.TrainConfig(data=corpus, out=os.path.join(out, name), steps=steps, batch_size=4, steps_per_loop=1,
                             log_interval=1, eval_interval=4, eval_steps=2, save_interval=2, warmup_steps=2,
                             sample_length=0, grad_accum=grad_accum, recompute=recompute)


def metrics(name):
    with open(os.path.join(out, name, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def weights(model):
    return {gpt2.variable_name(v): v.numpy().tolist() for v in model.variables}


quiet = lambda *args: None  # noqa: E731
# "one" runs 2 steps, then a copy of it resumes on two replicas and "one" itself on one: both
# runs continue from the same checkpoint, the host's data position included.
train.train(tiny, config("one", steps=2), tf.distribute.get_strategy(), log=quiet)
shutil.copytree(os.path.join(out, "one"), os.path.join(out, "resumed"))
one = train.train(tiny, config("one"), tf.distribute.get_strategy(), log=quiet)
train.train(tiny, config("resumed"), two_replicas(), log=quiet)
two = train.train(tiny, config("two"), two_replicas(), log=quiet)
accum = train.train(tiny, config("accum", grad_accum=2), two_replicas(), log=quiet)
# --recompute on the path TPUStrategy takes (plain step functions under a strategy), alone and
# with --grad_accum 2: tf.recompute_grad inside strategy.run, inside the accumulation loop
recompute = train.train(tiny, config("recompute", recompute=True), two_replicas(), log=quiet)
both = train.train(tiny, config("both", grad_accum=2, recompute=True), two_replicas(), log=quiet)
results.update(replicas=[one.strategy.num_replicas_in_sync, two.strategy.num_replicas_in_sync],
               steps_two=int(two.optimizer.iterations.numpy()),
               metrics_one=metrics("one"), metrics_two=metrics("two"), metrics_resumed=metrics("resumed"),
               weights_init=weights(gpt2.GPT2(tiny, seed=0)), weights_one=weights(one.model),
               weights_two=weights(two.model), metrics_accum=metrics("accum"), weights_accum=weights(accum.model),
               metrics_recompute=metrics("recompute"), weights_recompute=weights(recompute.model),
               metrics_both=metrics("both"), weights_both=weights(both.model),
               closing_sample=train.closing_sample(two.model, os.path.join(out, "two"), 8))

# 3. The graph of one step under two replicas: the host's split and strategy.run of the step.
@tf.function
def one_step(batch):
    two.strategy.run(two.replica_step, args=(two.split(batch),))


graph = one_step.get_concrete_function(tf.TensorSpec([4, tiny.n_ctx + 1], tf.int32)).graph
nodes = list(graph.as_graph_def().node)
for function in graph.as_graph_def().library.function:  # the bodies of functions the step calls
    nodes += list(function.node_def)
bad_types = {tf.float64.as_datatype_enum: "float64", tf.string.as_datatype_enum: "string"}
bad_dtypes, bad_ops = set(), set()
for node in nodes:
    for key in ("T", "dtype", "DstT", "SrcT", "Tout", "out_type", "Tparams"):
        if key in node.attr and node.attr[key].type in bad_types:
            bad_dtypes.add(f"{node.op}:{bad_types[node.attr[key].type]}")
    if node.op in ("PyFunc", "EagerPyFunc", "PyFuncStateless", "Assert", "Print", "PrintV2", "CheckNumerics",
                   "CheckNumericsV2") or "Dataset" in node.op or "Iterator" in node.op:
        bad_ops.add(node.op)
results["lint"] = {"ops": len(nodes), "bad_dtypes": sorted(bad_dtypes), "bad_ops": sorted(bad_ops)}

with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f)
