"""
Byte-level BPE, the tokenizer of GPT-2 (Radford et al. 2019, section 2.2), and the token
pipeline that turns text files into fixed-shape batches for a TPU.

Two halves:
1. `Encoder`: text <-> token ids. `Encoder.load` reads OpenAI's `encoder.json` + `vocab.bpe`
   and then encodes exactly as GPT-2 does; `Encoder.train` learns a new vocabulary the same
   way GPT-2's was learned (OpenAI never released that code), and `save` writes OpenAI's files.
2. The pipeline: `prepare` tokenizes text files into flat uint16 shards (`python data.py`),
   and `dataset` reads them back as a `tf.data.Dataset` of int32 windows [B, n_ctx + 1].

Left out: special tokens other than <|endoftext|>, byte-pair dropout, and normalisation of any
kind (GPT-2 has none: every string round-trips through its bytes).
"""
import argparse
import glob
import heapq
import itertools
import json
import multiprocessing
import os
import random
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
# strings (none is a prefix of another) and runs about 10% faster.
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
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
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
        self.merged = {rank: new_id for rank, new_id in merges.values()}  # rank -> merged id
        self.token_ids = {t: i for i, t in enumerate(token_bytes) if i != eot}  # bytes -> id
        self.eot = eot  # id of <|endoftext|>
        self.n_vocab = len(token_bytes)
        ids = {t: i for i, t in enumerate(token_bytes[:256])}
        # raw byte value -> its token id, as a bytes.translate table: the ids of the 256 byte
        # tokens are 0..255 too, so one C call maps a whole chunk
        self.byte_ids = bytes(ids[bytes([b])] for b in range(256))
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
        ranks, merged = self.ranks, self.merged
        pair_ranks = [ranks.get(pair, NO_MERGE) for pair in zip(ids, ids[1:])]  # pair_ranks[i]: (ids[i], ids[i+1])
        while pair_ranks:
            rank = min(pair_ranks)
            if rank == NO_MERGE:
                break  # no adjacent pair was ever merged: done
            i = pair_ranks.index(rank)  # its leftmost occurrence
            ids[i:i + 2] = [merged[rank]]
            del pair_ranks[i]
            if i > 0:  # only the pairs next to the new token change
                pair_ranks[i - 1] = ranks.get((ids[i - 1], ids[i]), NO_MERGE)
            if i < len(ids) - 1:
                pair_ranks[i] = ranks.get((ids[i], ids[i + 1]), NO_MERGE)
            if verbose:
                print([self.token_bytes[t].decode("utf-8", "replace") for t in ids])
        return ids

    def encode(self, text):
        """str -> list of ids. <|endoftext|> in the text is encoded as ordinary text."""
        chunks = GPT2_SPLIT.findall(text)
        if len(self.cache) > 1_000_000:  # bound the memory on corpora of billions of words
            self.cache.clear()
        for chunk in set(chunks):  # run BPE once per new chunk; most words recur
            if chunk not in self.cache:
                self.cache[chunk] = self.bpe(chunk)
        return list(itertools.chain.from_iterable(map(self.cache.__getitem__, chunks)))

    def decode(self, ids):
        """list of ids -> str. A cut inside a multi-byte character becomes U+FFFD, as in GPT-2."""
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")

    # ---- OpenAI's file format -----------------------------------------------------------

    @classmethod
    def load(cls, path):
        """Reads OpenAI's encoder.json (token string -> id) and vocab.bpe (merges, by rank)."""
        files = {name: os.path.join(path, name) for name in ("encoder.json", "vocab.bpe")}
        for name, file in files.items():
            if not tf.io.gfile.exists(file):
                raise ValueError(f"no {name} in {path} (a vocabulary is encoder.json + vocab.bpe)")
        try:
            with tf.io.gfile.GFile(files["encoder.json"], "r") as f:
                encoder = json.load(f)  # str -> int, e.g. {"!": 0, ..., "Ġthe": 262, ...}
            with tf.io.gfile.GFile(files["vocab.bpe"], "r") as f:
                lines = f.read().split("\n")
            # First line is "#version: 0.2", the file ends with a newline.
            merges = [tuple(line.split(" ")) for line in lines[1:] if line]
            token_bytes = [None] * len(encoder)
            for s, i in encoder.items():
                token_bytes[i] = EOT.encode() if s == EOT else bytes(CHAR_TO_BYTE[c] for c in s)
            ranks = {(encoder[a], encoder[b]): (rank, encoder[a + b]) for rank, (a, b) in enumerate(merges)}
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ValueError(f"malformed encoder.json/vocab.bpe in {path}: {type(e).__name__} {e}") from None
        if None in token_bytes or EOT not in encoder:
            raise ValueError(f"malformed encoder.json in {path}: ids are not 0..n-1 or {EOT} is missing")
        return cls(token_bytes, ranks, encoder[EOT])

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
        chunks = Counter()
        for text in texts:
            chunks.update(GPT2_SPLIT.findall(text))
        if not chunks:
            raise ValueError("cannot train a vocabulary on an empty corpus")
        token_bytes = [bytes([b]) for b in BYTE_TO_CHAR]  # the 256 byte tokens, GPT-2's order
        byte_ids = {t[0]: i for i, t in enumerate(token_bytes)}
        words = [[byte_ids[b] for b in chunk.encode("utf-8")] for chunk in chunks]
        counts = list(chunks.values())

        pair_counts = defaultdict(int)  # (int, int) -> weighted count over all words
        where = defaultdict(set)  # (int, int) -> indices of the words that contain it
        for w, (word, count) in enumerate(zip(words, counts)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += count
                where[pair].add(w)
        # A max-heap of (-count, pair). Counts change as we merge; rather than updating entries
        # in place, push the new count and skip stale entries when they surface.
        heap = [(-c, pair) for pair, c in pair_counts.items()]
        heapq.heapify(heap)
        known = set(token_bytes)  # the byte strings that already are tokens
        merges = {}  # (int, int) -> (rank, new id)
        n_merges = vocab_size - 257
        start = time.time()
        while len(merges) < n_merges and heap:
            neg_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -neg_count or neg_count == 0:
                continue  # stale entry: this pair's count changed since it was pushed
            new_bytes = token_bytes[pair[0]] + token_bytes[pair[1]]
            if new_bytes in known:
                del pair_counts[pair]  # never merge it (see "subtle" above)
                continue
            new_id = len(token_bytes)
            merges[pair] = (len(merges), new_id)
            token_bytes.append(new_bytes)
            known.add(new_bytes)
            changed = set()
            for w in where.pop(pair):
                word, count = words[w], counts[w]
                if pair not in zip(word, word[1:]):
                    continue  # `where` can be stale too: an earlier merge used these bytes
                for p in zip(word, word[1:]):  # remove the word's old pairs ...
                    pair_counts[p] -= count
                    changed.add(p)
                word = words[w] = merge_pair(word, pair, new_id)
                for p in zip(word, word[1:]):  # ... and add its new ones
                    pair_counts[p] += count
                    where[p].add(w)
                    changed.add(p)
            for p in changed:
                if pair_counts.get(p, 0) > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
            if verbose:
                print(f"merge {len(merges):5d}/{n_merges}: {token_bytes[pair[0]]!r} + {token_bytes[pair[1]]!r}"
                      f" -> {new_bytes!r} ({-neg_count} times)")
            elif len(merges) % 500 == 0 or len(merges) == n_merges:
                progress(f"training BPE: {len(merges)}/{n_merges} merges, {time.time() - start:.1f}s",
                         done=len(merges) == n_merges)
        if len(merges) < n_merges:
            raise ValueError(f"the corpus has only {len(merges)} distinct merges, too few for "
                             f"vocab_size {vocab_size}; use a smaller vocabulary or more text")
        token_bytes.append(EOT.encode())  # <|endoftext|> is the last id, as in GPT-2 (50256)
        return cls(token_bytes, merges, len(token_bytes) - 1)


def merge_pair(ids, pair, new_id):
    """Replaces every occurrence of pair in ids, left to right: [1, 2, 3, 1, 2], (1, 2), 9 -> [9, 3, 9]."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
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
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "gpt2-tf")


def corpus_files(source):
    """A named corpus or a glob -> sorted list of text files.

    'stdlib': the Python standard library's own .py files, found from the running
              interpreter (about 1,800 files, 30 MB): on every machine, no network needed.
    'shakespeare': tiny-shakespeare (1 MB), downloaded once into ~/.cache/gpt2-tf.
    anything else: a glob such as 'texts/*.txt' or 'gs://bucket/owt/*.txt'.
    """
    if source == "stdlib":
        root = sysconfig.get_paths()["stdlib"]
        files = [f for f in glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
                 if "site-packages" not in f and "dist-packages" not in f]
    elif source == "shakespeare":
        files = [download(SHAKESPEARE_URL, os.path.join(CACHE_DIR, "shakespeare.txt"))]
    else:
        files = tf.io.gfile.glob(source)
    if not files:
        raise ValueError(f"no files match {source!r}")
    return sorted(files)


def download(url, path):
    """Fetches url to path once; later calls find the file. Raises a clear error offline."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print(f"downloading {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(path + ".part", "wb") as f:
                f.write(response.read())
        except OSError as e:
            raise ValueError(f"could not download {url} (no network?): {e}") from None
        os.replace(path + ".part", path)  # a half-finished download never looks finished
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
# and tf.data reads it as fixed-length records, sequentially, local or from gs://, which is the
# access pattern TPU hosts are fast at. uint16 holds ids below 65,536 (GPT-2 has 50,257).
# Documents are joined with <|endoftext|> between them. data.json, written last, lists the
# shards and marks the directory complete.

SHARD_TOKENS = 50_000_000  # 100 MB per shard
_worker_encoder = None  # the Encoder in each worker process, set by _init_worker


def _init_worker(encoder):
    global _worker_encoder
    _worker_encoder = encoder


def _encode_file(path):
    """In a worker: one file -> its tokens, as uint16 (half the memory of int32 to send back)."""
    return np.array(_worker_encoder.encode(read_text(path)), dtype=np.uint16)


def split_documents(files, val_fraction, seed=0):
    """Chooses held-out documents (whole files): about val_fraction of them, at least one.

    One file alone (tiny-shakespeare) cannot be split by documents: it all goes to train here,
    and prepare() holds out its last val_fraction of tokens instead.
    """
    if val_fraction <= 0 or len(files) == 1:
        return files, []
    # A seeded sample: the same corpus always gives the same split, run after run.
    val = set(random.Random(seed).sample(files, max(1, round(val_fraction * len(files)))))
    return [f for f in files if f not in val], [f for f in files if f in val]


class ShardWriter:
    """Appends tokens to OUT/{split}_000000.bin, _000001.bin, ..., SHARD_TOKENS each.

    Documents are kept in memory until a shard is full, then written in one piece, so a shard
    on gs:// is one upload. A document may span two shards; the reader does not mind, since it
    reads windows of tokens, not documents.
    """

    def __init__(self, out, split, eot):
        self.out, self.split, self.eot = out, split, eot
        self.shards, self.buffer, self.tokens, self.documents = [], [], 0, 0

    def add(self, tokens):
        self.buffer.append(tokens)
        self.buffer.append(np.array([self.eot], dtype=np.uint16))  # <|endoftext|> after each document
        self.tokens += len(tokens) + 1
        self.documents += 1
        if sum(len(b) for b in self.buffer) >= SHARD_TOKENS:
            self.flush()

    def flush(self):
        if not self.buffer:
            return
        name = f"{self.split}_{len(self.shards):06d}.bin"
        with tf.io.gfile.GFile(os.path.join(self.out, name), "wb") as f:
            f.write(np.concatenate(self.buffer).astype("<u2").tobytes())
        self.shards.append(name)
        self.buffer = []


def prepare(source, out, vocab=4096, val_fraction=0.005, processes=None, vocab_train_bytes=20_000_000):
    """Tokenizes a corpus into OUT: encoder files, uint16 shards and data.json. Returns the facts.

    vocab: a directory holding encoder.json/vocab.bpe, or a size N to train a vocabulary on
    (up to vocab_train_bytes of) the training documents.
    """
    files = corpus_files(source)
    train_files, val_files = split_documents(files, val_fraction)
    # 1. The vocabulary: GPT-2's (or any saved one), or learned here from the training documents
    #    only, so that the held-out split stays unseen. A sample of 20 MB is plenty for BPE.
    if isinstance(vocab, int) or str(vocab).isdigit():
        texts, size = [], 0
        for path in train_files:
            texts.append(read_text(path))
            size += len(texts[-1])
            if size >= vocab_train_bytes:
                break
        if len(files) == 1 and val_fraction > 0:  # keep the held-out tail out of the vocabulary
            texts[0] = texts[0][: int(len(texts[0]) * (1 - val_fraction))]
        encoder = Encoder.train(texts, int(vocab))
    else:
        encoder = Encoder.load(vocab)
    if encoder.n_vocab > 65536:
        raise ValueError(f"uint16 shards hold ids below 65,536; this vocabulary has {encoder.n_vocab}")
    tf.io.gfile.makedirs(out)
    if tf.io.gfile.exists(os.path.join(out, "data.json")):
        tf.io.gfile.remove(os.path.join(out, "data.json"))  # the directory is incomplete until the end
    encoder.save(out)

    # 2. Tokenize every file in worker processes (BPE is pure Python: one core each) and append
    #    each document's tokens, in file order, to its split's shards.
    writers = {"train": ShardWriter(out, "train", encoder.eot), "val": ShardWriter(out, "val", encoder.eot)}
    jobs = [(path, "train") for path in train_files] + [(path, "val") for path in val_files]
    one_document = len(files) == 1
    start, n_bytes = time.time(), 0
    context = multiprocessing.get_context("fork")  # workers inherit the encoder, no pickling
    with context.Pool(processes or os.cpu_count(), initializer=_init_worker, initargs=(encoder,)) as pool:
        for (path, split), tokens in zip(jobs, pool.imap(_encode_file, [p for p, _ in jobs], chunksize=4)):
            if one_document:  # the single document's tail is the held-out split
                cut = int(len(tokens) * (1 - val_fraction))
                writers["train"].add(tokens[:cut])
                if val_fraction > 0:
                    writers["val"].add(tokens[cut:])
                break
            writers[split].add(tokens)
            n_bytes += tf.io.gfile.stat(path).length if path.startswith("gs://") else os.path.getsize(path)
            done = writers["train"].documents + writers["val"].documents
            progress(f"tokenizing: {done}/{len(jobs)} files, {n_bytes / 1e6:.1f} MB, "
                     f"{n_bytes / 1e6 / (time.time() - start):.1f} MB/s", done=done == len(jobs))
    for writer in writers.values():
        writer.flush()
    # 3. data.json last: its presence says every shard above is complete.
    facts = {"source": source, "n_vocab": encoder.n_vocab, "eot": encoder.eot,
             **{f"{s}_{k}": getattr(w, k) for s, w in writers.items() for k in ("tokens", "documents", "shards")}}
    if facts["train_tokens"] <= 1:
        raise ValueError(f"{source!r} holds no text")
    with tf.io.gfile.GFile(os.path.join(out, "data.json"), "w") as f:
        json.dump(facts, f, indent=1)
    return facts


# ---- token shards -> tf.data -----------------------------------------------------------------

def dataset(path, split, batch_size, n_ctx, seed=0, shuffle_buffer=1024, piece_windows=256,
            reshuffle=True):
    """A repeating tf.data.Dataset of int32 windows [batch_size, n_ctx + 1] from prepared shards.

    Each window is n_ctx + 1 consecutive tokens: inputs window[:, :-1], targets window[:, 1:].
    Windows do not overlap, so one token pair in n_ctx + 1 is never a target (a small loss that
    keeps reading sequential). Shapes are static (drop_remainder), as TPUs need.
    batch_size is the global batch: train.py cuts it into the replicas' rows on the host.
    To resume exactly, save the iterator: tf.train.Checkpoint(data=iter(ds)) holds its position,
    including the shuffle buffer. reshuffle=False gives every new iterator the same order: the
    same held-out batches at every evaluation (with True, runs drew different ones after the first).
    """
    with tf.io.gfile.GFile(os.path.join(path, "data.json")) as f:
        facts = json.load(f)
    files = [os.path.join(path, name) for name in facts[f"{split}_shards"]]
    window_bytes = 2 * (n_ctx + 1)  # uint16
    sizes = [tf.io.gfile.stat(f).length for f in files]
    if sum(size // window_bytes for size in sizes) < batch_size:
        raise ValueError(f"the {split} split of {path} has {facts[f'{split}_tokens']:,} tokens, "
                         f"too few for one batch of {batch_size} x {n_ctx + 1}")
    # Shards are cut into pieces of `piece_windows` windows, and 16 pieces, from anywhere in the
    # corpus, are read at once, a window from each in turn. Text is very local (one file of
    # tables, one long play), so this, not the shuffle buffer, is what mixes the corpus.
    # A piece is a byte range of a shard: FixedLengthRecordDataset skips `header` bytes before
    # it and `footer` bytes after it (the footer also drops the shard's last partial window).
    pieces = []  # (file, header bytes, footer bytes)
    for file, size in zip(files, sizes):
        n_windows = size // window_bytes
        for start in range(0, n_windows, piece_windows):
            end = min(start + piece_windows, n_windows)
            pieces.append((file, start * window_bytes, size - end * window_bytes))
    files, headers, footers = zip(*pieces)
    ds = tf.data.Dataset.from_tensor_slices((list(files), tf.constant(headers, tf.int64), tf.constant(footers, tf.int64)))
    ds = ds.shuffle(len(pieces), seed=seed, reshuffle_each_iteration=reshuffle).repeat()  # each epoch reshuffled, if reshuffle
    ds = ds.interleave(lambda file, header, footer: tf.data.FixedLengthRecordDataset(
        file, window_bytes, header_bytes=header, footer_bytes=footer), cycle_length=16, block_length=1)
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=reshuffle)
    ds = ds.map(lambda record: tf.reshape(tf.cast(tf.io.decode_raw(record, tf.uint16), tf.int32), [n_ctx + 1]))
    ds = ds.batch(batch_size, drop_remainder=True)  # (B, n_ctx + 1)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---- command line ------------------------------------------------------------------------------

def main(argv=None):
    """python data.py: prepare a corpus for train.py (which also calls prepare() itself when
    --data is not a prepared directory). Prints data.json's facts when done."""
    parser = argparse.ArgumentParser(description="Tokenize text files into uint16 token shards for training.")
    parser.add_argument("--input", default="stdlib",
                        help="'stdlib' (offline, default), 'shakespeare' (downloads once), or a glob of text files")
    parser.add_argument("--output", default="out/data", help="directory for shards, encoder files and data.json (local or gs://)")
    parser.add_argument("--vocab", default="4096",
                        help="a directory with encoder.json + vocab.bpe (GPT-2's), or a size N to train a BPE on the input")
    parser.add_argument("--val_fraction", type=float, default=0.005, help="share of documents held out for evaluation")
    parser.add_argument("--processes", type=int, default=None, help="tokenizer processes (default: one per core)")
    args = parser.parse_args(argv)
    if args.vocab.isdigit() and int(args.vocab) < 257:
        parser.error(f"--vocab {args.vocab}: a vocabulary needs at least 257 ids (256 bytes + {EOT})")
    if not 0 <= args.val_fraction < 1:
        parser.error("--val_fraction must be in [0, 1)")
    try:
        facts = prepare(args.input, args.output, args.vocab, args.val_fraction, args.processes)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
