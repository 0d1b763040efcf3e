"""The token estimate: tiktoken only when its encoding file is already cached (never a download)."""

from __future__ import annotations

import hashlib
import sys
import types

from training.pipeline import validate


def test_tiktoken_is_used_only_when_its_encoding_is_cached_offline(monkeypatch, tmp_path):
    downloads = []

    class Encoding:
        def encode(self, text, disallowed_special=()):
            return text.split()

    def get_encoding(name):  # the real one downloads a missing file, with no timeout
        downloads.append(name)
        return Encoding()

    fake = types.ModuleType("tiktoken")
    fake.get_encoding = get_encoding
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    validate._encoding.cache_clear()
    try:
        assert validate.count_tokens("a b c d e f g h") == 4  # ceil(15 characters / 4)
        assert validate.tokenizer_name().startswith("estimate")
        assert downloads == []

        cached = hashlib.sha1(b"https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken")
        (tmp_path / cached.hexdigest()).write_bytes(b"")
        validate._encoding.cache_clear()
        assert validate.count_tokens("a b c d e f g h") == 8
        assert validate.tokenizer_name() == "o200k_base"
        assert downloads == ["o200k_base"]
    finally:
        validate._encoding.cache_clear()
