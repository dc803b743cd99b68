"""data.py against tiktoken (GPT-2's tokenizer, in Rust), plus worked examples checkable by hand."""
import json
import random
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

import data
from conftest import tiktoken_from_files

# Inputs that have broken byte-level BPEs before: whitespace runs, contractions, digits,
# emoji with skin tones and zero-width joiners, combining marks, control characters, scripts
# without spaces, lone surrogates are excluded (not valid str for UTF-8).
HARD = [
    "", " ", "  ", "\n", "\n\n\n", " \t \n ", "a", " a", "a ", "Hello world", "Hello  world   ",
    "I'm you're he'll we've they'd it's It'S DON'T", "'s's 's ''", "1234567890 3.14159 -42 1e-9 ١٢٣",
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇸", "e\u0301 n\u0303 Z̤͔ͧ̑̓ä͖̭̈̇", "\x00\x01\x1b[31mred\x7f", "東京都 서울 مرحبا שלום Привет",
    "<|endoftext|>", "a<|endoftext|>b", "   leading and trailing   ", "tabs\t\tand\r\nwindows\r\n",
    "x" * 1000, " ".join(["word"] * 500), "\u2028\u2029\u00a0\u3000 non-breaking", "🤖" * 50,
]


def test_bytes_to_unicode_worked_example():
    table = data.bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("a")] == "a" and table[ord("!")] == "!"
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"  # 256 + 32, 256 + 10
    assert all(c.isprintable() and c != " " for c in table.values())


def test_merge_pair_worked_example():
    assert data.merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert data.merge_pair([1, 1, 1], (1, 1), 9) == [9, 1]  # left to right, no overlaps


def test_split_pattern_pieces():
    assert data.GPT2_SPLIT.findall("Hello world's  3 cats!!\n") == ["Hello", " world", "'s", " ", " 3", " cats", "!!", "\n"]


def test_load_gpt2_vocabulary(gpt2_vocab_dir):
    enc = data.Encoder.load(gpt2_vocab_dir)
    assert enc.n_vocab == 50257 and enc.eot == 50256
    assert enc.encode("Hello world") == [15496, 995]  # GPT-2's well-known ids


def test_matches_tiktoken_on_hard_corpus(gpt2_vocab_dir, tiktoken_gpt2):
    enc = data.Encoder.load(gpt2_vocab_dir)
    for text in HARD:
        assert enc.encode(text) == tiktoken_gpt2.encode_ordinary(text), repr(text)
        assert enc.decode(enc.encode(text)) == text


def test_matches_tiktoken_on_megabytes_of_source(gpt2_vocab_dir, tiktoken_gpt2):
    enc = data.Encoder.load(gpt2_vocab_dir)
    text = "".join(data.read_text(f) for f in data.corpus_files("stdlib")[:400])
    text = text[:2_000_000]
    ids = enc.encode(text)
    assert ids == tiktoken_gpt2.encode_ordinary(text)
    assert enc.decode(ids) == text


def random_string(rng):
    """Random text from many blocks of Unicode, weighted to spaces and apostrophes.

    Subtle: code points that Python's Unicode database (14.0 in Python 3.11) leaves unassigned
    are skipped. Newer Unicode versions made some of them letters, and the `regex` module and
    tiktoken's Rust engine ship different versions, so they split such text differently.
    """
    pieces = [" ", "  ", "'", "'s", "\n", "\t", "a", "Z", "7", "é", "ß", "Ω", "я", "中", "😀", "\u200d", "\ufe0f",
              "\u0301", "\x00", "\x7f", "\U0001F3FD", "\U00010348", "\uffff"]
    out = []
    for _ in range(rng.randint(0, 40)):
        if rng.random() < 0.7:
            out.append(rng.choice(pieces))
        else:  # any assigned code point (see below); surrogates cannot be encoded to UTF-8
            c = chr(rng.randint(0, 0x10FFFF))
            out.append(c if unicodedata.category(c) not in ("Cn", "Cs") else "x")
    return "".join(out)


def test_random_strings_match_tiktoken_and_round_trip(gpt2_vocab_dir, tiktoken_gpt2):
    enc = data.Encoder.load(gpt2_vocab_dir)
    rng = random.Random(0)
    for _ in range(3000):
        text = random_string(rng)
        ids = enc.encode(text)
        assert ids == tiktoken_gpt2.encode_ordinary(text), repr(text)
        assert enc.decode(ids) == text


def test_decode_replaces_invalid_utf8(gpt2_vocab_dir):
    enc = data.Encoder.load(gpt2_vocab_dir)
    ids = enc.encode("😀")  # 4 bytes; GPT-2 spells it with 2 tokens: the first alone is no character
    assert len(ids) > 1 and enc.decode(ids[:1]) == "\ufffd"


def test_train_worked_example():
    # The textbook example "aaabdaaabac": aa (4 times), then ab (3 times, after aa merged
    # left to right: Z a b d Z a b a c), then aa + ab = "aaab" (2 times).
    enc = data.Encoder.train(["aaabdaaabac"], 257 + 3)
    assert enc.token_bytes[256:] == [b"aa", b"ab", b"aaab", b"<|endoftext|>"]
    assert enc.eot == 259 and enc.n_vocab == 260
    assert enc.decode(enc.encode("aaabdaaabac")) == "aaabdaaabac"
    assert len(enc.encode("aaabdaaabac")) == 5  # aaab d aaab a c


def test_train_ties_are_deterministic():
    text = "ab cd ab cd ef"
    first = data.Encoder.train([text], 262).token_bytes
    assert first == data.Encoder.train([text], 262).token_bytes
    # ' a'+'b' ... all pairs in ' ab' and ' cd' occur twice: the smaller ids (older tokens) win
    assert first[256] == b"ab"


def test_trained_vocabulary_saves_and_loads_in_tiktoken(tmp_path):
    texts = [data.read_text(f) for f in data.corpus_files("stdlib")[:60]]
    enc = data.Encoder.train(texts, 1000)
    assert enc.n_vocab == 1000 and enc.eot == 999
    assert len(set(enc.token_bytes)) == 1000  # every token has one spelling
    enc.save(str(tmp_path))
    again = data.Encoder.load(str(tmp_path))
    reference = tiktoken_from_files(str(tmp_path))  # its loader asserts encoder.json == merges
    sample = "".join(data.read_text(f) for f in data.corpus_files("stdlib")[60:80]) + "".join(HARD)
    assert again.encode(sample) == enc.encode(sample) == reference.encode_ordinary(sample)
    assert again.decode(again.encode(sample)) == sample


def test_bad_vocabularies(tmp_path):
    with pytest.raises(ValueError, match="at least 257"):
        data.Encoder.train(["abc"], 256)
    with pytest.raises(ValueError, match="empty corpus"):
        data.Encoder.train([""], 300)
    with pytest.raises(ValueError, match="no encoder.json"):
        data.Encoder.load(str(tmp_path))
    (tmp_path / "encoder.json").write_text("{not json")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match="malformed"):
        data.Encoder.load(str(tmp_path))


# ---- the pipeline -----------------------------------------------------------------------------

def write_corpus(folder, n_files=6, words=400):
    rng = random.Random(1)
    vocab = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it", "is"]
    for i in range(n_files):
        text = " ".join(rng.choice(vocab) for _ in range(words)) + ".\n"
        (folder / f"doc{i}.txt").write_text(text)


def test_prepare_and_dataset(tmp_path, gpt2_vocab_dir, tiktoken_gpt2):
    write_corpus(tmp_path)
    out = tmp_path / "out"
    facts = data.prepare(str(tmp_path / "*.txt"), str(out), gpt2_vocab_dir, val_fraction=0.2, processes=2)
    assert facts["train_documents"] == 5 and facts["val_documents"] == 1 and facts["data_seed"] == 0
    # five documents, five shards (at most 16, one document each at least); each shard holds whole
    # documents' tokens, each followed by <|endoftext|>, and together they hold every training document once
    assert facts["train_shards"] == [f"train_00000{i}.bin" for i in range(5)] and facts["val_shards"] == ["val_000000.bin"]
    val_tokens = np.fromfile(out / "val_000000.bin", dtype="<u2").tolist()
    expected = []
    for doc in sorted(tmp_path.glob("*.txt")):
        ids = tiktoken_gpt2.encode_ordinary(doc.read_text()) + [50256]
        if ids != val_tokens:
            expected.append(ids)
    shards = [np.fromfile(out / name, dtype="<u2").tolist() for name in facts["train_shards"]]
    assert sorted(shards) == sorted(expected)
    assert shards != expected  # shuffled: the data seed 0 does not give the files' sorted order here
    tokens = [t for shard in shards for t in shard]
    assert facts["train_tokens"] == len(tokens)

    ds = data.dataset(str(out), "train", batch_size=4, n_ctx=16, seed=0)
    batch = next(iter(ds))
    assert batch.shape == (4, 17) and batch.dtype == tf.int32
    for row in batch.numpy().tolist():  # every row is a window of a shard, from its start
        assert any(shard[i:i + 17] == row for shard in shards for i in range(0, len(shard) - 16, 17))
    # without reshuffling, every new iterator starts with the same batches (train.py's evaluations)
    for reshuffle in (False, True):
        ds = data.dataset(str(out), "train", batch_size=4, n_ctx=16, seed=0, reshuffle=reshuffle)
        a, b = iter(ds), iter(ds)
        same = all((next(a).numpy() == next(b).numpy()).all() for _ in range(3))
        assert same == (not reshuffle)


def test_dataset_position_is_saved_in_a_checkpoint(tmp_path, gpt2_vocab_dir):
    write_corpus(tmp_path)
    data.prepare(str(tmp_path / "*.txt"), str(tmp_path / "out"), gpt2_vocab_dir, val_fraction=0.0, processes=1)
    iterator = iter(data.dataset(str(tmp_path / "out"), "train", batch_size=2, n_ctx=8, seed=3))
    next(iterator)
    checkpoint = tf.train.Checkpoint(data=iterator)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    expected = [next(iterator).numpy() for _ in range(5)]
    checkpoint.restore(path)
    assert all((next(iterator).numpy() == e).all() for e in expected)


def test_single_document_holds_out_its_tail(tmp_path):
    (tmp_path / "one.txt").write_text("to be or not to be, that is the question. " * 200)
    facts = data.prepare(str(tmp_path / "one.txt"), str(tmp_path / "out"), 270, val_fraction=0.1, processes=1)
    assert facts["val_tokens"] > 0 and facts["train_tokens"] > 8 * facts["val_tokens"]
    assert data.read_meta(str(tmp_path / "out")) == facts and data.read_meta(str(tmp_path)) is None


def test_single_document_holds_out_a_tenth_and_evaluates_on_it(tmp_path):
    # The default 0.5% of one file would be a few windows (tiny-shakespeare: about 5 KB), so at
    # least 10% is held out; and a held-out split smaller than a batch is read round and round
    (tmp_path / "one.txt").write_text("to be or not to be, that is the question. " * 200)
    facts = data.prepare(str(tmp_path / "one.txt"), str(tmp_path / "out"), 270, val_fraction=0.005, processes=1)
    total = facts["train_tokens"] + facts["val_tokens"]
    assert 0.09 < facts["val_tokens"] / total < 0.11
    windows = facts["val_tokens"] // 129
    assert 0 < windows < 8  # fewer windows than the batch below
    batch = next(iter(data.dataset(str(tmp_path / "out"), "val", batch_size=8, n_ctx=128, reshuffle=False))).numpy()
    shard = np.fromfile(tmp_path / "out" / facts["val_shards"][0], dtype="<u2").astype(np.int32)
    held_out = {row.tobytes() for row in shard[:windows * 129].reshape(windows, 129)}
    assert batch.shape == (8, 129) and {row.tobytes() for row in batch} <= held_out


def test_data_cli_empty_corpus_gets_one_line(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(SystemExit) as exit:
        data.main(["--input", str(tmp_path / "empty.txt"), "--output", str(tmp_path / "o"), "--vocab", "300"])
    line = str(exit.value.code)  # sys.exit("error: ..."): Python prints it on stderr, alone
    assert line.startswith("error: ") and "empty corpus" in line and "\n" not in line
    assert not (tmp_path / "o" / "data.json").exists()


def test_non_utf8_file_is_named(tmp_path, capfd):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait\n" * 50)
    data.prepare(str(tmp_path / "bad.txt"), str(tmp_path / "out"), 260, val_fraction=0.0, processes=1)
    assert "bad.txt is not valid UTF-8" in capfd.readouterr().err


def test_corpus_too_small_for_a_batch(tmp_path, gpt2_vocab_dir):
    (tmp_path / "tiny.txt").write_text("just a few words")
    data.prepare(str(tmp_path / "tiny.txt"), str(tmp_path / "out"), gpt2_vocab_dir, val_fraction=0.0, processes=1)
    with pytest.raises(ValueError, match=r"too few for 8 window\(s\) of 65 tokens"):
        data.dataset(str(tmp_path / "out"), "train", batch_size=8, n_ctx=64)


@pytest.mark.parametrize("mistake, message", [
    (["--input", "{tmp}/nothing*.txt"], "no files match"),
    (["--vocab", "100"], "vocab_size must be at least 257"),
    (["--vocab", "{tmp}"], "no encoder.json or no vocab.bpe in"),  # a directory without encoder.json
    (["--val_fraction", "1"], "--val_fraction 1.0: must be in [0, 1)"),
    (["--val_fraction", "-0.1"], "--val_fraction -0.1"),
    (["--processes", "0"], "--processes 0: must be at least 1"),
])
def test_data_cli_checks_every_flag_before_any_work(tmp_path, capsys, mistake, message):
    (tmp_path / "a.txt").write_text("some text")
    args = ["--input", str(tmp_path / "*.txt"), "--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit:
        data.main(args + [arg.format(tmp=tmp_path) for arg in mistake])
    lines = str(exit.value.code).splitlines()
    assert len(lines) == 1 and not capsys.readouterr().err.strip(), lines
    assert lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()  # nothing was done


def test_one_file_without_a_held_out_split_trains_on_all_of_it():
    assert data.split_corpus(["play"], 0.0) == {"train": [("play", 0, 1)], "val": []}  # was ("play", 0, 0.9): 10% lost
    assert data.split_corpus(["play"], 0.2) == {"train": [("play", 0, 0.8)], "val": [("play", 0.8, 1)]}


def test_empty_training_files_are_refused_at_preparation(tmp_path, gpt2_vocab_dir):
    # Each document adds an <|endoftext|>: two empty files are two tokens, and no text
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.txt").write_text("")
    with pytest.raises(ValueError, match=r"holds no text in its training files"):
        data.prepare(str(tmp_path / "*.txt"), str(tmp_path / "out"), gpt2_vocab_dir, val_fraction=0.0, processes=1)
    assert not (tmp_path / "out" / "data.json").exists()


# ---- the pipeline reads each byte once (issue 22) ---------------------------------------------

def windows_of(out, split, n_ctx):
    """Every window dataset() can deliver: each shard's whole windows of n_ctx + 1 tokens, from its start."""
    meta = data.read_meta(str(out))
    shards = [np.fromfile(f"{out}/{name}", dtype="<u2").astype(np.int32) for name in meta[f"{split}_shards"]]
    return [s[i:i + n_ctx + 1].tobytes() for s in shards for i in range(0, len(s) - n_ctx, n_ctx + 1)]


def read_bytes():
    """Bytes this process has read so far, from files or anywhere (Linux: rchar in /proc/self/io)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar"))


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory, gpt2_vocab_dir):
    """40 documents in 16 shards (min(16, documents), far below 100 MB each): about 170,000 tokens."""
    folder = tmp_path_factory.mktemp("many")
    write_corpus(folder, n_files=40, words=4000)
    data.prepare(str(folder / "*.txt"), str(folder / "out"), gpt2_vocab_dir, val_fraction=0.0, processes=2)
    return folder / "out"


def test_an_epoch_reads_each_byte_once(many_shards):
    meta = data.read_meta(str(many_shards))
    assert len(meta["train_shards"]) == 16
    n_ctx, batch = 64, 8
    steps = len(windows_of(many_shards, "train", n_ctx)) // batch  # one epoch of batches
    iterator = iter(data.dataset(str(many_shards), "train", batch, n_ctx))
    for _ in range(steps):  # the first epoch also fills the shuffle buffer (1,024 windows) and the read-ahead
        next(iterator)
    start = read_bytes()
    for _ in range(steps):
        next(iterator)
    delivered = steps * batch * (n_ctx + 1) * 2
    # Reading 16 shards from their start: each byte once, plus the footers (each shard's last partial
    # window) and the read-ahead. The pieces read before (a header read, not skipped, per piece): 17x here
    ratio = (read_bytes() - start) / delivered
    print(f"read {ratio:.3f}x the bytes delivered")
    assert ratio <= 1.2, ratio


def test_without_the_window_shuffle_an_epoch_is_every_window_once(many_shards):
    n_ctx = 64
    windows = windows_of(many_shards, "train", n_ctx)
    iterator = iter(data.dataset(str(many_shards), "train", 1, n_ctx, shuffle_buffer=1).unbatch())
    first = [next(iterator).numpy().tobytes() for _ in windows]
    assert sorted(first) == sorted(windows)
    assert first[:16] != windows[:16]  # interleaved: not the shards one after another


def test_the_same_data_seed_gives_the_same_shards_and_batches(tmp_path, gpt2_vocab_dir):
    write_corpus(tmp_path, n_files=20)
    shards = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        data.prepare(str(tmp_path / "*.txt"), str(tmp_path / name), gpt2_vocab_dir, val_fraction=0.0, processes=1,
                     seed=seed)
        assert data.read_meta(str(tmp_path / name))["data_seed"] == seed
        shards[name] = [(tmp_path / name / f"train_{i:06d}.bin").read_bytes() for i in range(16)]
    assert shards["a"] == shards["b"] and shards["a"] != shards["c"]
    batches = [next(iter(data.dataset(str(tmp_path / name), "train", 4, 16, seed=5))).numpy() for name in "ab"]
    assert (batches[0] == batches[1]).all()


def test_prepare_and_dataset_on_another_file_system(gpt2_vocab_dir):
    # TensorFlow's in-memory file system stands in for gs://: everything goes through tf.io.gfile
    for i in range(3):
        with tf.io.gfile.GFile(f"ram://corpus/doc{i}.txt", "w") as f:
            f.write(" ".join(["the cat sat on the mat"] * 100))
    meta = data.prepare("ram://corpus/*.txt", "ram://prepared", gpt2_vocab_dir, val_fraction=0.0, processes=1)
    assert meta["train_documents"] == 3 and tf.io.gfile.exists("ram://prepared/train_000002.bin")
    batch = next(iter(data.dataset("ram://prepared", "train", 2, 16))).numpy()
    assert batch.shape == (2, 17)


def test_data_in_the_old_layout_is_refused_naming_the_fix(many_shards, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    meta = data.read_meta(str(many_shards))
    del meta["data_seed"]  # what data.py wrote before the documents were shuffled
    (old / "data.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"prepared by an older data.py, in file order: prepare it again \(python "
                                         r"data.py --input .* --output .*old --vocab"):
        data.dataset(str(old), "train", 8, 64)
