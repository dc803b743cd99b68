"""An independent GPT-2 in NumPy, written from the papers and OpenAI's checkpoint layout, used
as the reference for gpt2.py and sample.py. It shares no code with them: it reads a dict of
arrays keyed by OpenAI's names, with conv weights as OpenAI stores them, [1, nx, nf]."""
import json
import os

import numpy as np
import tensorflow as tf


def random_openai_checkpoint(path, hparams, seed=0, position_scale=0.1):
    """Writes hparams.json and model.ckpt.* in OpenAI's layout with random weights (SaveV2).
    Every tensor is random, gains and biases too, so a swapped or misread name shows.
    A large position_scale makes the position drive the prediction, so that a greedy
    continuation of a random model wanders instead of repeating one token."""
    rng = np.random.default_rng(seed)
    V, T, C, L = hparams["n_vocab"], hparams["n_ctx"], hparams["n_embd"], hparams["n_layer"]
    shapes = {"model/wte": [V, C], "model/wpe": [T, C], "model/ln_f/g": [C], "model/ln_f/b": [C]}
    for i in range(L):
        p = f"model/h{i}/"
        shapes.update({p + "ln_1/g": [C], p + "ln_1/b": [C], p + "ln_2/g": [C], p + "ln_2/b": [C],
                       p + "attn/c_attn/w": [1, C, 3 * C], p + "attn/c_attn/b": [3 * C],
                       p + "attn/c_proj/w": [1, C, C], p + "attn/c_proj/b": [C],
                       p + "mlp/c_fc/w": [1, C, 4 * C], p + "mlp/c_fc/b": [4 * C],
                       p + "mlp/c_proj/w": [1, 4 * C, C], p + "mlp/c_proj/b": [C]})
    params = {}
    for name, shape in shapes.items():
        scale = 0.1 if name.endswith(("/w", "wte", "wpe")) else 0.5
        scale = position_scale if name == "model/wpe" else scale
        params[name] = (rng.standard_normal(shape) * scale + (1.0 if name.endswith("/g") else 0.0)).astype(np.float32)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "hparams.json"), "w") as f:
        json.dump(hparams, f)
    names = sorted(params)
    tf.raw_ops.SaveV2(prefix=os.path.join(path, "model.ckpt"), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[params[n] for n in names])
    with open(os.path.join(path, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "model.ckpt"\n')
    return params


def forward(params, hparams, tokens):
    """tokens: int array [T] -> logits [T, V], float64 throughout."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    T, H = len(tokens), hparams["n_head"]

    def norm(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * g + b

    def dense(x, w, b):
        return x @ w[0] + b  # OpenAI's conv1d with a [1, nx, nf] kernel

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    x = p["model/wte"][tokens] + p["model/wpe"][:T]
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(hparams["n_layer"]):
        q_ = f"model/h{i}/"
        qkv = dense(norm(x, p[q_ + "ln_1/g"], p[q_ + "ln_1/b"]), p[q_ + "attn/c_attn/w"], p[q_ + "attn/c_attn/b"])
        heads = []
        for q, k, v in zip(*[np.split(m, H, axis=-1) for m in np.split(qkv, 3, axis=-1)]):
            scores = q @ k.T / np.sqrt(q.shape[-1])
            heads.append(softmax(np.where(causal, scores, -np.inf)) @ v)
        x = x + dense(np.concatenate(heads, -1), p[q_ + "attn/c_proj/w"], p[q_ + "attn/c_proj/b"])
        hidden = dense(norm(x, p[q_ + "ln_2/g"], p[q_ + "ln_2/b"]), p[q_ + "mlp/c_fc/w"], p[q_ + "mlp/c_fc/b"])
        hidden = 0.5 * hidden * (1 + np.tanh(np.sqrt(2 / np.pi) * (hidden + 0.044715 * hidden ** 3)))
        x = x + dense(hidden, p[q_ + "mlp/c_proj/w"], p[q_ + "mlp/c_proj/b"])
    return norm(x, p["model/ln_f/g"], p["model/ln_f/b"]) @ p["model/wte"].T


def greedy(params, hparams, tokens, length):
    """Greedy continuation by recomputing the whole sequence for every new token."""
    tokens = list(tokens)
    for _ in range(length):
        tokens.append(int(np.argmax(forward(params, hparams, np.array(tokens[-hparams["n_ctx"]:]))[-1])))
    return tokens[-length:]
