"""Atomic file writes (a reader sees the old file or the new, never half), JSON and hashes."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, fsynced and renamed onto it on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_with(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)


def write_text(path: str | Path, text: str) -> None:
    write_with(path, lambda f: f.write(text))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | Path) -> Any | None:
    """The parsed file, or None when it is absent or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def file_hash(path: str | Path, algorithm: str) -> str:
    """The file's hex digest, computed once per process for each (path, size, mtime)."""
    stat = os.stat(path)
    return _digest(str(Path(path).resolve()), algorithm, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _digest(path: str, algorithm: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(
            f, lambda: hashlib.new(algorithm, usedforsecurity=False)
        ).hexdigest()
