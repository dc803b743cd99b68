"""
Training GPT-2: Adafactor written from the paper, and one loop for CPU, GPU and TPU.

- Adafactor (Shazeer and Stern 2018, arXiv 1804.04235, Algorithms 4 and 5): Adam keeps two
  numbers per weight; Adafactor keeps, for an n x m matrix, only n + m numbers (the row and
  column means of the squared gradients). For the 1.5B GPT-2 that is the difference between
  not fitting a TPU core's memory and fitting it.
- The loop: `tf.distribute` places the model on one device, several GPUs, a TPU's cores or
  several machines (TF_CONFIG); the step is compiled with XLA; `--steps_per_loop` steps run
  inside one compiled call, as TPUs need; a `tf.train.Checkpoint` of model, optimizer and data
  position makes every run resumable.

Run `python train.py` with no arguments for the offline quick start: it trains a BPE on the
Python standard library's source, trains the 'mini' GPT-2 on it, and samples from it.

The file, in the order to read it: the optimizers; the configuration (every flag, checked before
any work) and the strategy (which devices); the compiled steps (Trainer); the run (data, model,
checkpoints, the loop, the export) and the command line. Then, after a ruler, the operations:
what a run needs besides learning (OUT's lock and the rerun check, checkpoints that survive
faults, TPUs, several machines, Ctrl-C and SIGTERM, MFU's peak and the memory plan), each a short
function to read when it matters. One piece of them must come first, and is fenced off just below:
a TPU VM's runtime variables, which TensorFlow reads while it is imported.

Shape letters as in gpt2.py: B batch, T time, C channels, V vocabulary.
Left out: multi-host TPU pods (a TPU of one host, up to 8 chips: Colab's and Kaggle's) and mixed
precision loss scaling (bfloat16 does not need it).
"""
import argparse
import dataclasses
import functools
import glob
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import socket
import sys
import time

# ==== operations, part 1 of 2: a TPU VM's runtime, set before TensorFlow starts (skip to the optimizers) ====
# Google's PCI vendor id 0x1ae0 and its TPU chips' device ids, as JAX and PyTorch/XLA read them
# (jax/_src/hardware_utils.py): a TPU shows up in /sys without any library or network.
TPU_PCI_IDS = {"0x0027": "v3", "0x005e": "v4", "0x0062": "v5p", "0x0063": "v5e", "0x006f": "v6e"}  # 0x0027: v2 too


def tpu_type(pci_root="/sys/bus/pci/devices", environ=os.environ):
    """This machine's TPU generation ('v5e', 'v3', ...), or '' if it has none, found without
    importing TensorFlow: from the PCI devices, else from TPU_ACCELERATOR_TYPE ('v5litepod-8')."""
    named = environ.get("TPU_ACCELERATOR_TYPE", "").lower().split("-")[0]  # 'v5litepod-8' -> 'v5litepod'
    for device in sorted(glob.glob(os.path.join(pci_root, "*"))):
        try:
            with open(os.path.join(device, "vendor")) as f, open(os.path.join(device, "device")) as g:
                vendor, chip = f.read().strip(), g.read().strip()
        except OSError:
            continue
        if vendor == "0x1ae0" and chip in TPU_PCI_IDS:
            return "v2" if chip == "0x0027" and named.startswith("v2") else TPU_PCI_IDS[chip]
    return {"v5litepod": "v5e"}.get(named, named)


def tpu_runtime_variables(generation, libtpu_path, environ=os.environ):
    """The environment TensorFlow needs, before it is imported, to reach a TPU of this generation:
    what to set, given the variables already set (environ), whose values win.

    From TPU v5e on, TensorFlow reaches TPUs through the PJRT runtime, in a library (libtpu)
    that it loads as a "pluggable device" while it is imported; the values are those of the
    newest public example of TensorFlow on such a TPU (keras-io, keras_rs/distributed_embedding_tf.md,
    2025-09), with the MLIR bridge's flags added to any TF_XLA_FLAGS of the user's, once. v2, v3
    and v4 work with the runtime built into TensorFlow's TPU build, unless PJRT_DEVICE=TPU asks.
    """
    if not libtpu_path or not (generation in ("v5e", "v5p", "v6e") or environ.get("PJRT_DEVICE") == "TPU"):
        return {}
    variables = {"PJRT_DEVICE": "TPU", "NEXT_PLUGGABLE_DEVICE_USE_C_API": "true",
                 "TF_PLUGGABLE_DEVICE_LIBRARY_PATH": libtpu_path}
    variables.update({name: environ[name] for name in variables if name in environ})
    flags = environ.get("TF_XLA_FLAGS", "").split()
    bridge = ["enable_mlir_bridge", "enable_convert_control_to_data_outputs_pass", "enable_merge_control_flow_pass"]
    flags += [f"--tf_mlir_{b}=true" for b in bridge if not any(f.startswith(f"--tf_mlir_{b}=") for f in flags)]
    return {**variables, "TF_XLA_FLAGS": " ".join(flags)}


def libtpu_path(environ=os.environ):
    """Where libtpu is, or '': the libtpu package's library (what libtpu.get_library_path() gives),
    else TPU_LIBRARY_PATH (which TensorFlow also reads), else a Cloud TPU image's /lib/libtpu.so."""
    spec = importlib.util.find_spec("libtpu")
    found = glob.glob(os.path.join(os.path.dirname(spec.origin), "libtpu*.so")) if spec and spec.origin else []
    found += [environ.get("TPU_LIBRARY_PATH", ""), "/lib/libtpu.so"]
    return next((path for path in found if path and os.path.isfile(path)), "")


# Set before TensorFlow is imported (by data and gpt2, below): a user of a v5e TPU VM should not need to
# know these variables. On any other machine: nothing.
os.environ.update(tpu_runtime_variables(tpu_type(), libtpu_path()))

import data  # noqa: E402
import gpt2  # noqa: E402
import sample  # noqa: E402
import tensorflow as tf  # noqa: E402


# ---- the optimizers -----------------------------------------------------------------------------

class Optimizer(tf.Module):
    """What Adafactor and AdamW share: a step count t, state ("slots") made once per variable, and
    one update per variable and step. A subclass says which slots a variable has (`slot_shapes`)
    and how it moves (`update`)."""

    def __init__(self, name, learning_rate):
        super().__init__(name=name)
        self.learning_rate = learning_rate  # a float, or a function of the step t (a schedule)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.slots, self.index = [], {}  # a dict of state variables per model variable; var.ref() -> position

    def build(self, var_list):
        """Creates the state, once, before the first step (not inside a compiled step, whose first
        trace would create variables). Trainer calls it under the strategy's scope: the state is
        mirrored like the weights."""
        for var in var_list:
            name = var.name.split(":")[0]
            self.index[var.ref()] = len(self.slots)
            self.slots.append({k: tf.Variable(tf.zeros(shape), trainable=False, name=f"{name}/{self.name}_{k}")
                               for k, shape in self.slot_shapes(var.shape.as_list()).items()})

    def apply_gradients(self, grads_and_vars):
        t = tf.cast(self.iterations.assign_add(1), tf.float32)  # t = 1 at the first step
        lr = self.learning_rate(t) if callable(self.learning_rate) else self.learning_rate
        for grad, var in grads_and_vars:
            self.update(grad, var, self.slots[self.index[var.ref()]], t, lr)


class Adafactor(Optimizer):
    """Adafactor, as in Shazeer and Stern 2018 (arXiv 1804.04235), Algorithms 4 (matrices) and 5 (vectors).

    ALGORITHM, for each step t = 1, 2, ... and each variable X with gradient G:
        rho_t   = learning_rate(t), or min(1e-2, 1 / sqrt(t)) when none is given
        alpha_t = max(eps2, RMS(X_{t-1})) rho_t    (section 8: a step relative to the weights' scale;
                  rho_t alone with relative_step=False)
        beta2_t = 1 - t^(-decay_rate)               (section 7: 0 at t = 1, then tends to 1; with a
                  fixed beta2, the same with Adam's bias correction: beta2 (1 - beta2^(t-1)) / (1 - beta2^t))
        if X has rank >= 2 (and factored), over its last two axes, n rows and m columns:
                                                        (section "Factored Second Moment Estimation")
            R_t = beta2_t R_{t-1} + (1 - beta2_t) mean_cols(G^2 + eps1)     (n numbers)
            C_t = beta2_t C_{t-1} + (1 - beta2_t) mean_rows(G^2 + eps1)     (m numbers)
            V_t = R_t C_t^T / mean(R_t)                        (a rank-1 estimate of E[G^2])
        else:
            V_t = beta2_t V_{t-1} + (1 - beta2_t) (G^2 + eps1)
        U_t = G / sqrt(V_t)
        U_t = U_t / max(1, RMS(U_t) / clip_threshold)          (section 6: update clipping; math.inf: none)
        if beta1 > 0:  M_t = beta1 M_{t-1} + (1 - beta1) U_t;  U_t = M_t  (optional momentum)
        X_t = X_{t-1} - alpha_t U_t - rho_t weight_decay X_{t-1}     (decoupled weight decay)

    The paper writes row and column *sums*; means give the same V_t (the factors cancel) and
    keep the numbers in a readable range. With momentum each variable gets a full-size M as well,
    and the memory advantage over Adam halves rather than vanishes.
    """

    def __init__(self, learning_rate=None, beta1=0.0, decay_rate=0.8, clip_threshold=1.0, epsilon1=1e-30,
                 epsilon2=1e-3, weight_decay=0.0, factored=True, beta2=None, relative_step=True):
        super().__init__("adafactor", learning_rate)
        self.beta1, self.decay_rate, self.clip_threshold, self.beta2 = beta1, decay_rate, clip_threshold, beta2
        self.epsilon1, self.epsilon2, self.weight_decay = epsilon1, epsilon2, weight_decay
        self.factored, self.relative_step = factored, relative_step

    def slot_shapes(self, shape):
        """R has the variable's shape without its last axis, C without its second last: wte (V, C)
        gets R (V,) and C (C,). Vectors (and everything, unfactored) get a full V."""
        slots = {"r": shape[:-1], "c": shape[:-2] + shape[-1:]} if self.factored and len(shape) >= 2 else {"v": shape}
        return {**slots, "m": shape} if self.beta1 > 0 else slots

    def update(self, grad, var, slots, t, lr):
        rho = tf.minimum(1e-2, tf.math.rsqrt(t)) if lr is None else lr
        if self.beta2 is None:
            beta2 = 1.0 - tf.pow(t, -self.decay_rate)  # no bias correction needed: beta2_1 = 0
        else:
            # (1 - beta2^(t-1)) / (1 - beta2^t) as expm1((t-1) log beta2) / expm1(t log beta2): 1 - 0.999^t
            # in float32 would lose three digits to cancellation
            log_beta2 = math.log(self.beta2)
            beta2 = self.beta2 * tf.math.expm1((t - 1) * log_beta2) / tf.math.expm1(t * log_beta2)
        g2 = tf.square(grad) + self.epsilon1
        if "r" in slots:
            r = slots["r"].assign(beta2 * slots["r"] + (1 - beta2) * tf.reduce_mean(g2, axis=-1))  # (..., n)
            c = slots["c"].assign(beta2 * slots["c"] + (1 - beta2) * tf.reduce_mean(g2, axis=-2))  # (..., m)
            # G / sqrt(V) for V = R C^T / mean(R), as G times a row factor times a column factor:
            # V itself can underflow to 0 in float32 where a row's gradient is 0 (1e-30 x 1e-10),
            # and 0 / sqrt(0) is NaN (an untied embedding's row for a token absent from the batch)
            row = tf.math.rsqrt(r / tf.reduce_mean(r, axis=-1, keepdims=True))  # (..., n)
            update = grad * row[..., :, None] * tf.math.rsqrt(c)[..., None, :]  # (..., n, m)
        else:
            v = slots["v"].assign(beta2 * slots["v"] + (1 - beta2) * g2)
            update = grad * tf.math.rsqrt(v)
        # U is about +-1 per entry when the estimate is good. Clipping guards the steps where the
        # estimate lags behind a sudden large gradient (section 6): without momentum, this is what
        # keeps Adafactor stable.
        update /= tf.maximum(1.0, rms(update) / self.clip_threshold)
        if "m" in slots:
            update = slots["m"].assign(self.beta1 * slots["m"] + (1 - self.beta1) * update)
        alpha = tf.maximum(self.epsilon2, rms(var)) * rho if self.relative_step else rho
        var.assign_sub(alpha * update + rho * self.weight_decay * var)


def rms(x):
    """Root mean square: sqrt(mean(x^2))."""
    return tf.sqrt(tf.reduce_mean(tf.square(x)))


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov and Hutter 2019), for comparison: its state
    is two full copies of the weights (m and v), against Adafactor's row and column means."""

    def __init__(self, learning_rate, beta1=0.9, beta2=0.95, epsilon=1e-8, weight_decay=0.0):
        super().__init__("adam", learning_rate)
        self.beta1, self.beta2, self.epsilon, self.weight_decay = beta1, beta2, epsilon, weight_decay

    def slot_shapes(self, shape):
        return {"m": shape, "v": shape}

    def update(self, grad, var, slots, t, lr):
        """m and v: running means of the gradient and of its square, per entry; the step is
        m / sqrt(v), after correcting both for starting at zero (Kingma and Ba 2015, Alg. 1)."""
        m = slots["m"].assign(self.beta1 * slots["m"] + (1 - self.beta1) * grad)
        v = slots["v"].assign(self.beta2 * slots["v"] + (1 - self.beta2) * tf.square(grad))
        m_hat, v_hat = m / (1 - self.beta1 ** t), v / (1 - self.beta2 ** t)  # bias correction
        var.assign_sub(lr * (m_hat / (tf.sqrt(v_hat) + self.epsilon) + self.weight_decay * var))


def optimizer_state_floats(var_shapes, optimizer):
    """How many floats an optimizer keeps for variables of these shapes (its memory cost)."""
    return sum(math.prod(slot) for shape in var_shapes for slot in optimizer.slot_shapes(list(shape)).values())


# ---- configuration --------------------------------------------------------------------------

def flag(default, help):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class TrainConfig:
    """Everything a run needs besides the model's shape (gpt2.HParams). Each field is a flag."""
    data: str = flag("stdlib", "'stdlib' (offline), 'shakespeare', a glob of text files, or a directory data.py made")
    vocab: str = flag("", "a folder of encoder.json and vocab.bpe, or a BPE size (default: --init_from's, else 4096)")
    out: str = flag("out", "output directory: checkpoints, logs, metrics.jsonl, the exported model (local or gs://)")
    steps: int = flag(600, "optimizer steps in all (a resumed run continues up to this)")
    batch_size: int = flag(16, "global batch in sequences, split evenly across the replicas")
    learning_rate: float = flag(0.0, "peak learning rate (0: Adafactor 0.03, relative to the weights' RMS; Adam 1e-3)")
    warmup_steps: int = flag(60, "steps of linear warmup before the cosine decay")
    min_lr_ratio: float = flag(0.1, "the cosine decays to this fraction of the peak learning rate")
    optimizer: str = flag("adafactor", "adafactor or adam (AdamW)")
    weight_decay: float = flag(0.0, "decoupled weight decay")
    grad_clip: float = flag(1.0, "clip gradients to this global norm (0: no clipping)")
    precision: str = flag("float32", "float32, or bfloat16 (compute in bf16 with float32 weights: TPUs, recent GPUs)")
    eval_interval: int = flag(100, "evaluate on the held-out split every this many steps")
    eval_steps: int = flag(10, "batches per evaluation")
    save_interval: int = flag(100, "checkpoint every this many steps")
    log_interval: int = flag(20, "print and log every this many steps")
    steps_per_loop: int = flag(10, "steps per call of the compiled training loop (TPUs: 50-100)")
    grad_accum: int = flag(1, "micro-batches per replica and step, one after another (1/N of the activation memory)")
    recompute: bool = flag(False, "recompute activations in the backward pass: less memory, a third more compute")
    seed: int = flag(0, "seed for initialisation, data order and dropout")
    init_from: str = flag("", "start from this model directory (OpenAI's release or train.py's --out) to fine-tune")
    tpu: bool = flag(False, "train on this TPU VM's TPU (Colab, Kaggle, a TPU Research Cloud VM)")
    sample_length: int = flag(200, "tokens to sample at the end (0: none)")
    join_timeout: int = flag(300, "with several workers (TF_CONFIG): seconds to wait for all of them to start")
    dry_run: bool = flag(False, "print parameters, FLOPs and one replica's memory plan for this run, then exit")
    replicas: int = flag(0, "with --dry_run: plan for N replicas (0: this machine's GPUs, or with --tpu its TPU chips)")


MODEL_HELP = {"n_vocab": "vocabulary size (set from the data)", "n_ctx": "context length", "dropout": "dropout rate",
              "n_embd": "width of the residual stream", "n_head": "attention heads", "n_layer": "transformer blocks"}


def parse_config(argv=None):
    """--config (a preset name or a JSON file) sets gpt2.HParams and TrainConfig fields; flags override.

    Every field of both dataclasses is a flag of the same name, so `--n_layer 6 --steps 2000`
    works, and --help lists them. A JSON config may name a "preset" and then change some of
    its fields: {"preset": "124M", "n_ctx": 512, "batch_size": 32}. A mistake: ValueError.
    """
    parser = argparse.ArgumentParser(description="Train GPT-2 (offline quick start: no arguments).")
    parser.add_argument("--config", default="mini",
                        help=f"a model preset ({', '.join(gpt2.PRESETS)}), or a JSON file of fields (flags below)")
    for field in dataclasses.fields(gpt2.HParams):
        parser.add_argument(f"--{field.name}", type=field.type, help=f"model: {MODEL_HELP[field.name]}")
    for field in dataclasses.fields(TrainConfig):  # a bool is a switch: --recompute, or --no-recompute
        action = argparse.BooleanOptionalAction if field.type is bool else "store"
        parser.add_argument(f"--{field.name}", type=None if field.type is bool else field.type, action=action,
                            help=f"{field.metadata['help']} (default: {field.default!r})")
    args = vars(parser.parse_args(argv))
    name, values = args.pop("config"), {}
    if name in gpt2.PRESETS:
        values = dataclasses.asdict(gpt2.PRESETS[name])
    elif os.path.isfile(name):
        try:
            with open(name) as f:
                values = json.load(f)
            preset = values.pop("preset", None)
            values = {**dataclasses.asdict(gpt2.PRESETS[preset]), **values} if preset else values
        except (ValueError, KeyError, AttributeError) as e:  # bad JSON, an unknown preset, not an object
            raise ValueError(f"--config {name}: not a JSON object of fields ({type(e).__name__}: {e})") from None
    else:
        raise ValueError(f"--config {name}: neither a preset ({', '.join(gpt2.PRESETS)}) nor a JSON file")
    values.update({k: v for k, v in args.items() if v is not None})
    fields = {f.name: cls for cls in (gpt2.HParams, TrainConfig) for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)}")
    for name, value in values.items():  # a JSON file's values, of the types its flags would give
        kind = next(f.type for f in dataclasses.fields(fields[name]) if f.name == name)
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, (int, float) if kind is float else kind):
            raise ValueError(f"--config {name} {value!r}: must be {kind.__name__}")
    return [cls(**{k: v for k, v in values.items() if fields[k] is cls}) for cls in (gpt2.HParams, TrainConfig)]


def check_config(hparams, config):
    """Every setting a user can get wrong, checked before any work starts: a ValueError, one line."""
    values = {**dataclasses.asdict(hparams), **dataclasses.asdict(config)}
    at_least_one = ["n_vocab", "n_ctx", "n_embd", "n_head", "n_layer", "steps", "batch_size", "eval_interval",
                    "eval_steps", "save_interval", "log_interval", "steps_per_loop", "grad_accum", "join_timeout"]
    at_least_zero = ["learning_rate", "warmup_steps", "weight_decay", "grad_clip", "sample_length", "replicas"]
    for name in at_least_one + at_least_zero:  # NaN and infinity fail too
        if not (1 if name in at_least_one else 0) <= values[name] < math.inf:
            raise ValueError(f"--{name} {values[name]}: must be finite and at least {1 if name in at_least_one else 0}")
    rules = [("dropout", 0 <= hparams.dropout < 1, "in [0, 1)"),
             ("min_lr_ratio", 0 <= config.min_lr_ratio <= 1, "in [0, 1]"),
             ("n_ctx", hparams.n_ctx >= 2, "at least 2: a token and the next"), ("out", config.out != "", "a folder"),
             ("seed", 0 <= config.seed < 2 ** 31, "in [0, 2^31): a 32-bit stateless seed"),
             ("optimizer", config.optimizer in ("adafactor", "adam"), "adafactor or adam"),
             ("precision", config.precision in ("float32", "bfloat16"), "float32 or bfloat16")]
    for name, ok, rule in rules:
        if not ok:
            raise ValueError(f"--{name} {values[name]!r}: must be {rule}")
    rows_per_replica(config, config.replicas or cluster()[0])  # a replica at least per worker
    if config.tpu:
        check_tpu_build()


def rows_per_replica(config, replicas):
    """Each replica's share of the global batch, which must split into replicas x grad_accum equal micro-batches."""
    if config.batch_size % (replicas * config.grad_accum):
        raise ValueError(f"--batch_size {config.batch_size} does not split into {replicas} replica(s) x "
                         f"--grad_accum {config.grad_accum} equal micro-batches")
    return config.batch_size // replicas


def learning_rate_schedule(config):
    """step -> learning rate: 1) linear warmup to the peak, 2) cosine decay to min_lr_ratio * peak
    at the last step, 3) that floor afterwards. Works on Python numbers and on tensors."""
    # Adafactor's default peak: the paper caps its relative step at 0.01, tuned for large models.
    # Small models start with small weights (RMS 0.02), and a step relative to them is small too:
    # they learn faster with 0.03 (tests/bench.py quality compares the rates; README, Benchmarks).
    peak = config.learning_rate or (0.03 if config.optimizer == "adafactor" else 1e-3)
    warmup, total, floor = config.warmup_steps, config.steps, config.min_lr_ratio * peak

    def schedule(step):  # step counts from 1, as the optimizers do
        step = tf.cast(step, tf.float32)
        warm = peak * step / max(warmup, 1)  # 1) rises linearly to the peak at step `warmup`
        # 2) progress goes 0 -> 1 from warmup to the last step; cos(pi * progress) goes 1 -> -1
        progress = tf.clip_by_value((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
        cosine = floor + 0.5 * (peak - floor) * (1 + tf.cos(math.pi * progress))
        return tf.where(step < warmup, warm, cosine)  # 3) clip_by_value keeps the floor after `total`
    return schedule


# ---- the devices ------------------------------------------------------------------------------

def make_strategy(tpu, join_timeout=300):
    """TPUStrategy for a TPU, MultiWorkerMirroredStrategy for several machines (TF_CONFIG),
    MirroredStrategy for several GPUs, else the default (one device).

    A strategy decides where variables live and where `strategy.run` executes a function: once
    per replica (a TPU core or chip, a GPU, a worker's CPU), each on its own rows of the batch.
    The training code below is the same for all four; only this choice differs.
    """
    if tpu:
        return tf.distribute.TPUStrategy(connect_tpu())
    if cluster()[0] > 1:  # every worker runs this same program
        return join_workers(join_timeout)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# ---- the compiled steps ------------------------------------------------------------------------

class Trainer:
    """Model, optimizer and the compiled training and evaluation loops, under one strategy.

    The call chain of one training call, outermost first:
        train_loop(iterator, steps)   a tf.function: `steps` times, read a global batch on the
                                      host, cut it into one block of rows per replica, run the step
        strategy.run(replica_step)    once per replica, in parallel, each on its own rows
        replica_step(batch)           gradients of its rows, all-reduce, clip, optimizer update
        gradients(batch, seed)        forward and backward pass of one replica
    A retrace (a new compilation) happens only if a shape changes: batch size, n_ctx, or the
    number of replicas. `steps` is a tensor, so a shorter last loop does not retrace.

    How it is compiled: with one device (a CPU, one GPU) the whole replica step is one XLA
    program. Under TPUStrategy the step functions are plain Python: TPUStrategy compiles all of
    strategy.run with XLA itself, and an XLA function nested inside is off its tested paths.
    Under MirroredStrategy (several GPUs) the same plain functions run as a graph: so the TPU's
    path is also the one the tests run on two logical CPUs. To step through any of it in a
    debugger, call tf.config.run_functions_eagerly(True) first: every tf.function then runs as
    plain Python (slowly), and tf.config.run_functions_eagerly(False) undoes it.
    """

    def __init__(self, hparams, config, strategy):
        self.hparams, self.config, self.strategy = hparams, config, strategy
        self.per_replica = rows_per_replica(config, strategy.num_replicas_in_sync)
        self.micro_batch = self.per_replica // config.grad_accum  # rows in one forward and backward pass
        # bfloat16 has float32's range (8 exponent bits) with 7 mantissa bits: no loss
        # scaling needed, unlike float16. Weights and optimizer state stay float32.
        dtype = tf.bfloat16 if config.precision == "bfloat16" else tf.float32
        with strategy.scope():  # variables made here are mirrored on every replica
            self.model = gpt2.GPT2(hparams, seed=config.seed, compute_dtype=dtype, recompute=config.recompute)
            self.schedule = learning_rate_schedule(config)
            optimizer = Adafactor if config.optimizer == "adafactor" else AdamW
            self.optimizer = optimizer(self.schedule, weight_decay=config.weight_decay)
            self.optimizer.build(self.model.trainable_variables)
            # Sums kept on each device across the steps of one call (ON_READ: every replica
            # adds to its own copy; reading from the host averages the copies). So a call of
            # many steps sends nothing to the host until it ends.
            on_device = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                             aggregation=tf.VariableAggregation.MEAN)
            self.loss_sum = tf.Variable(0.0, name="loss_sum", **on_device)
            self.grad_norm = tf.Variable(0.0, name="grad_norm", **on_device)
        if strategy.num_replicas_in_sync == 1 and not isinstance(strategy, tf.distribute.TPUStrategy):  # all in XLA
            self.replica_step = tf.function(self.replica_step, jit_compile=True)
            self.replica_eval = tf.function(self.replica_eval, jit_compile=True)
        self.train_loop = tf.function(self.train_loop)  # graphs, not XLA: they read the tf.data iterator
        self.eval_loop = tf.function(self.eval_loop)

    def split(self, batch):
        """The global batch (B, T + 1), cut on the host into one block of B / replicas rows per
        replica: each device receives only its own rows. With several workers each reads the whole
        stream and keeps its replicas' rows, so one iterator state (the chief's checkpoint) restores
        them all. A 64-host pod would need one pipeline per host instead (distribute_datasets_from_function,
        InputContext) and a data position computed from the step: planned in README, not built."""
        def rows(context):  # called once per replica, with its id as a Python int
            i = context.replica_id_in_sync_group
            return batch[i * self.per_replica:(i + 1) * self.per_replica]
        return self.strategy.experimental_distribute_values_from_function(rows)

    def gradients(self, batch, seed):
        x, y = batch[:, :-1], batch[:, 1:]  # inputs and next-token targets, (b, T) each
        with tf.GradientTape() as tape:
            loss = gpt2.cross_entropy(self.model(x, training=True, seed=seed), y)
            # Each replica averages over its own rows; summing the replicas' gradients of
            # loss / replicas then gives the gradient of the mean over the global batch.
            scaled = loss / self.strategy.num_replicas_in_sync
        grads = tape.gradient(scaled, self.model.trainable_variables)
        # The embeddings' gradients arrive as IndexedSlices (rows touched by tf.gather); dense
        # tensors are what the all-reduce, the clipping and XLA handle best.
        return loss, [tf.convert_to_tensor(g) for g in grads]

    def accumulated_gradients(self, batch, seed):
        """Mean loss and gradients over a replica's rows, as grad_accum micro-batches run one
        after another: the mean of the micro-batches' gradients is the gradient of the mean."""
        n = self.config.grad_accum
        if n == 1:
            return self.gradients(batch, seed)
        micro = tf.reshape(batch, [n, self.micro_batch, batch.shape[1]])  # (n, b / n, T + 1)
        loss = tf.constant(0.0)
        grads = [tf.zeros(v.shape) for v in self.model.trainable_variables]  # float32, one weights' worth
        for i in tf.range(n):  # a loop, not n copies: one micro-batch's activations alive at a time
            micro_loss, micro_grads = self.gradients(micro[i], tf.random.experimental.stateless_fold_in(seed, i))
            loss += micro_loss / n
            grads = [g + m / n for g, m in zip(grads, micro_grads)]
        return loss, grads

    def replica_step(self, batch):
        """One optimizer step, seen from one replica, on its rows (b, T + 1)."""
        context = tf.distribute.get_replica_context()
        step = self.optimizer.iterations
        # Dropout's seed depends only on (seed, step, replica): a resumed run repeats it exactly.
        replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
        seed = tf.stack([tf.cast(self.config.seed, tf.int64), step * 1000 + replica])
        loss, grads = self.accumulated_gradients(batch, tf.cast(seed, tf.int32))
        # Sum over replicas: afterwards every replica holds the same gradients, applies the
        # same update, and the copies of the weights stay identical without being sent around.
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        norm = tf.linalg.global_norm(grads)  # sqrt of the sum of squares over all gradients
        if self.config.grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip, use_norm=norm)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        # A token id >= n_vocab (a corrupt shard) is no error on every device: the loss marks it, far below 0
        self.loss_sum.assign_add(tf.where(tf.reduce_max(batch) < self.hparams.n_vocab, loss, -1e9))
        self.grad_norm.assign(norm)

    def train_loop(self, iterator, steps):
        """`steps` optimizer steps in one call: mean loss and last gradient norm."""
        self.loss_sum.assign(0.0)
        for _ in tf.range(steps):
            self.strategy.run(self.replica_step, args=(self.split(next(iterator)),))
        return self.loss_sum.read_value() / tf.cast(steps, tf.float32), self.grad_norm.read_value()

    def replica_eval(self, batch):
        """Adds the held-out loss of one replica's rows to loss_sum: no dropout, no gradients; in
        micro-batches, so evaluating needs no more memory than training."""
        n = self.config.grad_accum
        micro = tf.reshape(batch, [n, self.micro_batch, batch.shape[1]])  # (n, b / n, T + 1)
        for i in tf.range(n):
            rows = micro[i]  # (b / n, T + 1)
            loss = gpt2.cross_entropy(self.model(rows[:, :-1]), rows[:, 1:]) / n
            self.loss_sum.assign_add(tf.where(tf.reduce_max(rows) < self.hparams.n_vocab, loss, -1e9))  # as in training

    def eval_loop(self, iterator, steps):
        """Mean loss over `steps` batches of the iterator."""
        self.loss_sum.assign(0.0)
        for _ in tf.range(steps):
            self.strategy.run(self.replica_eval, args=(self.split(next(iterator)),))
        return self.loss_sum.read_value() / tf.cast(steps, tf.float32)


# ---- the run -----------------------------------------------------------------------------------

def train(hparams, config, strategy=None, log=print):
    """Trains (or resumes) a run in config.out, which it holds alone while it runs (with several
    workers: its chief holds it). Returns the Trainer."""
    if config.init_from:  # fine-tuning: the model's own shape
        hparams = dataclasses.replace(gpt2.load_hparams(config.init_from), dropout=hparams.dropout)
    lock = claim_out(hparams, config, log, chief=cluster()[1])
    try:
        return run(hparams, config, strategy, log)
    finally:
        Interrupts.waiting = False  # also when the run failed before its loop
        if lock:
            tf.io.gfile.remove(lock)


def run(hparams, config, strategy, log):
    """The run in OUT, from its start or where it stopped:
    1. data: prepare the corpus into shards once, and read the vocabulary size from it;
    2. model and optimizer under the strategy, restored from the newest checkpoint if any;
    3. the loop: steps_per_loop steps per call, then log, evaluate and save at their intervals;
    4. export the model in OpenAI's layout, with its vocabulary, for sample.py.
    With several workers (TF_CONFIG) every worker makes every call; only the chief writes OUT's files.
    """
    data_dir, meta = prepare_data(config)  # first: tokenizing forks worker processes, which a TPU runtime must not see
    Interrupts.waiting = True  # from here on, Ctrl-C and SIGTERM wait for the loop, which saves first
    strategy = strategy or make_strategy(config.tpu, config.join_timeout)
    chief = cluster()[1]
    if config.init_from and hparams.n_vocab != meta["n_vocab"]:
        raise ValueError(f"--init_from {config.init_from} has a vocabulary of {hparams.n_vocab}, but {data_dir} "
                         f"was tokenized with {meta['n_vocab']} ids: prepare the data with its vocabulary")
    hparams = dataclasses.replace(hparams, n_vocab=meta["n_vocab"])  # the vocabulary decides V
    trainer = Trainer(hparams, config, strategy)
    model, optimizer = trainer.model, trainer.optimizer
    if config.init_from:  # fine-tuning: copy the weights in (a resumed run then overwrites them)
        for v, w in zip(model.variables, gpt2.load(config.init_from).variables):
            v.assign(w)
    train_iterator = iter(data.dataset(data_dir, "train", config.batch_size, hparams.n_ctx, seed=config.seed))
    val_split = "val" if meta["val_tokens"] > 0 else "train"  # --val_fraction 0: evaluate on train
    val_data = data.dataset(data_dir, val_split, config.batch_size, hparams.n_ctx, seed=config.seed + 1,
                            reshuffle=False)  # each evaluation: a new iterator, the same batches
    # Everything a resumed run needs: weights, optimizer state (its step count included) and
    # the data position. Dropout's randomness is a function of the step, so no RNG state.
    checkpoints = Checkpoints(tf.train.Checkpoint(model=model, optimizer=optimizer, data=train_iterator),
                              config.out, strategy, log)  # restores the newest, if there is one
    if chief:
        start_out(hparams, config, data_dir, resumed=checkpoints.resumed)

    progress = Progress(trainer, config, chief, log)  # the log lines, metrics.jsonl and TensorBoard's logs
    step = checkpoints.step()  # 0, or where the restored run stopped
    try:
        while step < config.steps:
            if Interrupts.asked:  # a Ctrl-C or SIGTERM since the run started, or during the last call
                raise KeyboardInterrupt
            n = min(config.steps_per_loop, config.steps - step)
            loss, norm = trainer.train_loop(train_iterator, tf.constant(n))  # n steps, one call
            loss = float(loss)  # waits for the device: the only sync point per loop
            check_loss(loss, f"steps {step + 1}..{step + n}", checkpoints.latest())
            step += n
            progress.trained(step, n, loss, float(norm))  # every --log_interval: loss, tokens/s, MFU, time left
            if due(config.eval_interval, step, n, config.steps):  # a fresh iterator each time: the same batches
                val_loss = float(trainer.eval_loop(iter(val_data), tf.constant(config.eval_steps)))
                check_loss(val_loss, f"the {val_split} split at step {step}", checkpoints.latest())
                progress.evaluated(step, val_loss, val_split)
            progress.write()  # this call's line of metrics.jsonl, if it logged or evaluated
            if due(config.save_interval, step, n, config.steps):
                checkpoints.save()
            checkpoints.save_if_preempted()  # with several workers: a SIGTERM to any of them ends the run here
    except KeyboardInterrupt:  # Ctrl-C arrives between compiled calls, so the state is whole
        checkpoints.save()
        log(f"\ninterrupted: saved step {checkpoints.step()} to {checkpoints.latest()}; run the same command "
            "again to resume")
        raise
    finally:
        Interrupts.waiting = False
        progress.close()
    if chief:
        gpt2.save(model, config.out)  # OpenAI's layout, for sample.py --model OUT and other tools
    return trainer


def due(interval, step, n, steps):
    """Whether a call of n steps that ended at `step` passed a multiple of `interval`, or ended the run."""
    return step % interval < n or step == steps


def check_loss(loss, where, checkpoint):
    """Stops a run at a loss it cannot go on from, in one line with the likely cause: below 0, the
    mark of token ids >= n_vocab (see Trainer.replica_step); NaN or infinity, a diverged model."""
    if loss < 0:
        raise ValueError(f"{where} read token ids >= n_vocab: shards corrupt or of another vocabulary (rerun data.py)")
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss is {loss} in {where}; stopping. The last good checkpoint is {checkpoint} "
                                 "(try a lower --learning_rate)")


def closing_sample(model, out, length, seed=0):
    """A first look at what the model learned: `length` tokens from <|endoftext|>, decoded with
    the vocabulary in `out`. Works wherever the model lives (sample.generate places itself)."""
    encoder = data.Encoder.load(out)
    tokens = sample.generate(model, [[encoder.eot]], length, top_k=40, seed=seed, eot=encoder.eot)
    return encoder.decode(tokens[0].tolist())


def main(argv=None):
    """The command line: parse and check every flag, then train (or only print the memory table), sample."""
    try:
        hparams, config = parse_config(argv)
        check_config(hparams, config)
        if config.dry_run:  # planned for --replicas, else for the replicas this machine would use
            replicas = config.replicas or make_strategy(config.tpu, config.join_timeout).num_replicas_in_sync
            print("\n".join(memory_table(hparams, config, replicas)))
            return
        trainer = train(hparams, config)
        print(f"saved the model to {config.out}")
        if config.sample_length and cluster()[1]:  # with several workers, the chief samples
            print("-" * 80 + "\n" + closing_sample(trainer.model, config.out, config.sample_length, config.seed) +
                  "\n" + "-" * 80)
    # A user's mistake, a diverged run, or a storage fault (a full disk, a read-only OUT, gs:// without
    # access): one line. What was saved stays saved, and the same command resumes.
    except (ValueError, FloatingPointError, OSError, tf.errors.OpError) as e:
        sys.exit(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (below): the loop has saved first
        sys.exit(130)


# ==== operations, part 2 of 2 ===================================================================
# What a run needs besides learning, each a short function to read when it matters: OUT's lock
# and the rerun check, checkpoints that survive faults, the devices (a TPU, several machines from
# TF_CONFIG, the watchdog, preemption), Ctrl-C and SIGTERM, and the diagnostics (MFU's peak, the
# memory plan of --dry_run).

# ---- OUT: its data, one run at a time, and a rerun that resumes the same run ---------------------

def prepare_data(config):
    """A prepared data directory and its meta (data.json): --data itself if data.py made it, else
    OUT/data, tokenized once: a rerun of the same command (a resumed run) finds OUT/data ready."""
    meta = data.read_meta(config.data)
    if meta:
        return config.data, meta
    path, vocab = os.path.join(config.out, "data"), config.vocab or config.init_from or "4096"
    # Tokenizing forks workers, and this process's TensorFlow holds the TPU (libtpu admits one); several
    # machines would each tokenize the corpus into one shared OUT/data
    if config.tpu or cluster()[0] > 1:
        raise ValueError(f"{'--tpu trains' if config.tpu else 'several workers train'} on prepared data only, and "
                         f"{config.data} is not a directory data.py made: python data.py --input {config.data} "
                         f"--output DIR --vocab {vocab}, then --data DIR")
    meta = data.read_meta(path)
    # prepared again if made from another source or vocabulary, or in the old layout (no data_seed)
    if not (meta and meta["source"] == config.data and meta.get("vocab") == vocab and "data_seed" in meta):
        print(f"preparing {config.data!r} in {path} (vocabulary: {vocab})")
        meta = data.prepare(config.data, path, vocab)
    return path, meta


# The settings that make a run what it is: a rerun in its OUT must keep them (--steps, the
# intervals, --recompute, --grad_accum, the learning rate and the rest may change).
DEFINING = ["data", "vocab", "init_from", "n_ctx", "n_embd", "n_head", "n_layer", "dropout", "batch_size",
            "optimizer", "seed", "precision"]


def claim_out(hparams, config, log, chief=True):
    """Before anything in OUT is touched: takes OUT/train.lock for this process (its PID and host),
    so that a second train.py on one OUT refuses to overwrite it, and checks a rerun against the
    run it would resume (OUT's config.json). Returns the lock's path, removed when the run ends
    (None on a worker that is not the chief: it checks, but takes no lock)."""
    lock = os.path.join(config.out, "train.lock")
    if chief and tf.io.gfile.exists(lock):
        with tf.io.gfile.GFile(lock) as f:
            pid, host = f.read().split()
        if host != socket.gethostname() or (int(pid) != os.getpid() and alive(int(pid))):
            raise ValueError(f"{config.out} is in use by train.py, process {pid} on {host}: wait for it, stop it, or "
                             f"use another --out (if that process is gone, delete {lock})")
        log(f"note: process {pid}, which held {lock}, is gone: taking it over")
    record = os.path.join(config.out, "config.json")
    if tf.io.gfile.exists(record) and tf.io.gfile.glob(os.path.join(config.out, "checkpoints", "ckpt-*.index")):
        with tf.io.gfile.GFile(record) as f:
            run = json.load(f)
        given = {**dataclasses.asdict(hparams), **dataclasses.asdict(config)}
        for name in DEFINING:
            if name in run and run[name] != given[name]:
                raise ValueError(f"--{name} {given[name]!r}, but the run in {config.out} has {run[name]!r}: give its "
                                 "value to resume that run, or another --out to start a new one")
    if chief:
        tf.io.gfile.makedirs(config.out)
        with tf.io.gfile.GFile(lock, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}")
        return lock


def alive(pid):
    """Whether process pid runs (a PermissionError, for another user's process, is one line in main)."""
    try:
        os.kill(pid, 0)  # signal 0 sends nothing: it only asks
    except ProcessLookupError:
        return False
    return True


def start_out(hparams, config, data_dir, resumed):
    """OUT at the start of a run: hparams.json and the vocabulary (so OUT is a model for sample.py
    while it trains), no `checkpoint` marker of an earlier run's export (stale from here on: without
    it gpt2.load(OUT) reads checkpoints/ until this run exports), and a new run's config.json (a
    resumed run keeps the record it is checked against)."""
    gpt2.save_hparams(hparams, config.out)
    for name in ("encoder.json", "vocab.bpe"):
        tf.io.gfile.copy(os.path.join(data_dir, name), os.path.join(config.out, name), overwrite=True)
    gpt2.remove_export_marker(config.out)
    if not resumed:
        with tf.io.gfile.GFile(os.path.join(config.out, "config.json"), "w") as f:
            json.dump({**dataclasses.asdict(hparams), **dataclasses.asdict(config)}, f, indent=1)


# ---- checkpoints that survive faults ------------------------------------------------------------

class Checkpoints:
    """OUT/checkpoints/ckpt-STEP, of model, optimizer and data position: the newest restored when a
    run starts, one saved at each --save_interval and when the run is interrupted.

    The newest is found by its files, not by the state file (checkpoints/checkpoint), which a fault
    can leave unreadable or naming one cut off: never a silent restart from step 0. Under
    MultiWorkerMirroredStrategy every worker saves (TensorFlow requires it), the others into a folder
    of their own, removed after each save; a SIGTERM to any worker (a preemption) makes every worker
    save at the same step and end (exit 42)."""

    def __init__(self, checkpoint, out, strategy, log):
        self.checkpoint, self.log, self.directory = checkpoint, log, os.path.join(out, "checkpoints")
        workers, self.chief, address = cluster()
        worker_copy = os.path.join(self.directory, "temp-" + address.replace(":", "-"))
        self.writes = self.directory if self.chief else worker_copy
        try:
            self.manager = tf.train.CheckpointManager(checkpoint, self.writes, max_to_keep=3)
        except UnicodeDecodeError:  # a state file of binary garbage (text garbage TensorFlow ignores): rebuilt
            tf.io.gfile.remove(os.path.join(self.directory, "checkpoint"))
            self.manager = tf.train.CheckpointManager(checkpoint, self.writes, max_to_keep=3)
        self.resumed = self.restore_newest()
        self.preemption = None
        if workers > 1:  # TensorFlow's handler, given this manager: it saves, then calls exit_fn
            self.preemption = tf.distribute.experimental.PreemptionCheckpointHandler(
                strategy.cluster_resolver, self.manager,
                termination_config=tf.distribute.experimental.TerminationConfig(exit_fn=self.preempted))

    def restore_newest(self):
        """Restores the newest checkpoint in OUT, if any: whether there was one."""
        found = [name[:-len(".index")] for name in tf.io.gfile.glob(os.path.join(self.directory, "ckpt-*.index"))]
        found.sort(key=lambda prefix: int(prefix.rsplit("-", 1)[1]))  # ckpt-N: N is the step
        if not found:
            return False
        try:
            gpt2.restore(self.checkpoint, found[-1])
        except ValueError as e:  # cut off: the one before it may be whole
            before = f"; {found[-2]}, the one before, may be whole: delete {found[-1]}.* to use it" if found[1:] else ""
            raise ValueError(f"{e}{before}") from None
        self.log(f"resumed from {found[-1]} at step {self.step()}")
        return True

    def step(self):
        return int(self.checkpoint.optimizer.iterations.numpy())

    def latest(self):
        return self.manager.latest_checkpoint

    def save(self):
        self.manager.save(checkpoint_number=self.step())
        self.remove_worker_copy()

    def save_if_preempted(self):
        if self.preemption:
            self.preemption.save_checkpoint_if_preempted(checkpoint_number=self.step())

    def preempted(self):
        self.remove_worker_copy()
        self.log(f"preempted: saved step {self.step()}; run the same command on every worker to resume")
        sys.exit(42)  # TensorFlow's code for "restart me"

    def remove_worker_copy(self):
        if not self.chief:  # a worker's copy served only TensorFlow's protocol: the chief's is the checkpoint
            tf.io.gfile.rmtree(self.writes)


# ---- the devices: a TPU, several machines -----------------------------------------------------

def connect_tpu():
    """Starts this TPU VM's TPU system (once per process) and returns its cluster resolver.
    A failure becomes one line, with the likely causes."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        devices = ", ".join(sorted({d.device_type for d in tf.config.list_logical_devices()}))
        raise ValueError(f"--tpu: TensorFlow found no TPU (it sees: {devices}; {type(e).__name__}). "
                         "Is this a TPU runtime, freshly started, with nothing else using the TPU?") from None
    return resolver


def check_tpu_build(installed=None, python=sys.version_info[:2]):
    """Raises a one-line ValueError if this Python or this TensorFlow cannot drive a TPU.
    installed: the names of the TensorFlow distributions installed (default: read from pip's records)."""
    if python >= (3, 13):  # the newest TPU build seen on a v5e (requirements-tpu.txt) has wheels up to 3.12
        raise ValueError(f"--tpu: tensorflow-tpu 2.19.1 has no wheel for Python {python[0]}.{python[1]}: on Colab, "
                         "'Change runtime version' (command palette, Ctrl+Shift+P) to 26.07, each session; else 3.12")
    if installed is None:
        installed = {(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()}
    installed = set(installed) & {"tensorflow", "tensorflow-cpu", "tensorflow-tpu"}
    if "tensorflow-tpu" not in installed:
        raise ValueError("--tpu: TensorFlow's TPU build (tensorflow-tpu) is not installed: "
                         "pip install -r requirements-tpu.txt")
    if len(installed) > 1:
        names = " ".join(sorted(installed))
        raise ValueError(f"--tpu: {names} are installed together (the CPU build over the TPU build?): "
                         f"pip uninstall -y {names}, then pip install -r requirements-tpu.txt")


def cluster(environ=os.environ):
    """TF_CONFIG's workers: (how many, whether this one is the chief, its address), (1, True, '')
    without TF_CONFIG. The chief (task "chief", else worker 0) writes OUT's files. A mistake: one line."""
    if "TF_CONFIG" not in environ:
        return 1, True, ""
    try:
        spec = json.loads(environ["TF_CONFIG"])
        jobs, task = spec["cluster"], spec["task"]
        address, chief = jobs[task["type"]][task["index"]], task["type"] == "chief" or "chief" not in jobs
        count = sum(len(jobs.get(job, [])) for job in ("chief", "worker"))
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"TF_CONFIG is not {{'cluster': {{'worker': ['host:port', ...]}}, 'task': {{'type': 'worker', "
                         f"'index': i}}}} ({type(e).__name__}: {e})") from None
    if count < 2:
        raise ValueError("TF_CONFIG names one worker: unset it to train on this machine alone")
    return count, chief and task["index"] == 0, address


def join_workers(join_timeout):
    """MultiWorkerMirroredStrategy, returned when every worker in TF_CONFIG has joined; their all-reduce:
    NCCL on GPUs, else a ring over gRPC. A worker whose peers do not all start within join_timeout
    seconds ends in one line; so does a port in use."""
    gpus = tf.config.list_physical_devices("GPU")
    options = tf.distribute.experimental.CommunicationOptions(implementation="NCCL" if gpus else "RING")
    watchdog = end_unless_cancelled(join_timeout, f"not every worker in TF_CONFIG started within --join_timeout "
                                                  f"{join_timeout} s (each runs this same command)")
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except tf.errors.OpError as e:  # TensorFlow's line names no address
        raise ValueError(f"this worker could not serve TF_CONFIG's {cluster()[2]} (a port in use?): {e.message}")
    finally:
        os.kill(watchdog, signal.SIGKILL)


def end_unless_cancelled(seconds, message):
    """A process that ends this one with `message` after `seconds`, unless killed first (its PID is
    returned): while TensorFlow waits for other machines it holds Python's lock, so no thread or
    signal handler of this process could run."""
    parent, pid = os.getpid(), os.fork()
    if pid == 0:
        time.sleep(seconds)
        if os.getppid() == parent:  # the parent is still there
            print(f"error: {message}", file=sys.stderr, flush=True)
            os.kill(parent, signal.SIGKILL)
        os._exit(0)
    return pid


# ---- Ctrl-C and SIGTERM -----------------------------------------------------------------------

class Interrupts:
    """Ctrl-C and SIGTERM when train.py is the program (__main__). From the data's preparation to the
    loop's end they are noted, and acted on by the loop before its next call: it saves the step
    reached (the restored one, or 0, if the first call had not begun), then ends the run. A
    KeyboardInterrupt raised inside TensorFlow's C++ code can crash the process (seen: a segfault in
    1 of 16 SIGTERMs, in an eager op of a log step). Elsewhere (tokenizing, the export, the closing
    sample) they act at once: nothing is lost there that a rerun would not redo."""
    waiting = asked = False

    @classmethod
    def handle(cls, signum, frame):
        if not cls.waiting:
            raise KeyboardInterrupt
        cls.asked = True


# ---- diagnostics: how fast (MFU) and how much memory, not the training itself ---------------------

class Progress:
    """What a run reports, on the console (log) and, on the chief, in OUT/metrics.jsonl (a JSON line per
    report, appended: a resumed run continues the file) and TensorBoard's OUT/logs (tensorboard
    --logdir OUT/logs): at the start the model, the replicas and the peak that MFU divides by; the
    first call's time (compiling included) and memory; every --log_interval steps the mean training
    loss, the learning rate, tokens/s, MFU and the time left; each held-out loss."""

    def __init__(self, trainer, config, chief, log):
        self.trainer, self.config, self.log, model = trainer, config, log, trainer.model
        self.replicas, self.device = trainer.strategy.num_replicas_in_sync, model.wte.device
        self.tokens_per_step = config.batch_size * trainer.hparams.n_ctx
        self.peak, peak_text = peak_flops(tpu_type() if config.tpu else "", self.device, model.compute_dtype)
        self.planned = sum(memory_plan(trainer.hparams, config, self.replicas).values())
        devices = sorted({v.device for v in getattr(model.wte, "values", [model.wte])})  # one per replica
        log(f"{gpt2.num_params(trainer.hparams):,} parameters, {self.replicas} replica(s) on {', '.join(devices)}, "
            f"{self.tokens_per_step:,} tokens per step, peak {peak_text}")
        self.writer = tf.summary.create_file_writer(os.path.join(config.out, "logs")) if chief else \
            tf.summary.create_noop_writer()
        self.metrics = tf.io.gfile.GFile(os.path.join(config.out, "metrics.jsonl") if chief else os.devnull, "a")
        self.first_step = int(trainer.optimizer.iterations.numpy())
        self.start = self.window_start = time.time()
        self.window_steps, self.window_loss, self.record = 0, 0.0, {}

    def trained(self, step, n, loss, norm):
        """After a call of n steps, ending at `step`, of mean loss `loss` and last gradient norm `norm`."""
        if step - n == self.first_step:  # the first call compiles the loop (again in every new process)
            self.log(f"first call: {n} steps in {time.time() - self.start:.1f} s, compiling included"
                     f"{measured_memory(self.device, self.planned)}")
        self.window_steps, self.window_loss = self.window_steps + n, self.window_loss + loss * n
        if not due(self.config.log_interval, step, n, self.config.steps):
            return
        tokens_per_sec = self.window_steps * self.tokens_per_step / (time.time() - self.window_start)
        # MFU: the share of the devices' peak FLOP/s that the model's own arithmetic uses
        mfu = tokens_per_sec * gpt2.flops_per_token(self.trainer.hparams) / (self.peak * self.replicas)
        lr = float(self.trainer.schedule(step))
        self.record = {"step": step, "train_loss": self.window_loss / self.window_steps, "grad_norm": norm,
                       "learning_rate": lr, "tokens_per_sec": tokens_per_sec, "mfu": mfu}
        remaining = (self.config.steps - step) * (time.time() - self.start) / (step - self.first_step)
        self.log(f"step {step:6d} | loss {self.record['train_loss']:.4f} | lr {lr:.2e} | "
                 f"{tokens_per_sec:8.0f} tok/s | MFU {100 * mfu:4.1f}% | {remaining / 60:5.1f} min left")
        self.window_start, self.window_steps, self.window_loss = time.time(), 0, 0.0

    def evaluated(self, step, val_loss, split):
        self.record.update(step=step, val_loss=val_loss)
        self.log(f"step {step:6d} | val loss {val_loss:.4f} ({split} split)")

    def write(self):
        """The call's record, if it has one: a line of metrics.jsonl, and a scalar each for TensorBoard."""
        if self.record:
            self.metrics.write(json.dumps(self.record) + "\n")
            self.metrics.flush()
            with self.writer.as_default(step=self.record["step"]):
                for key in self.record.keys() - {"step"}:
                    tf.summary.scalar(key, self.record[key])
        self.record = {}

    def close(self):
        self.metrics.close()


def measure_peak_flops(device, dtype=tf.float32, n=2048, products=8, seconds=1.0):
    """The FLOP/s of one device on chains of large matrix products: the ceiling MFU is measured
    against where no spec sheet says what TensorFlow can reach (CPUs; GPUs too, for simplicity).
    A call runs `products` products of 2 n^3 FLOPs and sends one number back to the host."""
    with tf.device(device):  # where a replica runs, not wherever eager ops default to
        a = tf.cast(tf.random.normal([n, n]), dtype)

        @tf.function(jit_compile=True)
        def chain(x):
            for _ in range(products):
                x = tf.matmul(x, a) * 0.01  # scaled to stay finite
            return tf.reduce_sum(tf.cast(x, tf.float32))  # a scalar: the host waits, but copies nothing
        float(chain(a))  # compile (and warm up) before the clock starts
        runs, start = 0, time.time()
        while time.time() - start < seconds:
            float(chain(a))
            runs += 1
    return runs * products * 2 * n ** 3 / (time.time() - start)


# Published bfloat16 peaks per replica: a v2 or v3 replica is one core (half a chip); from v4
# on, one chip. Sources: cloud.google.com/tpu/docs/v2, /v3, /v4, /v5e, /v5p, /v6e (system architecture).
TPU_PEAK_FLOPS = {"v2": 22.5e12, "v3": 61.5e12, "v4": 275e12, "v5e": 197e12, "v5p": 459e12, "v6e": 918e12}


@functools.lru_cache  # measured once per process and device: a run in a notebook or a test reuses it
def peak_flops(chip, device, dtype):
    """One replica's peak FLOP/s, which MFU divides by, and a line on where it comes from. On a TPU
    (chip: its generation) MFU is defined against the published peak; the one measured here, with
    products sized for a TPU (8192^2, 20 a call: about 0.1 s on a v5e), is only printed beside it."""
    if chip not in TPU_PEAK_FLOPS:
        measured = measure_peak_flops(device, dtype)
        return measured, f"{measured / 1e9:,.0f} GFLOP/s per replica (measured)"
    measured = measure_peak_flops(device, dtype, n=8192, products=20)
    return TPU_PEAK_FLOPS[chip], (f"{TPU_PEAK_FLOPS[chip] / 1e12:,.0f} TFLOP/s per replica (published for TPU {chip}; "
                                  f"{measured / 1e12:,.0f} measured)")


def measured_memory(device, planned):
    """After a compiled step, one replica's peak memory beside the plan's total, for the log; '' where
    TensorFlow keeps no count (on a CPU it raises, or in newer versions counts 0)."""
    try:
        peak = tf.config.experimental.get_memory_info(device.split("device:")[-1])["peak"]  # 'TPU:0'
    except (ValueError, tf.errors.OpError):
        return ""
    return f"; memory: {peak / GIB:.2f} GiB at one replica's peak, {planned / GIB:.2f} planned" if peak else ""


# ---- will it fit? The memory plan (--dry_run) ------------------------------------------------

GIB = 2 ** 30
MARGIN = 0.10  # for temporaries beyond the terms below, and fragmentation: 10% of their sum


def variable_shapes(hparams):
    """The variables' shapes, as gpt2.GPT2 creates them (without building a 6 GB model): wte, wpe,
    ln_f g and b; then per block ln_1 and ln_2 (g, b), c_attn, attn c_proj, c_fc, mlp c_proj (w, b)."""
    V, T, C = hparams.n_vocab, hparams.n_ctx, hparams.n_embd
    block = [[C], [C], [C], [C], [C, 3 * C], [3 * C], [C, C], [C], [C, 4 * C], [4 * C], [4 * C, C], [C]]
    return [[V, C], [T, C], [C], [C]] + hparams.n_layer * block


def activation_bytes(hparams, rows, size, recompute):
    """What the backward pass keeps alive, in bytes, for `rows` sequences in a compute dtype of
    `size` bytes (4: float32, 2: bfloat16), derived from gpt2.Block's forward pass. Per block:
      in the compute dtype, T x C each: the block's input; ln_1's output (c_attn's input); q, k, v
        (3); the heads' merged output (c_proj's input); x after the attention residual (ln_2's
        input); ln_2's output (c_fc's input); c_fc's output (4, gelu's input); the tanh inside
        gelu (4, for its derivative); gelu's output (4, mlp c_proj's input): 20 T x C;
      in float32, per LayerNorm: x normalised (for g's gradient), and in bfloat16 also its float32
        copy of x (for the variance's gradient);
      nh x T x T attention probabilities in float32 (softmax's gradient), and in bfloat16 also their
        bfloat16 copy (the product with v); with dropout, a byte per mask entry (attention
        probabilities, and the two residual branches' T x C outputs).
    With recomputation a block keeps only its input, and one block at a time is run again in the
    backward pass, so one block's full set is alive on top."""
    T, C, nh, L = hparams.n_ctx, hparams.n_embd, hparams.n_head, hparams.n_layer
    layer_norm = 4 if size == 4 else 8
    masks = 1 if hparams.dropout > 0 else 0
    block = rows * (T * C * (20 * size + 2 * layer_norm + 2 * masks) + nh * T * T * (4 + (size % 4) + masks))
    final_norm = rows * T * C * (size + layer_norm)
    return (L * rows * T * C * size + block if recompute else L * block) + final_norm


def memory_plan(hparams, config, replicas=1):
    """Bytes one replica holds at the peak of a training step, term by term (a dict whose values
    add up to the total). Checked against XLA's own buffer statistics: tests/bench.py memory.

    Besides what lives through the whole step (weights, optimizer state, and with --grad_accum
    the running sum of the gradients), a step peaks at one of two moments, and the plan keeps
    the larger: the start of the backward pass, when every activation the backward pass needs
    and the logits' softmax and gradient are alive; or its end, when all the gradients are
    (the clipping needs their global norm before any update), with wte's gradient in three
    pieces (the output matmul's, the embedding lookup's, their sum) and the update's temporaries.
    """
    n, V, C, T = gpt2.num_params(hparams), hparams.n_vocab, hparams.n_embd, hparams.n_ctx
    shapes = variable_shapes(hparams)  # tests check them against gpt2.GPT2's variables
    size = 2 if config.precision == "bfloat16" else 4
    rows = rows_per_replica(config, replicas) // config.grad_accum  # one micro-batch: what is alive at once
    state = 4 * optimizer_state_floats(shapes, AdamW(0.0) if config.optimizer == "adam" else Adafactor())
    plan = {"weights (float32)": 4 * n, f"{config.optimizer} state": state,
            "weights cast to bfloat16 for the matmuls": 2 * n if size == 2 else 0,
            "gradient accumulation buffer (float32)": 4 * n if config.grad_accum > 1 else 0}
    activations = activation_bytes(hparams, rows, size, config.recompute)
    # logits (B, T, V) in the compute dtype (and a float32 copy in bfloat16), the softmax kept
    # for the gradient, and the gradient twice (the loss's, then scaled): 16 bytes per logit in float32
    logits = rows * T * V * (16 if size == 4 else 18)
    gradients = 4 * n + 2 * 4 * V * C
    if activations + logits >= gradients:
        plan[f"activations ({rows} rows{', recomputed' if config.recompute else ''})"] = activations
        plan["logits, their softmax and gradient"] = logits
    else:
        plan["gradients (float32), wte's in three pieces"] = gradients
    plan["margin for temporaries (10%)"] = MARGIN * sum(plan.values())
    return plan


def memory_table(hparams, config, replicas):
    """--dry_run's report, as lines: the plan of one replica's share of the batch, term by term."""
    plan = memory_plan(hparams, config, replicas)
    assumed = "--replicas" if config.replicas else "found here; --replicas N for another machine"
    lines = [f"parameters: {gpt2.num_params(hparams):,}   training FLOPs per token: {gpt2.flops_per_token(hparams):,}",
             f"one replica of {replicas} ({assumed}), {config.precision}, {rows_per_replica(config, replicas)} rows "
             f"in {config.grad_accum} micro-batch(es) of {hparams.n_ctx} tokens:"]
    plan["total"] = sum(plan.values())
    return lines + [f"  {name:<48} {value / GIB:8.2f} GiB" for name, value in plan.items()]


if __name__ == "__main__":
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGTERM, a cloud's preemption, handled as Ctrl-C: save, exit
        signal.signal(sig, Interrupts.handle)
    main()

