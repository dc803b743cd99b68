"""
Byte-level BPE, the tokenizer of GPT-2 (Radford et al. 2019, section 2.2), and the token
pipeline that turns text files into fixed-shape batches for a TPU.

Two halves:
1. `Encoder`: text <-> token ids. `Encoder.load` reads OpenAI's `encoder.json` + `vocab.bpe`
   and then encodes exactly as GPT-2 does; `Encoder.train` learns a new vocabulary the same
   way GPT-2's was learned (OpenAI never released that code), and `save` writes OpenAI's files.
2. The pipeline: `prepare` tokenizes text files into flat uint16 shards (`python data.py`),
   and `dataset` reads them back as a `tf.data.Dataset` of int32 windows [B, n_ctx + 1]
   (B: batch size, n_ctx: the model's context length). `read_meta` reads what `prepare` wrote
   about them (data.json).

Left out: special tokens other than <|endoftext|>, byte-pair dropout, and normalisation of any
kind (GPT-2 has none: every string round-trips through its bytes).
"""
import argparse
import gc
import glob
import heapq
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import sysconfig
import time
import urllib.request
from collections import Counter, defaultdict

import numpy as np
import regex

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet
import tensorflow as tf  # noqa: E402

# GPT-2's split pattern (OpenAI's encoder.py). Text is cut into chunks first and BPE never
# merges across chunk boundaries, so " dog." can never become one token. Reading it piece by
# piece:
#   '(?:[sdmt]|ll|ve|re)      English contractions 's 't 're 've 'm 'll 'd (only lowercase)
#    ?\p{L}+                  a run of letters, with at most one leading space
#    ?\p{N}+                  a run of digits, likewise
#    ?[^\s\p{L}\p{N}]+        a run of punctuation/symbols, likewise
#   \s+(?!\S)                 whitespace, but leave the last space to start the next word
#   \s+                       any remaining whitespace (at the end of the text)
# So in short: words carry their leading space, and spaces otherwise stay together.
# OpenAI spells the contractions 's|'t|'re|'ve|'m|'ll|'d; the grouped form matches the same
# strings (none is a prefix of another) and is faster, as the regex engine tries fewer branches.
GPT2_SPLIT = regex.compile(r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
EOT = "<|endoftext|>"
NO_MERGE = sys.maxsize  # the "rank" of a pair that is not a merge


def bytes_to_unicode():
    """GPT-2's table from each byte 0..255 to a printable unicode character.

    vocab.bpe is a text file with merges written as "a b", so every byte needs a visible
    character that is not a space: the 188 printable Latin-1 bytes map to themselves, and the
    other 68 (control characters, space, ...) are moved to 256, 257, ... in byte order.
    Example: b' ' (32) -> 'Ġ' (256 + 32), b'\\n' (10) -> 'Ċ' (256 + 10), b'a' -> 'a'.
    The order of the returned dict is the order of the 256 byte tokens in encoder.json.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    others = sorted(set(range(256)) - set(table))  # 0..32, 127..160 and 173: 68 bytes
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return table  # int -> str, printable bytes first


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_string(token_bytes):
    """The printable form of a token, as written in encoder.json: b' the' -> 'Ġthe'."""
    return "".join(BYTE_TO_CHAR[b] for b in token_bytes)


class Encoder:
    """A byte-level BPE vocabulary: 256 byte tokens, merged pairs, and <|endoftext|>."""

    def __init__(self, token_bytes, merges, eot):
        self.token_bytes = token_bytes  # list: id -> bytes, e.g. [b'!', b'"', ...]
        self.merges = merges  # (int, int) -> (rank, int): pair -> its rank and the merged id
        self.ranks = {pair: rank for pair, (rank, _) in merges.items()}  # (int, int) -> rank
        self.token_ids = {t: i for i, t in enumerate(token_bytes) if i != eot}  # bytes -> id
        self.eot = eot  # id of <|endoftext|>
        self.n_vocab = len(token_bytes)
        # raw byte value -> its token id, as a bytes.translate table: the ids of the 256 byte
        # tokens are 0..255 too (in GPT-2's order, not byte order), so one C call maps a chunk
        self.byte_ids = bytes(self.token_ids[bytes([b])] for b in range(256))
        self.cache = {}  # text chunk -> list of ids; most words recur, so this is the speed-up

    # ---- encoding and decoding ----------------------------------------------------------

    def bpe(self, chunk, verbose=False):
        """Encodes one chunk (a piece of GPT2_SPLIT) by merging pairs in order of rank.

        Like GPT-2: start from the bytes, find the adjacent pair that was learned earliest
        (lowest rank) and merge it; repeat until no adjacent pair is a merge. Merging one
        occurrence at a time is the same as merging all of them at once: a pair that contains
        the new token was learned later, so the next lowest rank is the same pair again.
        With verbose=True it prints each step, e.g. for ' lower' in GPT-2's vocabulary:
        [' ', 'l', 'o', 'w', 'er'] -> [' l', 'o', 'w', 'er'] -> ... -> [' lower'].
        """
        raw = chunk.encode("utf-8")
        if raw in self.token_ids and not verbose:
            return [self.token_ids[raw]]  # the chunk is one token (" the"): tiktoken's shortcut too
        ids = list(raw.translate(self.byte_ids))  # each byte's token id
        pair_ranks = [self.ranks.get(pair, NO_MERGE) for pair in zip(ids, ids[1:])]  # [i]: (ids[i], ids[i+1])
        while pair_ranks and (rank := min(pair_ranks)) != NO_MERGE:  # until no adjacent pair is a merge
            i = pair_ranks.index(rank)  # its leftmost occurrence
            ids[i:i + 2] = [self.merges[ids[i], ids[i + 1]][1]]
            del pair_ranks[i]
            for j in range(max(i - 1, 0), min(i + 1, len(ids) - 1)):  # only the pairs next to the new token change
                pair_ranks[j] = self.ranks.get((ids[j], ids[j + 1]), NO_MERGE)
            if verbose:
                print([self.token_bytes[t].decode("utf-8", "replace") for t in ids])
        return ids

    def encode(self, text):
        """str -> list of ids. <|endoftext|> in the text is encoded as ordinary text."""
        chunks = GPT2_SPLIT.findall(text)
        if len(self.cache) > 1_000_000:  # bound the memory on corpora of billions of words
            self.cache.clear()
        for chunk in set(chunks).difference(self.cache):  # run BPE once per new chunk
            self.cache[chunk] = self.bpe(chunk)
        return [i for chunk in chunks for i in self.cache[chunk]]

    def decode(self, ids):
        """list of ids -> str. A cut inside a multi-byte character becomes U+FFFD, as in GPT-2."""
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")

    # ---- OpenAI's file format -----------------------------------------------------------

    @classmethod
    def load(cls, path):
        """Reads OpenAI's encoder.json (token string -> id) and vocab.bpe (merges, by rank)."""
        try:
            with tf.io.gfile.GFile(os.path.join(path, "encoder.json")) as f:
                encoder = json.load(f)  # str -> int, e.g. {"!": 0, ..., "Ġthe": 262, ...}
            with tf.io.gfile.GFile(os.path.join(path, "vocab.bpe")) as f:
                # "#version: 0.2", then one merge "a b" a line, by rank, and a final newline
                pairs = [line.split(" ") for line in f.read().split("\n")[1:] if line]
            if len(pairs) != len(encoder) - 257:  # GPT-2: 50,000 merges, 50,257 ids
                raise ValueError(f"{len(pairs)} merges in vocab.bpe; {len(encoder)} ids need {len(encoder) - 257}")
            decoder = {i: s for s, i in encoder.items()}  # int -> str
            strings = [decoder[i] for i in range(len(encoder))]  # a KeyError if the ids are not 0..n-1
            token_bytes = [EOT.encode() if s == EOT else bytes(CHAR_TO_BYTE[c] for c in s) for s in strings]
            merges = {(encoder[a], encoder[b]): (rank, encoder[a + b]) for rank, (a, b) in enumerate(pairs)}
            return cls(token_bytes, merges, encoder[EOT])  # a KeyError if <|endoftext|> is missing
        except tf.errors.NotFoundError:
            raise ValueError(f"no encoder.json or no vocab.bpe in {path} (a vocabulary is both files)") from None
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ValueError(f"malformed encoder.json/vocab.bpe in {path}: {type(e).__name__} {e}") from None

    def save(self, path):
        """Writes encoder.json and vocab.bpe, loadable by OpenAI's encoder.py and by tiktoken."""
        tf.io.gfile.makedirs(path)
        encoder = {token_string(t) if i != self.eot else EOT: i for i, t in enumerate(self.token_bytes)}
        by_rank = sorted(self.merges.items(), key=lambda item: item[1][0])
        lines = [f"{token_string(self.token_bytes[a])} {token_string(self.token_bytes[b])}" for (a, b), _ in by_rank]
        with tf.io.gfile.GFile(os.path.join(path, "encoder.json"), "w") as f:
            json.dump(encoder, f, ensure_ascii=False)
        with tf.io.gfile.GFile(os.path.join(path, "vocab.bpe"), "w") as f:
            f.write("#version: 0.2\n" + "".join(line + "\n" for line in lines))

    # ---- learning a vocabulary ----------------------------------------------------------

    @classmethod
    def train(cls, texts, vocab_size, verbose=False):
        """Learns vocab_size - 257 merges from an iterable of strings (GPT-2: 50,000 merges).

        1. Split every text with GPT2_SPLIT and count the unique chunks: " the" x 51,232, ...
           Only unique chunks are kept (as lists of byte ids), each with its count.
        2. Count adjacent pairs over the chunks, weighted by chunk count.
        3. Merge the most frequent pair into a new token, everywhere it occurs, and update only
           the counts of the chunks that contained it. Repeat.
        Ties go to the pair of smallest ids (the older tokens), so training is deterministic.

        Subtle: two different pairs can spell the same bytes (' t' + 'he' and ' th' + 'e' are
        both ' the'), but encoder.json maps each string to one id and tiktoken ranks tokens by
        their bytes. So a pair whose bytes already are a token is never merged: every token
        has one spelling, and every saved vocabulary loads in OpenAI's code and in tiktoken.
        """
        if vocab_size < 257:
            raise ValueError(f"vocab_size must be at least 257 (256 bytes + {EOT}), got {vocab_size}")
        chunks = Counter(chunk for text in texts for chunk in GPT2_SPLIT.findall(text))  # str -> count
        if not chunks:
            raise ValueError("cannot train a vocabulary on an empty corpus")
        token_bytes = [bytes([b]) for b in BYTE_TO_CHAR]  # the 256 byte tokens, GPT-2's order
        byte_ids = {t[0]: i for i, t in enumerate(token_bytes)}
        words = [[byte_ids[b] for b in chunk.encode("utf-8")] for chunk in chunks]  # the chunks as ids
        counts = list(chunks.values())  # counts[w]: how often words[w] occurs

        pair_counts = defaultdict(int)  # (int, int) -> weighted count over all words
        where = defaultdict(set)  # (int, int) -> indices of the words that contain it (or did)
        changed = set()  # the pairs whose counts changed since the heap last saw them

        def count_pairs(w, sign):  # counts the pairs of words[w] in (sign=1) or out (sign=-1)
            for pair in zip(words[w], words[w][1:]):
                pair_counts[pair] += sign * counts[w]
                where[pair].add(w)
                changed.add(pair)

        for w in range(len(words)):
            count_pairs(w, 1)
        # A max-heap of (-count, pair). Counts change as we merge; rather than updating entries
        # in place, push the new count and skip stale entries when they surface.
        heap = []
        known = set(token_bytes)  # the byte strings that already are tokens
        merges = {}  # (int, int) -> (rank, new id)
        n_merges = vocab_size - 257
        while len(merges) < n_merges:
            for pair in changed:
                if pair_counts[pair] > 0:
                    heapq.heappush(heap, (-pair_counts[pair], pair))
            changed.clear()
            if not heap:
                break  # no pair is left to merge
            neg_count, pair = heapq.heappop(heap)
            if pair_counts[pair] != -neg_count:
                continue  # stale entry: this pair's count changed since it was pushed
            new_bytes = token_bytes[pair[0]] + token_bytes[pair[1]]
            if new_bytes in known:
                del pair_counts[pair]  # never merge it (see "subtle" above)
                continue
            new_id = len(token_bytes)
            merges[pair] = (len(merges), new_id)
            token_bytes.append(new_bytes)
            known.add(new_bytes)
            for w in where.pop(pair):
                if pair in zip(words[w], words[w][1:]):  # `where` can be stale: a merge took these ids
                    count_pairs(w, -1)  # out with the word's old pairs ...
                    words[w] = merge_pair(words[w], pair, new_id)
                    count_pairs(w, 1)  # ... and in with its new ones
            if verbose:
                print(f"merge {len(merges):5d}/{n_merges}: {token_bytes[pair[0]]!r} + {token_bytes[pair[1]]!r}"
                      f" -> {new_bytes!r} ({-neg_count} times)")
            else:
                progress(f"training BPE: {len(merges)}/{n_merges} merges", done=len(merges) == n_merges)
        if len(merges) < n_merges:
            raise ValueError(f"the corpus has only {len(merges)} merges, too few for vocab_size {vocab_size}")
        token_bytes.append(EOT.encode())  # <|endoftext|> is the last id, as in GPT-2 (50256)
        return cls(token_bytes, merges, len(token_bytes) - 1)


def merge_pair(ids, pair, new_id):
    """Replaces every occurrence of pair in ids, left to right: [1, 2, 3, 1, 2], (1, 2), 9 -> [9, 3, 9]."""
    out, i = [], 0
    while i < len(ids):
        match = ids[i] == pair[0] and i + 1 < len(ids) and ids[i + 1] == pair[1]
        out.append(new_id if match else ids[i])
        i += 2 if match else 1  # a match consumes both ids: [1, 1, 1], (1, 1) -> [9, 1]
    return out


_last_progress = [0.0]  # when progress() last printed


def progress(message, done=False):
    """A status line on stderr, at most one a second; rewritten in place on a terminal."""
    if not done and time.time() - _last_progress[0] < 1:
        return
    _last_progress[0] = time.time()
    end = "\r" if sys.stderr.isatty() and not done else "\n"
    print(f"{message:<78}", end=end, file=sys.stderr, flush=True)


# ---- corpora ------------------------------------------------------------------------------

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def corpus_files(source):
    """A named corpus or a glob -> sorted list of text files.

    'stdlib': the Python standard library's own .py files, found from the running
              interpreter (about 1,800 files, 30 MB): on every machine, no network needed.
    'shakespeare': tiny-shakespeare (1 MB), downloaded once into ~/.cache/gpt2-tf.
    anything else: a glob such as 'texts/*.txt' or 'gs://bucket/owt/*.txt'.
    """
    if source == "stdlib":
        pattern = os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py")
        files = [f for f in glob.glob(pattern, recursive=True) if "-packages" not in f]  # not site-/dist-packages
    elif source == "shakespeare":
        files = [download(SHAKESPEARE_URL, os.path.expanduser("~/.cache/gpt2-tf/shakespeare.txt"))]
    else:
        files = tf.io.gfile.glob(source)
    if not files:
        raise ValueError(f"no files match {source!r}")
    return sorted(files)


def download(url, path):
    """Fetches url to path once (a later call finds the file there); one line if offline."""
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path + ".part", "wb") as f:
            total = int(response.headers.get("Content-Length", 0))  # bytes
            while chunk := response.read(1 << 20):
                f.write(chunk)
                progress(f"downloading {os.path.basename(path)}: {f.tell() / 1e6:.0f}/{total / 1e6:.0f} MB")
    except OSError as e:
        raise ValueError(f"could not download {url} (offline?): {e}") from None
    os.replace(path + ".part", path)  # only a complete file gets its name
    return path


def read_text(path):
    """A file's text; bytes that are not UTF-8 become U+FFFD, with a one-line warning."""
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        print(f"warning: {path} is not valid UTF-8; bad bytes replaced by U+FFFD", file=sys.stderr)
        return raw.decode("utf-8", errors="replace")


# ---- text files -> token shards -------------------------------------------------------------
# A shard is a flat file of little-endian uint16 token ids, nothing else: np.fromfile shows it,
# and tf.data reads it as fixed-length records, local or from gs://. uint16 holds ids below
# 65,536 (GPT-2 has 50,257).
# Documents are joined with <|endoftext|> after each. data.json, written last, lists the
# shards and marks the directory complete.

SHARD_TOKENS = 50_000_000  # at most 100 MB per shard
MIN_SHARDS = 16  # per split, where it has as many documents: dataset() reads 16 shards side by side
_worker_encoder = None  # the Encoder in each worker process, set by _init_worker


def read_meta(path):
    """What prepare() wrote about a directory (its data.json), or None if it has none."""
    file = os.path.join(path, "data.json")
    if not tf.io.gfile.exists(file):
        return None
    with tf.io.gfile.GFile(file) as f:
        return json.load(f)  # {"n_vocab": 50257, "train_tokens": ..., "train_shards": [...], ...}


def split_corpus(files, val_fraction, seed=0):
    """The corpus as documents of each split, {"train": [...], "val": [...]}, each document a job
    (path, begin, end): the text of path from fraction begin to fraction end.

    Held out are whole files, about val_fraction of them and at least one, a seeded sample (the
    same corpus, the same split). One file alone (tiny-shakespeare) is cut instead: its last
    val_fraction, but at least 10% (0.5% of a play is a few windows), is held out. Worked examples:
    ['a', 'b', 'c'], 0.3 -> {'train': [('a', 0, 1), ('c', 0, 1)], 'val': [('b', 0, 1)]}
    ['play'], 0.005 -> {'train': [('play', 0, 0.9)], 'val': [('play', 0.9, 1)]}
    """
    if val_fraction == 0:
        return {"train": [(f, 0, 1) for f in files], "val": []}
    if len(files) == 1:
        cut = 1 - max(val_fraction, 0.1)
        return {"train": [(files[0], 0, cut)], "val": [(files[0], cut, 1)]}
    val = set(random.Random(seed).sample(files, max(1, round(val_fraction * len(files)))))
    return {"train": [(f, 0, 1) for f in files if f not in val], "val": [(f, 0, 1) for f in files if f in val]}


def read_job(job):
    """A job's text: characters begin * len to end * len of its file (a cut may split a word)."""
    path, begin, end = job
    text = read_text(path)
    return text[int(begin * len(text)):int(end * len(text))]


def _init_worker(encoder):
    global _worker_encoder
    _worker_encoder = encoder
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends the pool, quietly
    # The pool ends its workers with SIGTERM: not with a handler inherited from the parent (train.py's
    # raises KeyboardInterrupt, and each worker printed its traceback at every pool's end)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _encode_job(job):
    """In a worker: a job -> its tokens, then <|endoftext|>; uint16 to send back half of int32's bytes."""
    return np.array(_worker_encoder.encode(read_job(job)) + [_worker_encoder.eot], dtype=np.uint16)


def write_shards(out, split, documents, n_documents, n_shards):
    """Writes n_documents token arrays, document i into shard i % n_shards (OUT/{split}_000000.bin,
    _000001.bin, ...), and returns what data.json says of them: {split}_tokens, {split}_documents,
    {split}_shards. The documents arrive shuffled (prepare), so each shard is mixed text from its start."""
    shards = [f"{split}_{i:06d}.bin" for i in range(n_shards)]
    files, n_tokens = [tf.io.gfile.GFile(os.path.join(out, name), "wb") for name in shards], 0
    try:
        for i, tokens in enumerate(documents):
            files[i % n_shards].write(tokens.astype("<u2").tobytes())
            n_tokens += len(tokens)
            progress(f"tokenizing {split}: {i + 1}/{n_documents} files, {n_tokens:,} tokens", done=i + 1 == n_documents)
    finally:
        for f in files:
            f.close()
    return {f"{split}_tokens": n_tokens, f"{split}_documents": n_documents, f"{split}_shards": shards}


def shard_count(jobs):
    """Shards for a split: at least MIN_SHARDS where it has as many documents, and enough that none
    holds more than SHARD_TOKENS: a token is at least one byte, so b bytes of text are at most b tokens."""
    most_tokens = sum((end - begin) * tf.io.gfile.stat(path).length + 1 for path, begin, end in jobs)  # + <|endoftext|>
    return max(min(MIN_SHARDS, len(jobs)), math.ceil(most_tokens / SHARD_TOKENS))


def prepare(source, out, vocab=4096, val_fraction=0.005, processes=None, vocab_train_bytes=20_000_000, seed=0):
    """Tokenizes a corpus into OUT: encoder files, uint16 shards and data.json. Returns data.json's
    contents. Every argument is checked before the work (a ValueError, one line).

    vocab: a directory holding encoder.json/vocab.bpe, or a size N to train a vocabulary on
    the training documents, whole, until they hold vocab_train_bytes characters.
    seed: the documents' order in the shards (data.json's data_seed): the same seed, the same shards.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"--val_fraction {val_fraction}: must be in [0, 1)")
    if processes is not None and processes < 1:
        raise ValueError(f"--processes {processes}: must be at least 1")
    # OUT, and what is in it, is never an input (--output inside --input's glob): paths as folders, 'a' -> '/cwd/a/'
    out_folder = os.path.join(os.path.abspath(out), "")
    files = [f for f in corpus_files(source) if not os.path.join(os.path.abspath(f), "").startswith(out_folder)]
    splits = split_corpus(files, val_fraction)
    for jobs in splits.values():  # sorted files are local text (one package, one play): shuffled, a shard is not
        random.Random(seed).shuffle(jobs)
    # 1. The vocabulary: GPT-2's (or any saved one), or learned here from the training split only,
    #    so that the held-out split stays unseen. A sample of 20 MB is plenty for BPE.
    if str(vocab).isdigit():
        texts = []
        for job in splits["train"]:
            if sum(map(len, texts)) < vocab_train_bytes:
                texts.append(read_job(job))
        encoder = Encoder.train(texts, int(vocab))
    else:
        encoder = Encoder.load(vocab)
    if encoder.n_vocab > 65536:
        raise ValueError(f"uint16 shards hold ids below 65,536; this vocabulary has {encoder.n_vocab}")
    meta_file = os.path.join(out, "data.json")
    if tf.io.gfile.exists(meta_file):
        tf.io.gfile.remove(meta_file)  # the directory is incomplete until the end
    encoder.save(out)

    # 2. Tokenize every job in worker processes (BPE is pure Python: one core each), and write
    #    each split's documents, in their shuffled order, to its shards.
    meta = {"source": source, "vocab": str(vocab), "n_vocab": encoder.n_vocab, "eot": encoder.eot, "data_seed": seed}
    context = multiprocessing.get_context("fork")  # workers inherit the encoder, no pickling
    gc.freeze()  # a worker must never collect what it inherits: freeing TensorFlow's objects kills a forked process
    with context.Pool(processes or os.cpu_count(), initializer=_init_worker, initargs=(encoder,)) as pool:
        gc.unfreeze()
        for split, jobs in splits.items():
            documents = pool.imap(_encode_job, jobs, chunksize=4)
            meta.update(write_shards(out, split, documents, len(jobs), shard_count(jobs)))
    if meta["train_tokens"] <= meta["train_documents"]:  # nothing but each document's <|endoftext|>
        raise ValueError(f"{source!r} holds no text in its training files")
    # 3. data.json last: its presence says every shard above is complete.
    with tf.io.gfile.GFile(meta_file, "w") as f:
        json.dump(meta, f, indent=1)
    return meta


# ---- token shards -> tf.data -----------------------------------------------------------------

def dataset(path, split, batch_size, n_ctx, seed=0, shuffle_buffer=1024, reshuffle=True):
    """A repeating tf.data.Dataset of int32 windows [batch_size, n_ctx + 1] from prepared shards.

    Each window is n_ctx + 1 consecutive tokens: inputs window[:, :-1], targets window[:, 1:].
    Windows do not overlap, so one token pair in n_ctx + 1 is never a target (a small loss that
    keeps reading sequential). Shapes are static (drop_remainder), as TPUs need.
    batch_size is the global batch: train.py cuts it into the replicas' rows on the host.
    To resume exactly, save the iterator: tf.train.Checkpoint(data=iter(ds)) holds its position,
    including the shuffle buffer.
    reshuffle=True (training): every epoch, and every new iterator, reads in a new order.
    reshuffle=False (evaluation): one order, the same for every epoch and every new iterator, so
    each evaluation, with a fresh iterator, scores the same held-out batches.
    """
    meta = read_meta(path)
    if meta is None:
        raise ValueError(f"{path} has no data.json: prepare it first (python data.py --output {path})")
    if "data_seed" not in meta:  # documents in file order: a shard read from its start is one package, one play
        raise ValueError(f"{path} was prepared by an older data.py, in file order: prepare it again (python data.py "
                         f"--input {meta['source']} --output {path} --vocab {meta['vocab']})")
    files = [os.path.join(path, name) for name in meta[f"{split}_shards"]]
    window_bytes = 2 * (n_ctx + 1)  # n_ctx + 1 tokens of 2 bytes (uint16)
    sizes = [tf.io.gfile.stat(f).length for f in files]
    if sum(sizes) != 2 * meta[f"{split}_tokens"]:  # a shard cut off, or changed, since prepare wrote data.json
        raise ValueError(f"the {split} shards of {path} hold {sum(sizes) // 2:,} tokens, not data.json's "
                         f"{meta[f'{split}_tokens']:,}: prepare the data again")
    # Training needs a batch of distinct windows; a small held-out split may repeat within one
    needed = batch_size if split == "train" else 1
    if sum(size // window_bytes for size in sizes) < needed:
        raise ValueError(f"the {split} split of {path} has {meta[f'{split}_tokens']:,} tokens, "
                         f"too few for {needed} window(s) of {n_ctx + 1} tokens")
    # Each shard is a shuffled run of documents, so 16 shards read side by side, from their start,
    # a window from each in turn, are mixed text, and every byte is read once (a seek-free stream,
    # as gs:// likes). FixedLengthRecordDataset leaves out the `footer`, a shard's last partial
    # window, which it would otherwise refuse (a file must be whole records). The epochs do not
    # overlap: repeat() comes after the interleave, and each epoch reads the shards in a new order.
    footers = np.array([size % window_bytes for size in sizes], np.int64)
    ds = tf.data.Dataset.from_tensor_slices((files, footers)).shuffle(len(files), seed, reshuffle)
    ds = ds.interleave(lambda file, footer: tf.data.FixedLengthRecordDataset(file, window_bytes, footer_bytes=footer),
                       cycle_length=min(MIN_SHARDS, len(files)), block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).repeat()
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=reshuffle)  # and of nearby windows
    ds = ds.map(lambda record: tf.reshape(tf.cast(tf.io.decode_raw(record, tf.uint16), tf.int32), [n_ctx + 1]))
    ds = ds.batch(batch_size, drop_remainder=True)  # (B, n_ctx + 1)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---- command line ------------------------------------------------------------------------------

def main(argv=None):
    """python data.py: prepare a corpus for train.py (which also calls prepare() itself when
    --data is not a prepared directory). Prints data.json's contents when done."""
    parser = argparse.ArgumentParser(description="Tokenize text files into uint16 token shards for training.")
    parser.add_argument("--input", default="stdlib", help="'stdlib' (offline), 'shakespeare' or a glob")
    parser.add_argument("--output", default="out/data", help="directory for shards, vocabulary, data.json")
    parser.add_argument("--vocab", default="4096", help="a size N to train a BPE, or GPT-2's files' directory")
    parser.add_argument("--val_fraction", type=float, default=0.005,
                        help="share of files held out (one file: its end, at least 10%%)")
    parser.add_argument("--processes", type=int, default=None, help="tokenizer processes (default: one per core)")
    parser.add_argument("--seed", type=int, default=0, help="the documents' order in the shards (data.json: data_seed)")
    args = parser.parse_args(argv)
    try:  # prepare checks every argument before its work: a mistake costs one line, not a traceback
        meta = prepare(args.input, args.output, args.vocab, args.val_fraction, args.processes, seed=args.seed)
    except (ValueError, OSError, tf.errors.OpError) as e:  # a mistake, or a storage fault (say, a full disk)
        sys.exit(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    except KeyboardInterrupt:
        sys.exit(130)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
