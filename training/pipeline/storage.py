"""Streaming dataset files: lines go to a temporary file while being hashed, then into Django storage."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator

from django.core.files import File
from django.core.files.storage import default_storage


class JsonlWriter:
    """Append JSONL lines (bytes, newline included) with constant memory; sha256 as it goes."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._sha = hashlib.sha256()
        self.count = 0

    def write(self, line: bytes) -> None:
        self._file.write(line)
        self._sha.update(line)
        self.count += 1

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def save(self, name: str) -> str:
        """Store under ``name`` in default storage; returns the stored path."""
        self._file.seek(0)
        return default_storage.save(name, File(self._file, name=name))

    def close(self) -> None:
        self._file.close()


def iter_lines(path: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    with default_storage.open(path, "rb") as f:
        yield from f


def iter_json_array(path: str) -> Iterator[bytes]:
    """The JSONL file as one JSON array, streamed (each line is already a JSON value)."""
    yield b"["
    first = True
    for line in iter_lines(path):
        line = line.rstrip(b"\n")
        if not line:
            continue
        yield line if first else b",\n" + line
        first = False
    yield b"]\n"
