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
import json
import math
import os
import re

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
RELEASED = ["124M", "355M", "774M", "1558M"]  # what OpenAI's download serves
ALIASES = {"117M": "124M", "345M": "355M"}  # the names of 2019, counted differently
PRESETS.update({old: PRESETS[new] for old, new in ALIASES.items()})


def num_params(hp):
    """Parameters of a GPT-2, counted by hand:
    embeddings: V*C (wte) + n_ctx*C (wpe)
    each block: 2 LayerNorms 4C; attention C*3C + 3C (c_attn) + C*C + C (c_proj);
                MLP C*4C + 4C (c_fc) + 4C*C + C (c_proj); in all 12C^2 + 13C
    final LayerNorm: 2C. The output layer reuses wte, so it adds nothing.
    """
    C = hp.n_embd
    return hp.n_vocab * C + hp.n_ctx * C + hp.n_layer * (12 * C * C + 13 * C) + 2 * C


def flops_per_token(hp):
    """Training FLOPs per token: 6N + 12 * n_layer * n_ctx * C (PaLM paper, appendix B).

    A multiply-add is 2 FLOPs, and the backward pass costs twice the forward, hence 6 per
    parameter per token. N leaves out wpe (a lookup, no multiplies) but keeps wte, which is
    also the output matmul. The second term is attention's QK^T and AV, counted over the whole
    context as if unmasked: the convention of MFU figures (nanoGPT, PaLM), so they compare.
    """
    N = num_params(hp) - hp.n_ctx * hp.n_embd
    return 6 * N + 12 * hp.n_layer * hp.n_ctx * hp.n_embd


# ---- the pieces of math ------------------------------------------------------------------

def gelu(x):
    """GPT-2's GELU, the tanh approximation (Hendrycks and Gimpel 2016)."""
    return 0.5 * x * (1 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, g, b, eps=1e-5):
    """Normalises the last axis to mean 0, variance 1, then scales by g and shifts by b.
    The statistics are computed in float32 even when x is bfloat16: a sum over C values of
    bfloat16 (7 stored mantissa bits: 2 to 3 digits) would lose most of its precision."""
    x32 = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
    x32 = (x32 - mean) * tf.math.rsqrt(variance + eps)
    return tf.cast(x32 * g + b, x.dtype)


def linear(x, w, b):
    """x @ w + b over the last axis: (B, T, nx) -> (B, T, nf). OpenAI calls it conv1d."""
    return x @ tf.cast(w, x.dtype) + tf.cast(b, x.dtype)


def attention(q, k, v, mask, rate=0.0, seed=None):
    """Scaled dot-product attention (Vaswani et al. section 3.2.1), all heads at once:
    softmax(q k^T / sqrt(hs)) v. The scale keeps the scores' variance near 1 whatever hs is,
    so the softmax does not saturate. q (B, nh, T, hs), k and v (B, nh, S, hs), mask (T, S)
    bool: True where query t may see key s."""
    scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(q.shape[-1])  # (B, nh, T, S)
    scores = tf.where(mask, tf.cast(scores, tf.float32), -1e10)  # softmax in float32; hidden keys -> 0
    probs = dropout(tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype), rate, seed, 0)
    return tf.matmul(probs, v)  # (B, nh, T, S) x (B, nh, S, hs) -> (B, nh, T, hs)


def split_heads(x, n_head):
    """(B, T, C) -> (B, nh, T, hs)"""
    T, C = tf.shape(x)[1], x.shape[2]
    return tf.transpose(tf.reshape(x, [-1, T, n_head, C // n_head]), [0, 2, 1, 3])


def merge_heads(x):
    """(B, nh, T, hs) -> (B, T, C)"""
    nh, hs = x.shape[1], x.shape[3]
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [-1, tf.shape(x)[2], nh * hs])


def dropout(x, rate, seed, part):
    """Zeroes a share `rate` of x and scales the rest by 1 / (1 - rate); x unchanged when seed is
    None (not training). A call site's seed has three independent streams: `part` picks one."""
    if rate == 0 or seed is None:
        return x
    return tf.nn.experimental.stateless_dropout(x, rate, tf.random.experimental.stateless_split(seed, 3)[part])


def write_at(cache, new, pos):
    """Writes new (B, nh, T, hs) into cache (B, nh, S, hs) at positions pos..pos+T-1, in place
    under XLA. The cache keeps its shape, so generation compiles once for every position."""
    B, nh, T = new.shape[0], new.shape[1], new.shape[2]
    b, head, t = tf.meshgrid(tf.range(B), tf.range(nh), pos + tf.range(T), indexing="ij")  # 3 x (B, nh, T)
    return tf.tensor_scatter_nd_update(cache, tf.stack([b, head, t], axis=-1), new)  # indices (B, nh, T, 3)


def cross_entropy(logits, targets):
    """Mean negative log-likelihood of targets (B, T) under logits (B, T, V), in float32."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32)))


# ---- the modules, named as in OpenAI's checkpoints ------------------------------------------

class Initializer:
    """Creates float32 variables with OpenAI's names, each drawn from its own stream of one
    seed (in creation order), so a seed gives the same model on CPUs and GPUs (for one TensorFlow version)."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def normal(self, name, shape, stddev):
        self.count += 1
        return tf.Variable(tf.random.stateless_normal(shape, seed=[self.seed, self.count], stddev=stddev), name=name)

    def constant(self, name, shape, value):
        return tf.Variable(tf.fill(shape, float(value)), name=name)


class LayerNorm(tf.Module):
    def __init__(self, prefix, C, init):
        super().__init__()
        self.g = init.constant(prefix + "/g", [C], 1.0)  # scale
        self.b = init.constant(prefix + "/b", [C], 0.0)  # shift

    def __call__(self, x):
        return layer_norm(x, self.g, self.b)


class Linear(tf.Module):
    """w (nx, nf) and b (nf,). OpenAI stores w as [1, nx, nf] (a 1x1 convolution, "conv1d")."""

    def __init__(self, prefix, nx, nf, init, stddev=0.02):
        super().__init__()
        self.w = init.normal(prefix + "/w", [nx, nf], stddev)
        self.b = init.constant(prefix + "/b", [nf], 0.0)

    def __call__(self, x):
        return linear(x, self.w, self.b)


class Attention(tf.Module):
    """Causal multi-head self-attention (Vaswani et al. section 3.2.2): q, k and v from one
    matmul, attention in nh heads of size hs, the heads merged and projected back."""

    def __init__(self, prefix, hparams, init, residual_std):
        super().__init__()
        C, self.n_head = hparams.n_embd, hparams.n_head
        self.c_attn = Linear(prefix + "/c_attn", C, 3 * C, init)
        self.c_proj = Linear(prefix + "/c_proj", C, C, init, residual_std)

    def __call__(self, x, mask, rate=0.0, seed=None, cache=None, pos=0):
        """x (B, T, C) -> (B, T, C). cache (generating): this layer's keys and values of earlier
        positions, each (B, nh, S, hs); this call's are written in at pos and attended over too."""
        q, k, v = [split_heads(t, self.n_head) for t in tf.split(self.c_attn(x), 3, axis=-1)]  # 3 x (B, nh, T, hs)
        if cache is not None:
            cache = write_at(cache[0], k, pos), write_at(cache[1], v, pos)
            k, v = cache  # (B, nh, S, hs) each: the earlier positions' and this call's
        return self.c_proj(merge_heads(attention(q, k, v, mask, rate, seed))), cache


class MLP(tf.Module):
    """The position-wise feed-forward network: C -> 4C -> GELU -> C."""

    def __init__(self, prefix, C, init, residual_std):
        super().__init__()
        self.c_fc = Linear(prefix + "/c_fc", C, 4 * C, init)
        self.c_proj = Linear(prefix + "/c_proj", 4 * C, C, init, residual_std)

    def __call__(self, x):
        return self.c_proj(gelu(self.c_fc(x)))


class Block(tf.Module):
    """One transformer block, with LayerNorm at the input of each sub-block (GPT-2 section 2.3)."""

    def __init__(self, hparams, i, init):
        super().__init__()
        p, C, self.rate = f"model/h{i}", hparams.n_embd, hparams.dropout
        # GPT-2 section 2.3: "scale the weights of residual layers at initialization by a
        # factor of 1/sqrt(N) where N is the number of residual layers": two per block.
        residual_std = 0.02 / math.sqrt(2 * hparams.n_layer)
        self.ln_1 = LayerNorm(p + "/ln_1", C, init)
        self.attn = Attention(p + "/attn", hparams, init, residual_std)
        self.ln_2 = LayerNorm(p + "/ln_2", C, init)
        self.mlp = MLP(p + "/mlp", C, init, residual_std)

    def __call__(self, x, mask, seed=None, cache=None, pos=0):
        """x (B, T, C) -> (B, T, C), and the attention's cache (see Attention)."""
        a, cache = self.attn(self.ln_1(x), mask, self.rate, seed, cache, pos)
        x = x + dropout(a, self.rate, seed, 1)
        x = x + dropout(self.mlp(self.ln_2(x)), self.rate, seed, 2)
        return x, cache


class GPT2(tf.Module):
    """GPT-2: int32 tokens (B, T) -> float32 logits (B, T, V) for the token that follows each one."""

    def __init__(self, hparams, seed=0, compute_dtype=tf.float32, recompute=False):
        super().__init__(name="model")
        self.hparams = hparams
        self.compute_dtype = compute_dtype  # bfloat16 for TPUs: weights stay float32, math in bf16
        # Activation recomputation (Chen et al. 2016, arXiv 1604.06174): in training keep only each
        # block's input, and run the block again in the backward pass to get the rest.
        self.recompute = recompute
        init, C = Initializer(seed), hparams.n_embd
        self.wte = init.normal("model/wte", [hparams.n_vocab, C], 0.02)  # token embeddings
        self.wpe = init.normal("model/wpe", [hparams.n_ctx, C], 0.01)  # position embeddings
        self.blocks = [Block(hparams, i, init) for i in range(hparams.n_layer)]  # OpenAI's h0, h1, ...
        self.ln_f = LayerNorm("model/ln_f", C, init)

    def __call__(self, tokens, training=False, seed=None):
        """Logits for every position. In training with dropout, seed (int32 [2]) decides what is
        dropped: a stateless seed makes a resumed run drop the same units as an uninterrupted one."""
        T, n_layer = tokens.shape[1], self.hparams.n_layer
        mask = tf.linalg.band_part(tf.ones([T, T], tf.bool), -1, 0)  # (T, T), lower triangle: t sees s <= t
        if not training or self.hparams.dropout == 0:
            seed = None
        elif seed is None:
            raise ValueError("dropout in training needs a seed")
        # a dropout seed per block, and the embeddings' last: independent streams of the one seed
        fold_in = tf.random.experimental.stateless_fold_in
        seeds = [None if seed is None else fold_in(seed, i) for i in range(n_layer + 1)]
        x = dropout(self.embed(tokens, 0), self.hparams.dropout, seeds[n_layer], 0)
        for block, block_seed in zip(self.blocks, seeds):
            # Subtle: the defaults bind this iteration's block and seed. tf.recompute_grad calls the
            # function again in the backward pass, after the loop has ended, when a plain closure
            # would see the last block only.
            def apply_block(x, block=block, block_seed=block_seed):
                return block(x, mask, block_seed)[0]
            x = tf.recompute_grad(apply_block)(x) if self.recompute and training else apply_block(x)
        return self.unembed(x)

    def embed(self, tokens, pos):
        """tokens (B, T) starting at position pos -> (B, T, C): token + position embeddings."""
        hp, T = self.hparams, tokens.shape[1]
        tokens = tf.cast(tokens, tf.int32)  # NumPy hands over int64
        if T > hp.n_ctx:
            raise ValueError(f"sequence of {T} tokens is longer than n_ctx = {hp.n_ctx}")
        # tf.gather gives zeros for a bad id on GPUs and fails only on CPUs: check, when eager
        # (compiled callers check their input first; XLA would drop the check with a warning).
        if tf.executing_eagerly():
            tf.debugging.assert_non_negative(tokens, message="token ids must be >= 0")
            tf.debugging.assert_less(tokens, hp.n_vocab, message=f"token ids must be < n_vocab = {hp.n_vocab}")
        x = tf.gather(self.wte, tokens) + tf.gather(self.wpe, pos + tf.range(T))  # (B, T, C) + (T, C)
        return tf.cast(x, self.compute_dtype)

    def unembed(self, x):
        """(B, T, C) -> logits (B, T, V): the final LayerNorm, then the token embedding wte (V, C)
        used again as the output layer, transposed (GPT-1 section 3.1: W_e in both places)."""
        logits = tf.einsum("btc,vc->btv", self.ln_f(x), tf.cast(self.wte, x.dtype))
        return tf.cast(logits, tf.float32)

    # ---- generating: the KV cache, used by sample.py ---------------------------------------------

    def empty_cache(self, batch_size, length=None):
        """Keys and values of every layer: n_layer pairs of zeros (B, nh, S, hs) for S = length
        positions (default n_ctx; a shorter text needs fewer, and every step reads all of them).
        One tensor per layer and kind, so that each step writes its rows in place."""
        hp = self.hparams
        shape = [batch_size, hp.n_head, length or hp.n_ctx, hp.n_embd // hp.n_head]
        zeros = tf.zeros(shape, self.compute_dtype)
        return tuple((zeros, zeros) for _ in range(hp.n_layer))  # (keys, values) of each layer

    def forward_with_cache(self, tokens, cache, pos):
        """Logits (B, T, V) for tokens (B, T) at positions pos..pos+T-1, given the keys and
        values of all earlier positions in cache; returns the cache with these tokens' added.

        Only the new tokens go through the network. Each query attends over the whole cache (its
        S positions), with the keys after it masked out: wasted work early in a text, but every
        shape is static, so one compiled step serves every position."""
        T, S = tokens.shape[1], cache[0][0].shape[2]
        mask = tf.range(S)[None, :] <= pos + tf.range(T)[:, None]  # (T, S): key s visible if s <= query's position
        x, layers = self.embed(tokens, pos), []
        for block, kv in zip(self.blocks, cache):
            x, kv = block(x, mask, cache=kv, pos=pos)
            layers.append(kv)
        return self.unembed(x), tuple(layers)


# ---- OpenAI's checkpoint layout: hparams.json + model.ckpt.* ---------------------------------

def variable_name(v):
    return v.name.split(":")[0]  # 'model/h0/attn/c_attn/w:0' -> 'model/h0/attn/c_attn/w'


def save(model, path):
    """Writes hparams.json and model.ckpt.{index,data-...} in OpenAI's layout and names.

    The `checkpoint` file that names model.ckpt is removed first and written last, so an export
    cut off half-way is never mistaken for a complete one."""
    tf.io.gfile.makedirs(path)
    remove_export_marker(path)
    names = [variable_name(v) for v in model.variables]
    # OpenAI stores the weights w of its conv1d as [1, nx, nf]: ours, [nx, nf], get a leading axis
    tensors = [v[None] if name.endswith("/w") else v for name, v in zip(names, model.variables)]
    save_hparams(model.hparams, path)
    tf.raw_ops.SaveV2(prefix=os.path.join(path, "model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=tensors)
    with tf.io.gfile.GFile(os.path.join(path, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n')


def remove_export_marker(path):
    """Removes path/checkpoint, the file that names model.ckpt: without it the export is not
    complete, and load(path) reads train.py's checkpoints/ instead."""
    if tf.io.gfile.exists(os.path.join(path, "checkpoint")):
        tf.io.gfile.remove(os.path.join(path, "checkpoint"))


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
    only its training checkpoints so far (checkpoints/ckpt-N, written by tf.train.Checkpoint).
    A checkpoint that lacks any of the model's weights is an error, never a half-random model."""
    model = GPT2(load_hparams(path), compute_dtype=compute_dtype)
    exported = tf.train.latest_checkpoint(path)  # from the `checkpoint` file: OpenAI's or save()'s
    latest = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))  # train.py's, while it trains
    if exported:
        restore_openai(model, exported)
    elif latest:
        restore(tf.train.Checkpoint(model=model), latest)
    else:
        raise ValueError(f"no checkpoint in {path} (neither model.ckpt.* nor checkpoints/ckpt-*)")
    return model


def restore(checkpoint, prefix):
    """checkpoint.read(prefix), failing in one line if the file is unreadable or lacks any variable
    the program has (a file written by a version of this code with other names), where TensorFlow
    would go on with those variables as they were: random. The file may hold more (an optimizer)."""
    try:
        status = checkpoint.read(prefix)
    except (ValueError, IndexError, tf.errors.OpError) as e:
        raise ValueError(f"{prefix}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:150]})") from None
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        missing = re.findall(r"'([^':]+):0'", str(e)) or [str(e).splitlines()[0][:150]]
        raise ValueError(f"{prefix} was written by another version of this code: it lacks {', '.join(missing[:3])}"
                         f"{' and more' if len(missing) > 3 else ''}") from None
    finally:
        status.expect_partial()  # and no warnings about what the file holds beyond the program


def restore_openai(model, prefix):
    """Copies each tensor of a name-based checkpoint into the variable of the same name."""
    # A name-based (TF1-style) checkpoint is a table of named tensors: the reader gives any
    # tensor by its name, without the graph that wrote it. OpenAI's .meta file is not needed.
    try:
        reader = tf.train.load_checkpoint(prefix)
        ours = {variable_name(v) for v in model.variables}
        extra = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("model/") and n not in ours)
        if extra:  # say, model/h12/... beside hparams.json's n_layer 12: a half-loaded model would sample garbage
            raise ValueError(f"{prefix} holds {extra[0]}, which hparams.json's shape has no place for")
        for v in model.variables:
            name = variable_name(v)
            value = reader.get_tensor(name)  # a NotFoundError if the file lacks it
            value = value[0] if name.endswith("/w") and value.ndim == 3 else value  # conv1d's [1, nx, nf] -> [nx, nf]
            if value.shape != tuple(v.shape):
                raise ValueError(f"{prefix}: {name} has shape {list(value.shape)}, but hparams.json "
                                 f"implies {v.shape.as_list()}")
            v.assign(value)
    except (IndexError, tf.errors.OpError) as e:  # a name missing, a file cut off ("Read less bytes than requested")
        raise ValueError(f"{prefix}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:150]})") from None
