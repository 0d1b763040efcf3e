"""Token counts: exact with tiktoken and the encoding file shipped in the product, never a download."""

from __future__ import annotations

import gzip
import importlib.util
import sys

import pytest

from tests.conftest import require
from training.pipeline import validate


@pytest.fixture
def fresh_encoding():
    validate.encoding.cache_clear()
    yield
    validate.encoding.cache_clear()


def test_the_shipped_file_is_openais_o200k_base():
    ranks = validate.encoding_ranks()
    assert len(ranks) == 199_998  # 200,000 ids less the two special tokens
    # Ranks anyone can check against tiktoken: "hello world" is [24912, 2375] in o200k_base.
    assert ranks[b"hello"] == 24912 and ranks[b" world"] == 2375


def test_a_file_that_is_not_openais_is_refused(monkeypatch, tmp_path):
    forged = tmp_path / "o200k_base.tiktoken.gz"
    forged.write_bytes(gzip.compress(b"aGVsbG8= 0\n"))
    monkeypatch.setattr(validate, "ENCODING_FILE", forged)
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        validate.encoding_ranks()


def test_with_tiktoken_the_count_is_exact_and_offline(fresh_encoding, monkeypatch, tmp_path):
    require(importlib.util.find_spec("tiktoken") is not None, "tiktoken is not installed (the tokens extra)")
    # tiktoken keeps what it downloads in its cache directory: it must stay empty.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    assert validate.tokenizer_name() == "o200k_base"
    assert validate.count_tokens("hello world") == 2
    assert validate.count_tokens("<|endoftext|>") == 7  # text, not the special token
    assert list(tmp_path.iterdir()) == []


def test_without_tiktoken_the_count_is_the_documented_estimate(fresh_encoding, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import tiktoken raises ImportError

    assert validate.tokenizer_name().startswith("estimate")
    assert validate.count_tokens("a b c d e f g h") == 4  # ceil(15 characters / 4)
