"""
GPT-2, the network, in plain TensorFlow 2: the file to read beside the papers.

- GPT-2 (Radford et al. 2019), section 2.3: the changes to GPT-1's transformer: LayerNorm moved
  to the input of each block, a final LayerNorm, residual projections initialised smaller.
- GPT-1 (Radford et al. 2018), section 3.1: a decoder-only transformer trained to predict the
  next token, with learned position embeddings.
- "Attention is all you need" (Vaswani et al. 2017), section 3.2: scaled dot-product and
  multi-head attention.

Variables carry the names of OpenAI's released checkpoints (`model/wte`, `model/h0/attn/c_attn/w`,
...), so loading the 124M..1558M models is a name-for-name copy, and `save` writes the same layout.

Shape letters: B batch, T time (sequence length), C channels (n_embd), nh heads (n_head),
hs head size (C / nh), V vocabulary (n_vocab), S key positions (T, or the length of the KV cache).

Left out: sparse attention, and any Keras layer: every weight and every
matrix product is written out here.
"""
import dataclasses
import glob
import importlib.metadata
import importlib.util
import json
import math
import os
import sys
import urllib.request


# Google's PCI vendor id and its TPU chips' device ids, as JAX and PyTorch/XLA read them
# (jax/_src/hardware_utils.py): a TPU shows up in /sys without any library or network.
TPU_PCI_IDS = {"0x0027": "v3", "0x005e": "v4", "0x0062": "v5p", "0x0063": "v5e", "0x006f": "v6e"}  # 0x0027: v2 too


def tpu_type(pci_root="/sys/bus/pci/devices", environ=os.environ):
    """This machine's TPU generation ('v5e', 'v3', ...), or '' if it has none, found without
    importing TensorFlow: from the PCI devices, else from TPU_ACCELERATOR_TYPE ('v5litepod-8')."""
    for device in sorted(glob.glob(os.path.join(pci_root, "*"))):
        try:
            with open(os.path.join(device, "vendor")) as f, open(os.path.join(device, "device")) as g:
                vendor, chip = f.read().strip(), g.read().strip()
        except OSError:
            continue
        if vendor == "0x1ae0" and chip in TPU_PCI_IDS:
            generation = TPU_PCI_IDS[chip]
            return "v2" if generation == "v3" and environ.get("TPU_ACCELERATOR_TYPE", "").startswith("v2") else generation
    named = environ.get("TPU_ACCELERATOR_TYPE", "").lower().split("-")[0]  # 'v5litepod-8' -> 'v5litepod'
    return {"v5litepod": "v5e"}.get(named, named)


def tpu_runtime_variables(generation, libtpu_path):
    """The environment TensorFlow needs, before it is imported, to reach a TPU of this generation.

    From TPU v5e on, TensorFlow reaches TPUs through the PJRT runtime, in a library (libtpu)
    that it loads as a "pluggable device" while it is imported; the values are those of the
    newest public example of TensorFlow on such a TPU (keras-io, keras_rs/distributed_embedding_tf.py,
    with the MLIR bridge it turns on). v2, v3 and v4 work with the runtime built into
    TensorFlow's TPU build, without them.
    """
    if not libtpu_path or generation not in ("v5e", "v5p", "v6e"):
        return {}
    return {"PJRT_DEVICE": "TPU", "NEXT_PLUGGABLE_DEVICE_USE_C_API": "true",
            "TF_PLUGGABLE_DEVICE_LIBRARY_PATH": libtpu_path,
            "TF_XLA_FLAGS": "--tf_mlir_enable_mlir_bridge=true --tf_mlir_enable_convert_control_to_data_outputs_pass=true "
                            "--tf_mlir_enable_merge_control_flow_pass=true"}


def libtpu_path():
    """Where the libtpu package's library is (what libtpu.get_library_path() returns), or ''."""
    spec = importlib.util.find_spec("libtpu")
    found = glob.glob(os.path.join(os.path.dirname(spec.origin), "libtpu*.so")) if spec and spec.origin else []
    return found[0] if found else ""


# Before TensorFlow is imported (here, and by train.py and sample.py, which import this module
# first): a user of a v5e TPU VM should not need to know these variables. Elsewhere: nothing.
for key, value in tpu_runtime_variables(tpu_type(), libtpu_path()).items():
    os.environ.setdefault(key, value)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet
import tensorflow as tf  # noqa: E402


@dataclasses.dataclass
class HParams:
    """The shape of a GPT-2. The first five names are those of OpenAI's hparams.json."""
    n_vocab: int = 50257  # V: token ids; GPT-2's 256 bytes + 50,000 merges + <|endoftext|>
    n_ctx: int = 1024  # the longest sequence: the number of learned position embeddings
    n_embd: int = 768  # C: width of the residual stream
    n_head: int = 12  # nh: attention heads, each of size hs = n_embd / n_head
    n_layer: int = 12  # transformer blocks
    dropout: float = 0.0  # on embeddings, attention weights and residual outputs, in training only.
    # OpenAI's released code has no dropout; 0.1 was GPT-1's. 0 suits short runs on small data.

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")


PRESETS = {
    # OpenAI's four released sizes. The parameter counts follow from num_params(), below.
    "124M": HParams(n_embd=768, n_head=12, n_layer=12),  # 124,439,808 (called 117M in 2019)
    "355M": HParams(n_embd=1024, n_head=16, n_layer=24),  # 354,823,168 (called 345M in 2019)
    "774M": HParams(n_embd=1280, n_head=20, n_layer=36),  # 774,030,080
    "1558M": HParams(n_embd=1600, n_head=25, n_layer=48),  # 1,557,611,200
    # Small models that train in minutes on a laptop CPU. n_vocab is replaced by the size of
    # the vocabulary they are trained with (4,096 for the offline quick start).
    "mini": HParams(n_vocab=4096, n_ctx=256, n_embd=256, n_head=4, n_layer=4),  # 4,273,664
    "tiny": HParams(n_vocab=4096, n_ctx=128, n_embd=128, n_head=4, n_layer=2),  # 937,472
}
PRESETS["117M"], PRESETS["345M"] = PRESETS["124M"], PRESETS["355M"]


def num_params(h):
    """Parameters of a GPT-2, counted by hand:
    embeddings: V*C (wte) + n_ctx*C (wpe)
    each block: 2 LayerNorms 4C; attention C*3C + 3C (c_attn) + C*C + C (c_proj);
                MLP C*4C + 4C (c_fc) + 4C*C + C (c_proj); in all 12C^2 + 13C
    final LayerNorm: 2C. The output layer reuses wte, so it adds nothing.
    """
    C = h.n_embd
    return h.n_vocab * C + h.n_ctx * C + h.n_layer * (12 * C * C + 13 * C) + 2 * C


def flops_per_token(h):
    """Training FLOPs per token: 6N + 12 * n_layer * n_ctx * C (PaLM paper, appendix B).

    A multiply-add is 2 FLOPs, and the backward pass costs twice the forward, hence 6 per
    parameter per token. N leaves out wpe (a lookup, no multiplies) but keeps wte, which is
    also the output matmul. The second term is attention's QK^T and AV, counted over the whole
    context as if unmasked: the convention of MFU figures (nanoGPT, PaLM), so they compare.
    """
    N = num_params(h) - h.n_ctx * h.n_embd
    return 6 * N + 12 * h.n_layer * h.n_ctx * h.n_embd


# ---- the pieces of math ------------------------------------------------------------------

def gelu(x):
    """GPT-2's GELU, the tanh approximation (Hendrycks and Gimpel 2016)."""
    return 0.5 * x * (1 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, g, b, eps=1e-5):
    """Normalises the last axis to mean 0, variance 1, then scales by g and shifts by b.
    The statistics are computed in float32 even when x is bfloat16: a sum over C values of
    bfloat16 (8 bits of mantissa) would lose most of its precision."""
    x32 = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
    x32 = (x32 - mean) * tf.math.rsqrt(variance + eps)
    return tf.cast(x32 * g + b, x.dtype)


def linear(x, w, b):
    """x @ w + b over the last axis: [..., nx] -> [..., nf]. OpenAI calls it conv1d."""
    nx, nf = w.shape
    x2, w = tf.reshape(x, [-1, nx]), tf.cast(w, x.dtype)  # (B*T, nx)
    if x2.shape[0] == 1 and nx % 8 == 0:  # one row: generating at batch 1
        y = split_matvec(x2, w, 8)
    else:
        y = tf.matmul(x2, w)  # (B*T, nx) x (nx, nf) -> (B*T, nf)
    return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [nf]], 0)) + tf.cast(b, x.dtype)


def split_matvec(x, w, parts):
    """x (1, nx) @ w (nx, nf) as the sum of `parts` products of nx / parts rows each ("split-K").

    Why: XLA's CPU backend runs a one-row product as one loop on one core, well below the
    memory bandwidth, while a batched product runs on every core. Cutting w (nx, nf) into
    (parts, nx / parts, nf) is a reshape, which moves no data; the partial products run side by
    side and are added. 124M model, batch 1, on 2 cores: XLA generation went from 29.5 to 20.6 ms
    per token. (In a plain graph it went from 34.5 to 41.4: sample.generate uses XLA.) Training
    never comes here: it has many rows."""
    nx, nf = w.shape
    xs = tf.reshape(x, [parts, 1, nx // parts])  # (parts, 1, nx/parts)
    partial = tf.matmul(xs, tf.reshape(w, [parts, nx // parts, nf]))  # (parts, 1, nf)
    return tf.cast(tf.reduce_sum(tf.cast(partial, tf.float32), axis=0), x.dtype)  # (1, nf), added in float32


def attention(q, k, v, mask, dropout=0.0, seed=None):
    """Scaled dot-product attention (Vaswani et al. section 3.2.1), one call for all heads.

    q (B, nh, T, hs), k and v (B, nh, S, hs), mask (T, S) bool: True where query t may see key s.
    """
    hs = q.shape[-1]
    scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(hs)  # (B, nh, T, hs) x (B, nh, hs, S) -> (B, nh, T, S)
    scores = tf.where(mask, tf.cast(scores, tf.float32), -1e10)  # softmax in float32, hidden keys -> 0
    weights = tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype)
    if dropout > 0 and seed is not None:
        weights = tf.nn.experimental.stateless_dropout(weights, dropout, seed)
    return tf.matmul(weights, v)  # (B, nh, T, S) x (B, nh, S, hs) -> (B, nh, T, hs)


def split_heads(x, n_head):
    """(B, T, C) -> (B, nh, T, hs)"""
    T, C = tf.shape(x)[1], x.shape[2]
    return tf.transpose(tf.reshape(x, [-1, T, n_head, C // n_head]), [0, 2, 1, 3])


def merge_heads(x):
    """(B, nh, T, hs) -> (B, T, C)"""
    nh, hs = x.shape[1], x.shape[3]
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [-1, tf.shape(x)[2], nh * hs])


def tied_logits(x, wte):
    """x (B, T, C) times the token embedding wte (V, C), transposed: (B, T, C) x (C, V) -> (B, T, V)."""
    wte = tf.cast(wte, x.dtype)
    if x.shape[0] == 1 and x.shape[1] == 1:  # one token: wte (V, C) times the column x (C, 1)
        # The same numbers, but XLA's CPU backend, given x (1, C) times wte transposed, copied
        # wte into the transposed layout inside the loop, every token: 8 ms of the 124M model's
        # 23.5 per token. As wte @ x it reads wte row by row, as stored: 20.3 ms per token.
        return tf.reshape(tf.matmul(wte, tf.reshape(x, [-1, 1])), [1, 1, -1])
    return tf.matmul(x, wte, transpose_b=True)


def cross_entropy(logits, targets):
    """Mean negative log-likelihood of targets (B, T) under logits (B, T, V), in float32."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32)))


# ---- the modules, named as in OpenAI's checkpoints ------------------------------------------

class Weights:
    """Creates float32 variables with OpenAI's names, initialised from one seed, repeatably."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def normal(self, name, shape, stddev):
        self.count += 1  # each variable gets its own stream of the seed, in creation order
        value = tf.random.stateless_normal(shape, seed=[self.seed, self.count], stddev=stddev)
        return tf.Variable(value, name=name)

    def constant(self, name, shape, value):
        return tf.Variable(tf.fill(shape, float(value)), name=name)


class LayerNorm(tf.Module):
    def __init__(self, prefix, C, weights):
        super().__init__()
        self.g = weights.constant(prefix + "/g", [C], 1.0)  # scale
        self.b = weights.constant(prefix + "/b", [C], 0.0)  # shift

    def __call__(self, x):
        return layer_norm(x, self.g, self.b)


class Conv1D(tf.Module):
    """OpenAI's name for a linear layer (w, b). Checkpoints store w as [1, nx, nf]; we keep [nx, nf]."""

    def __init__(self, prefix, nx, nf, weights, stddev=0.02):
        super().__init__()
        self.w = weights.normal(prefix + "/w", [nx, nf], stddev)
        self.b = weights.constant(prefix + "/b", [nf], 0.0)

    def __call__(self, x):
        return linear(x, self.w, self.b)


class Block(tf.Module):
    """One transformer block, pre-LayerNorm (GPT-2 section 2.3):
    x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))."""

    def __init__(self, h, i, weights):
        super().__init__()
        p, C = f"model/h{i}", h.n_embd
        self.hparams = h
        # GPT-2 section 2.3: "scale the weights of residual layers at initialization by a
        # factor of 1/sqrt(N) where N is the number of residual layers": two per block.
        residual_std = 0.02 / math.sqrt(2 * h.n_layer)
        self.ln_1 = LayerNorm(p + "/ln_1", C, weights)
        self.c_attn = Conv1D(p + "/attn/c_attn", C, 3 * C, weights)  # q, k, v in one matmul
        self.c_proj = Conv1D(p + "/attn/c_proj", C, C, weights, residual_std)
        self.ln_2 = LayerNorm(p + "/ln_2", C, weights)
        self.c_fc = Conv1D(p + "/mlp/c_fc", C, 4 * C, weights)
        self.mlp_proj = Conv1D(p + "/mlp/c_proj", 4 * C, C, weights, residual_std)

    def __call__(self, x, mask, kv=None, pos=None, seeds=None):
        """x (B, T, C) -> (B, T, C). With kv, this layer's cache (keys, values), each
        (B, nh, S, hs), that this call's keys and values are written into at position pos;
        returns the updated cache too."""
        h = self.hparams
        rate = h.dropout if seeds is not None else 0.0
        qkv = self.c_attn(self.ln_1(x))  # (B, T, C) -> (B, T, 3C)
        q, k, v = [split_heads(t, h.n_head) for t in tf.split(qkv, 3, axis=-1)]  # 3 x (B, nh, T, hs)
        if kv is not None:  # write k, v at positions pos..pos+T-1, then attend over the whole cache
            k = update_slice(kv[0], k, pos)  # (B, nh, S, hs)
            v = update_slice(kv[1], v, pos)
            kv = (k, v)
        seed = (lambda i: None) if seeds is None else (lambda i: seeds[i])
        a = merge_heads(attention(q, k, v, mask, rate, seed(0)))  # (B, T, C)
        x = x + dropout(self.c_proj(a), rate, seed(1))
        m = self.mlp_proj(gelu(self.c_fc(self.ln_2(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
        x = x + dropout(m, rate, seed(2))
        return x, kv


def dropout(x, rate, seed):
    """Zeroes a share `rate` of x (scaling the rest by 1 / (1 - rate)); the seed decides which."""
    return tf.nn.experimental.stateless_dropout(x, rate, seed) if rate > 0 and seed is not None else x


def update_slice(cache, new, pos):
    """Writes new (B, nh, T, hs) into cache (B, nh, S, hs) at times pos..pos+T-1: a scatter
    of B * nh * T rows of hs numbers, which XLA does in place. The shapes never change, so
    generation compiles once. (A strided-slice update would need pos known at compile time.)"""
    B, nh, T = new.shape[0], new.shape[1], new.shape[2]
    b, h, t = tf.meshgrid(tf.range(B), tf.range(nh), pos + tf.range(T), indexing="ij")  # 3 x (B, nh, T)
    return tf.tensor_scatter_nd_update(cache, tf.stack([b, h, t], axis=-1), new)  # indices (B, nh, T, 3)


class GPT2(tf.Module):
    """GPT-2: int32 tokens (B, T) -> float32 logits (B, T, V) for the token that follows each one."""

    def __init__(self, hparams, seed=0, compute_dtype=tf.float32, recompute=False):
        super().__init__(name="model")
        h = self.hparams = hparams
        self.compute_dtype = compute_dtype  # bfloat16 for TPUs: weights stay float32, math in bf16
        # Activation recomputation (Chen et al. 2016, arXiv 1604.06174): in training keep only each
        # block's input, and run the block again in the backward pass to get the rest.
        self.recompute = recompute
        weights = Weights(seed)
        self.wte = weights.normal("model/wte", [h.n_vocab, h.n_embd], 0.02)  # token embeddings
        self.wpe = weights.normal("model/wpe", [h.n_ctx, h.n_embd], 0.01)  # position embeddings
        self.h = [Block(h, i, weights) for i in range(h.n_layer)]
        self.ln_f = LayerNorm("model/ln_f", h.n_embd, weights)

    def __call__(self, tokens, training=False, seed=None):
        """Logits for every position. In training with dropout > 0, seed (an int32 [2]) seeds it:
        a stateless seed makes a resumed run drop the same units as an uninterrupted one."""
        T = tokens.shape[1]
        mask = tf.linalg.band_part(tf.ones([T, T], tf.bool), -1, 0)  # (T, T), lower triangle: t sees s <= t
        seeds = None
        if training and self.hparams.dropout > 0:
            if seed is None:
                raise ValueError("dropout in training needs a seed")
            seeds = [tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, i), 3)
                     for i in range(self.hparams.n_layer + 1)]
        x = self.embed(tokens, 0)
        if seeds is not None:
            x = dropout(x, self.hparams.dropout, seeds[-1][0])
        for i, block in enumerate(self.h):
            run = lambda x, block=block, i=i: block(x, mask, seeds=None if seeds is None else seeds[i])[0]  # noqa: E731
            x = tf.recompute_grad(run)(x) if self.recompute and training else run(x)
        return self.unembed(x)

    def embed(self, tokens, pos):
        """tokens (B, T) starting at position pos -> (B, T, C): token + position embeddings."""
        h, T = self.hparams, tokens.shape[1]
        tokens = tf.cast(tokens, tf.int32)  # NumPy hands over int64
        if T > h.n_ctx:
            raise ValueError(f"sequence of {T} tokens is longer than n_ctx = {h.n_ctx}")
        # tf.gather returns zeros for a bad id on GPUs and fails only on CPUs: check explicitly,
        # when called eagerly. Compiled callers check their input first (sample.generate; train.py
        # takes n_vocab from the data), and XLA would drop the check with a warning anyway.
        if tf.executing_eagerly():
            tf.debugging.assert_non_negative(tokens, message="token ids must be >= 0")
            tf.debugging.assert_less(tokens, h.n_vocab, message=f"token ids must be < n_vocab = {h.n_vocab}")
        positions = pos + tf.range(T)
        x = tf.gather(self.wte, tokens) + tf.gather(self.wpe, positions)  # (B, T, C) + (T, C)
        return tf.cast(x, self.compute_dtype)

    def unembed(self, x):
        """(B, T, C) -> logits (B, T, V): final LayerNorm, then the transposed token embedding."""
        return tf.cast(tied_logits(self.ln_f(x), self.wte), tf.float32)

    # ---- the KV cache, for sample.py -------------------------------------------------------

    def empty_cache(self, batch_size, length=None):
        """Keys and values of every layer: n_layer pairs of zeros (B, nh, S, hs), in the compute
        dtype, for S = length positions (default n_ctx: a generation that stays shorter needs
        less, and every step reads the whole cache). Separate tensors, not one stacked tensor:
        each step then writes its new rows in place, instead of copying the whole cache."""
        h = self.hparams
        shape = [batch_size, h.n_head, length or h.n_ctx, h.n_embd // h.n_head]
        return tuple((tf.zeros(shape, self.compute_dtype), tf.zeros(shape, self.compute_dtype))
                     for _ in range(h.n_layer))

    def decode(self, tokens, cache, pos):
        """Logits for tokens (B, T) that sit at positions pos..pos+T-1, given the cache of all
        earlier positions. Returns (logits (B, T, V), the cache with these tokens added).

        Each query attends over the whole cache (its S positions), with keys after it masked out:
        wasted work early in a sequence, but every shape is static, so one compiled step serves
        every position. Only the new tokens go through the network: O(T) instead of O(pos + T).
        """
        T, S = tokens.shape[1], cache[0][0].shape[2]
        query_pos = pos + tf.range(T)[:, None]  # (T, 1)
        mask = tf.range(S)[None, :] <= query_pos  # (T, S): key s visible if s <= query's position
        x = self.embed(tokens, pos)
        layers = []
        for block, kv in zip(self.h, cache):
            x, kv = block(x, mask, kv=kv, pos=pos)
            layers.append(kv)
        return self.unembed(x), tuple(layers)


# ---- OpenAI's checkpoint layout: hparams.json + model.ckpt.* ---------------------------------

OPENAI_FILES = ["checkpoint", "encoder.json", "hparams.json", "model.ckpt.data-00000-of-00001",
                "model.ckpt.index", "model.ckpt.meta", "vocab.bpe"]
OPENAI_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"


def variable_name(v):
    return v.name.split(":")[0]  # 'model/h0/attn/c_attn/w:0' -> 'model/h0/attn/c_attn/w'


def is_conv_weight(name):
    return name.endswith("/w")  # stored [1, nx, nf] by OpenAI's conv1d


def save(model, path):
    """Writes hparams.json and model.ckpt.{index,data-...} in OpenAI's layout and names.

    The `checkpoint` file that names model.ckpt is removed first and written last, so an export
    cut off half-way is never mistaken for a complete one."""
    tf.io.gfile.makedirs(path)
    marker = os.path.join(path, "checkpoint")
    if tf.io.gfile.exists(marker):
        tf.io.gfile.remove(marker)
    names, tensors = [], []
    for v in model.variables:
        names.append(variable_name(v))
        tensors.append(v[None] if is_conv_weight(names[-1]) else v)  # [nx, nf] -> [1, nx, nf]
    save_hparams(model.hparams, path)
    tf.raw_ops.SaveV2(prefix=os.path.join(path, "model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=tensors)
    with tf.io.gfile.GFile(marker, "w") as f:
        f.write('model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n')


def save_hparams(hparams, path):
    """hparams.json as OpenAI writes it: the five shape fields (dropout is a training choice)."""
    fields = {k: v for k, v in dataclasses.asdict(hparams).items() if k != "dropout"}
    with tf.io.gfile.GFile(os.path.join(path, "hparams.json"), "w") as f:
        json.dump(fields, f, indent=2)


def load_hparams(path):
    file = os.path.join(path, "hparams.json")
    if not tf.io.gfile.exists(file):
        raise ValueError(f"no hparams.json in {path}" if tf.io.gfile.isdir(path) else f"no model directory {path}")
    with tf.io.gfile.GFile(file) as f:
        fields = json.load(f)
    known = {f.name for f in dataclasses.fields(HParams)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"{file}: unknown fields {sorted(unknown)}; HParams has {sorted(known)}")
    return HParams(**fields)


def load(path, compute_dtype=tf.float32):
    """A GPT2 from a directory: OpenAI's release (or `save`'s output), or train.py's --out with
    only its training checkpoints so far (checkpoints/ckpt-N, written by tf.train.Checkpoint)."""
    model = GPT2(load_hparams(path), compute_dtype=compute_dtype)
    exported = tf.train.latest_checkpoint(path)  # from the `checkpoint` file: OpenAI's or save()'s
    if exported is not None:
        restore_openai(model, exported)
        return model
    latest = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
    if latest is None:
        raise ValueError(f"no checkpoint in {path} (neither model.ckpt.* nor checkpoints/ckpt-*)")
    tf.train.Checkpoint(model=model).read(latest).expect_partial()
    return model


def restore_openai(model, prefix):
    """Copies each tensor of a name-based checkpoint into the variable of the same name."""
    # A name-based (TF1-style) checkpoint is a table of named tensors: the reader gives any
    # tensor by its name, without the graph that wrote it. OpenAI's .meta file is not needed.
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()  # name -> shape, e.g. 'model/wte' -> [50257, 768]
    for v in model.variables:
        name = variable_name(v)
        if name not in shapes:
            raise ValueError(f"{prefix}: no variable {name}")
        value = reader.get_tensor(name)
        if is_conv_weight(name) and value.ndim == 3 and value.shape[0] == 1:
            value = value[0]  # [1, nx, nf] -> [nx, nf]
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"{prefix}: {name} has shape {list(value.shape)}, but hparams.json "
                             f"implies {v.shape.as_list()}")
        v.assign(value)


def download(name, path):
    """Fetches OpenAI's released files for a size ('124M', '355M', '774M', '1558M') into path.

    Files already complete are skipped; a file cut off half-way resumes where it stopped (an
    HTTP Range request), so a 6 GB download survives a dropped connection.
    """
    name = {"117M": "124M", "345M": "355M"}.get(name, name)
    if name not in ("124M", "355M", "774M", "1558M"):
        raise ValueError(f"unknown model {name!r}; OpenAI released 124M, 355M, 774M and 1558M")
    os.makedirs(path, exist_ok=True)
    for file in OPENAI_FILES:
        target = os.path.join(path, file)
        if os.path.exists(target):
            continue
        partial = target + ".part"  # renamed to target only when complete
        start = os.path.getsize(partial) if os.path.exists(partial) else 0  # bytes already here
        request = urllib.request.Request(f"{OPENAI_URL}/{name}/{file}", headers={"Range": f"bytes={start}-"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                if response.status != 206:  # the server ignored the range: start over
                    start = 0
                total = start + int(response.headers.get("Content-Length", 0))
                with open(partial, "ab" if start else "wb") as f:
                    done = start
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
                        done += len(chunk)
                        print(f"\r{file}: {done / 1e6:.0f}/{total / 1e6:.0f} MB", end="", file=sys.stderr)
            print(file=sys.stderr)
        except OSError as e:
            raise ValueError(f"could not download {name}/{file} from {OPENAI_URL} (offline?): {e}") from None
        os.replace(partial, target)
    return path


# ---- devices: a TPU VM's TPU -------------------------------------------------------------------

def tensorflow_build_problem(installed=None):
    """One line on why this TensorFlow cannot drive a TPU, or '' if its build looks right.
    installed: the names of the TensorFlow distributions installed (default: read from pip's records)."""
    if installed is None:
        installed = set()
        for name in ("tensorflow", "tensorflow-cpu", "tensorflow-tpu"):
            try:
                importlib.metadata.version(name)
                installed.add(name)
            except importlib.metadata.PackageNotFoundError:
                pass
    if "tensorflow-tpu" not in installed:
        return "--tpu: TensorFlow's TPU build (tensorflow-tpu) is not installed: pip install -r requirements-tpu.txt"
    if installed & {"tensorflow", "tensorflow-cpu"}:
        return (f"--tpu: {' and '.join(sorted(installed))} are all installed: the CPU build (from requirements.txt?) "
                "overwrote the TPU build. pip uninstall -y tensorflow tensorflow-cpu tensorflow-tpu, "
                "then pip install -r requirements-tpu.txt")
    return ""


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
                         f"Is this a TPU runtime, freshly started, with nothing else using the TPU? "
                         f"{tensorflow_build_problem()}".strip()) from None
    return resolver
