"""
Generating text with GPT-2, and scoring text (loss and perplexity) with it.

Generation runs as one loop (`tf.while_loop` in a `tf.function`, compiled with XLA) with a KV
cache: the keys and values of every earlier position are kept, in tensors of fixed shape
(B, nh, S, hs), two per layer, so each new token costs one pass of one token through the
network, and the loop is traced once per shape and reused across calls.

Sampling controls: temperature (flatten or sharpen the distribution), top-k (keep the k most
likely tokens), top-p or nucleus sampling (Holtzman et al. 2019: keep the fewest tokens whose
probabilities add up to p). Each is written without data-dependent shapes, as XLA needs.

Shape letters as in gpt2.py: B batch, T time, V vocabulary.
Left out: beam search, repetition penalties, and streaming tokens out while they are generated.
"""
import argparse
import functools
import json
import math
import os
import random
import sys

import numpy as np
import tensorflow as tf

import data
import gpt2


# ---- filtering the next-token distribution ------------------------------------------------------

def top_k_filter(logits, k):
    """Keeps the k largest logits of each row (B, V) and sets the rest to -inf; ties with the
    k-th largest stay too."""
    kth = tf.math.top_k(logits, min(k, logits.shape[-1])).values[:, -1:]  # (B, 1)
    return tf.where(logits < kth, -np.inf, logits)


def top_p_filter(logits, p):
    """Nucleus sampling (Holtzman et al. 2019, arXiv 1904.09751, section 3.1): keeps the smallest
    set of tokens whose probabilities add up to at least p, the most likely first; ties with the
    last one kept stay too."""
    ranked = tf.sort(logits, direction="DESCENDING")  # (B, V), the most likely first
    before = tf.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)  # the mass ahead of each token
    n_kept = tf.reduce_sum(tf.cast(before < p, tf.int32), axis=-1, keepdims=True)  # (B, 1), at least 1
    bar = tf.gather(ranked, n_kept - 1, batch_dims=1)  # the least likely kept logit
    return tf.where(logits < bar, -np.inf, logits)


def choose(logits, temperature, top_k, top_p, seed):
    """One token per row from logits (B, V). temperature 0 or top_k 1 is greedy (argmax)."""
    if temperature < 1e-4 or top_k == 1:  # (below 1e-4, logits / temperature overflow, and the argmax wins anyway)
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    logits = logits / temperature
    if top_k > 0:
        logits = top_k_filter(logits, top_k)
    if top_p < 1:
        logits = top_p_filter(logits, top_p)
    # stateless: the draw depends on the seed alone, not on how often sampling ran before
    return tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0]


# ---- the generation loop ---------------------------------------------------------------------

def generation_loop(model, B, T, length, temperature, top_k, top_p, stop_at_eot, use_cache, eot):
    """Builds the function context (B, T), seed (2,) -> tokens (B, length).

    The whole text lives in one buffer (B, T + length). Step i feeds token T + i - 1 (the
    newest) through the network, at cache position pos, and picks token T + i from its logits.
    The prompt's earlier tokens go through in one pass before the loop. The cache holds
    S = min(n_ctx, T + length) positions: every step attends over all of them.

    When the text outgrows n_ctx and the cache is full, the window slides: the last n_ctx / 2
    tokens are run through the network again to rebuild the cache (one batched pass of
    n_ctx / 2 tokens every n_ctx / 2 new tokens: about the cost of one extra token per step,
    and the context never drops below half). Without the cache, every step runs the last S
    tokens through the network: the reference that the cache must match (until the window first
    slides: from then on the two see different contexts).
    """
    n_ctx = model.hparams.n_ctx
    S = min(n_ctx, T + length)  # positions in the cache; the uncached path's input length
    keep = n_ctx // 2  # tokens kept when the window slides

    def next_logits(tokens, n, cache, pos):
        """Logits (B, V) for the token after tokens[:, :n], and the updated cache and pos."""
        if not use_cache:  # recompute everything: the last S tokens, ending at n
            start = tf.maximum(0, n - S)
            logits = model(tf.slice(tokens, [0, start], [B, S]))  # (B, S, V)
            return tf.gather(logits, n - 1 - start, axis=1), cache, pos
        logits, cache = model.forward_with_cache(tf.slice(tokens, [0, n - 1], [B, 1]), cache, pos)  # (B, 1, V)
        return logits[:, 0], cache, pos + 1

    def more(i, tokens, cache, pos, done):  # checked before every step: it can stop early
        return (i < length) & ~tf.reduce_all(done)

    def room(i, tokens, cache, pos, done):  # ... and the cache has room for the next token
        return more(i, tokens, cache, pos, done) & (pos < S)

    def generate_tokens(context, seed):
        # Loop state: i new tokens so far, the text buffer, the cache and its fill level pos,
        # and which rows have ended (stop_at_eot). The buffer starts as <|endoftext|> after the
        # context, so a loop that stops early (every row ended) leaves the rest <|endoftext|>.
        tokens = tf.concat([context, tf.fill([B, length], eot)], axis=1)  # (B, T + length)
        cache, pos = tf.zeros([]), tf.constant(0)
        if use_cache:  # the prompt but its last token, at most n_ctx - 1 of them, in one pass
            cache, prompt = model.empty_cache(B, S), min(T, n_ctx) - 1
            if prompt > 0:
                _, cache = model.forward_with_cache(context[:, T - 1 - prompt:T - 1], cache, 0)
            pos = tf.constant(prompt)

        def step(i, tokens, cache, pos, done):  # new token i: the logits, a choice, written down
            logits, cache, pos = next_logits(tokens, T + i, cache, pos)
            # Each step has its own seed (seed folded with i): the same seed, the same text.
            token = choose(logits, temperature, top_k, top_p, tf.random.experimental.stateless_fold_in(seed, i))
            token = tf.where(done, eot, token)  # a finished row only repeats <|endoftext|>
            if stop_at_eot:
                done = done | (token == eot)
            # write token (B,) into column T + i of the buffer (B, T + length)
            tokens = tf.tensor_scatter_nd_update(tokens, tf.stack([tf.range(B), tf.fill([B], T + i)], axis=1), token)
            return i + 1, tokens, cache, pos, done

        # tf.while_loop, not a Python loop: one compiled loop of `length` steps, whatever the
        # length. Its state is carried from step to step: under XLA the cache is updated in place.
        state = tf.while_loop(room, step, (tf.constant(0), tokens, cache, pos, tf.zeros([B], tf.bool)))
        if use_cache and T + length > n_ctx:  # (decided when tracing: a text that fits never slides)
            def slide(i, tokens, cache, pos, done):  # rebuild from the last `keep` tokens, go on
                n = T + i  # tokens so far; the next step feeds token n - 1 at position keep
                kept = tf.slice(tokens, [0, n - 1 - keep], [B, keep])  # (B, keep)
                _, cache = model.forward_with_cache(kept, model.empty_cache(B, S), 0)
                return tf.while_loop(room, step, (i, tokens, cache, tf.constant(keep), done))
            state = tf.while_loop(more, slide, state)
        return state[1][:, T:]  # (B, length)
    return generate_tokens


def generate(model, context, length, temperature=1.0, top_k=0, top_p=1.0, seed=None,
             stop_at_eot=False, use_cache=True, xla=True, eot=None):
    """Samples `length` new tokens after each row of context (int tokens [B, T]).

    Returns an int32 array [B, length] of the new tokens only. The same seed gives the same
    tokens. With stop_at_eot a row ends at <|endoftext|> (the rest of it is <|endoftext|>), and
    the loop ends early when every row has. eot: the id of <|endoftext|> (default n_vocab - 1,
    where GPT-2 and data.Encoder.train put it; pass encoder.eot for another vocabulary).
    A context longer than n_ctx is cut from the left.
    The loop is traced and compiled once per (model, B, T, length, settings); a retrace happens
    only when one of those changes (temperature is part of the settings: greedy differs).

    xla=False runs it as a plain tf.function graph instead. XLA is the default on every device:
    TPUs need it, and on a CPU it is faster too (the README's benchmarks).
    """
    check_settings(temperature=temperature, top_k=top_k, top_p=top_p, length=length)
    context = np.asarray(context, dtype=np.int32)
    if context.ndim != 2 or context.shape[1] == 0 or context.min() < 0 or context.max() >= model.hparams.n_vocab:
        raise ValueError(f"context must be int tokens [batch, T], T >= 1, ids in [0, {model.hparams.n_vocab}): "
                         f"got shape {context.shape}")
    B, T = context.shape
    eot = model.hparams.n_vocab - 1 if eot is None else eot
    key = (B, T, length, float(temperature), int(top_k), float(top_p), stop_at_eot, use_cache, xla, eot)
    # kept in the model's own __dict__ (not an attribute a checkpoint tracks): freed with the model
    functions = vars(model).setdefault("_generation_functions", {})
    if key not in functions:
        loop = generation_loop(model, B, T, length, temperature, top_k, top_p, stop_at_eot, use_cache, eot)
        # functools.partial: TensorFlow counts traces per code object, and every loop shares
        # one; wrapped, each setting counts on its own and no "retracing" warning is printed.
        functions[key] = tf.function(functools.partial(loop), jit_compile=xla)
    seed = random.randrange(2 ** 31) if seed is None else seed
    with tf.device(model.wte.device):  # beside the weights: one device, the first replica, a TPU core
        return functions[key](tf.constant(context), tf.constant([seed, 0], tf.int32)).numpy()


at_least_one = (lambda v: v >= 1, "must be at least 1")
RULES = {"temperature": (lambda v: v >= 0, "must be >= 0"), "top_k": (lambda v: v >= 0, "must be >= 0"),
         "top_p": (lambda v: 0 < v <= 1, "must be in (0, 1]"), "length": at_least_one, "num_samples": at_least_one,
         "batch_size": at_least_one}


def check_settings(prefix="", **settings):
    """Raises a one-line ValueError for the first setting that breaks its rule in RULES."""
    for name, value in settings.items():
        ok, rule = RULES[name]
        if not ok(value):
            raise ValueError(f"{prefix}{name} {value}: {rule}")


# ---- scoring ---------------------------------------------------------------------------------------

def score(model, tokens, batch_size=8):
    """Mean loss per token (nats) over a token stream, in non-overlapping windows of n_ctx
    predictions: window i reads tokens[i*n_ctx : (i+1)*n_ctx] and predicts the tokens one
    later, so every token but the first is predicted exactly once. The last window is padded,
    and its padding masked out, so every batch has the same static shape."""
    n_ctx = model.hparams.n_ctx
    tokens = np.asarray(tokens, dtype=np.int32)
    if len(tokens) < 2:
        raise ValueError("need at least 2 tokens to score")
    n_windows = math.ceil((len(tokens) - 1) / n_ctx)  # each window makes n_ctx predictions
    n_batches = math.ceil(n_windows / batch_size)
    padded = np.pad(tokens, (0, n_batches * batch_size * n_ctx + 1 - len(tokens)))  # zeros after the text
    weights = (np.arange(len(padded) - 1) < len(tokens) - 1).astype(np.float32)  # 1 where a real next token exists
    shape = [n_batches, batch_size, n_ctx]  # inputs x, targets y (x shifted by one) and weights w
    x, y, w = padded[:-1].reshape(shape), padded[1:].reshape(shape), weights.reshape(shape)

    @tf.function
    def batch_loss(x, y, w):  # the sum of the losses where w is 1; x, y, w (B, n_ctx) each
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x))
        return tf.reduce_sum(losses * w)

    total = 0.0
    for b in range(n_batches):
        with tf.device(model.wte.device):  # beside the weights, as in generate
            total += float(batch_loss(x[b], y[b], w[b]))
        data.progress(f"scoring: {b + 1}/{n_batches} batches", done=b + 1 == n_batches)
    count = int(weights.sum())
    return {"tokens": count, "loss": total / count, "perplexity": math.exp(total / count)}


# ---- command line ----------------------------------------------------------------------------------

# OpenAI's release: the files of each size, `checkpoint` last (it marks the others complete)
OPENAI_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
OPENAI_FILES = ["encoder.json", "vocab.bpe", "hparams.json", "model.ckpt.index", "model.ckpt.meta",
                "model.ckpt.data-00000-of-00001", "checkpoint"]


def find_model(name):
    """A model directory, or a released size name ('124M' ...), downloaded once into models/NAME."""
    if tf.io.gfile.isdir(name):
        return name
    if name not in gpt2.RELEASED and name not in gpt2.ALIASES:
        raise ValueError(f"--model {name}: no such directory, and not a released size ({', '.join(gpt2.RELEASED)})")
    path = os.path.join("models", gpt2.ALIASES.get(name, name))
    for file in OPENAI_FILES:
        data.download(f"{OPENAI_URL}/{gpt2.ALIASES.get(name, name)}/{file}", os.path.join(path, file))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description="Sample from a GPT-2, or score a text with it.")
    parser.add_argument("--model", default="out", help="a model directory (train.py's --out, OpenAI's release) "
                                                      "or a released size (124M, 355M, 774M, 1558M) to download")
    parser.add_argument("--prompt", default="", help="text to continue (default: unconditional, from <|endoftext|>)")
    parser.add_argument("--prompt_file", default="", help="read the prompt from this file")
    parser.add_argument("--length", type=int, default=200, help="new tokens per sample")
    parser.add_argument("--temperature", type=float, default=1.0, help="divide logits by this; 0 is greedy")
    parser.add_argument("--top_k", type=int, default=40, help="sample from the k most likely tokens (0: all)")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling: the fewest tokens with mass >= p")
    parser.add_argument("--num_samples", type=int, default=1, help="samples per prompt")
    parser.add_argument("--batch_size", type=int, default=1, help="samples generated at once")
    parser.add_argument("--seed", type=int, default=None, help="seed for repeatable samples")
    parser.add_argument("--stop_at_eot", action="store_true", help="end a sample at <|endoftext|>")
    parser.add_argument("--score", default="", help="instead, print the loss and perplexity of these files (a glob)")
    args = parser.parse_args(argv)
    try:  # every flag checked before any work: a mistake is one line
        check_settings("--", **{name: getattr(args, name) for name in RULES})
        sample_or_score(args)
    except (ValueError, OSError, tf.errors.OpError) as e:  # a mistake, or a storage fault: one line
        sys.exit(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def sample_or_score(args):
    """Loads the model and its vocabulary, then scores or samples as the flags say."""
    path = find_model(args.model)
    model, encoder = gpt2.load(path), data.Encoder.load(path)
    if args.score:
        files = sorted(tf.io.gfile.glob(args.score))  # local or gs://
        if not files:
            raise ValueError(f"--score {args.score}: no such file")
        tokens = [t for file in files for t in [encoder.eot] + encoder.encode(data.read_text(file))]  # documents
        if all(t == encoder.eot for t in tokens):
            raise ValueError(f"--score {args.score}: no text to score")
        print(json.dumps(score(model, tokens)))
        return
    prompt = data.read_text(args.prompt_file) if args.prompt_file else args.prompt
    # No prompt: start from <|endoftext|>, as if a new document began (unconditional samples).
    context = encoder.encode(prompt) if prompt else [encoder.eot]
    if args.length > 16 * model.hparams.n_ctx:  # hours on a CPU, with nothing printed
        raise ValueError(f"--length {args.length}: at most 16 x n_ctx ({16 * model.hparams.n_ctx}) in one sample")
    if len(context) >= model.hparams.n_ctx:  # room for the first new token
        print(f"warning: the prompt has {len(context)} tokens; keeping its last n_ctx - 1", file=sys.stderr)
        context = context[1 - model.hparams.n_ctx:]
    for done in range(0, args.num_samples, args.batch_size):
        seed = None if args.seed is None else args.seed + done  # a new seed per batch, repeatably
        batch = generate(model, [context] * args.batch_size, args.length, args.temperature, args.top_k,
                         args.top_p, seed, stop_at_eot=args.stop_at_eot, eot=encoder.eot)
        for i, row in enumerate(batch[:args.num_samples - done].tolist()):
            print(f"{'=' * 30} SAMPLE {done + i + 1} {'=' * 30}")
            if args.stop_at_eot and encoder.eot in row:
                row = row[:row.index(encoder.eot)]  # the sample ends at its first <|endoftext|>
            print(prompt + encoder.decode(row))


if __name__ == "__main__":
    main()
