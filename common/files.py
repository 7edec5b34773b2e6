"""Files: atomic writes (a reader sees the old file or the new one, never half of one), and
reading back JSON, tar archives and content hashes."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

Reader = Callable[[str], bytes]  # a file's bytes, by its path inside a folder or an archive
UMASK = os.umask(0)  # read once, at import, where no other thread can see it changed
os.umask(UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`,
    with the permissions the umask gives a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600: give what open() would have given
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_with(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Atomically write `path` by calling `write` on the open temporary file."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)


def write_text(path: str | Path, text: str) -> None:
    write_with(path, lambda f: f.write(text))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def file_hash(path: str | Path, algorithm: str) -> str:
    """The hex digest of a file by hashlib's `algorithm` (OSError if it cannot be read), computed
    once per process for each (path, size, mtime): hashing a file of a hundred MB takes a
    noticeable share of a second on a small CPU."""
    stat = os.stat(path)
    return _digest(str(Path(path).resolve()), algorithm, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _digest(path: str, algorithm: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(
            f, lambda: hashlib.new(algorithm, usedforsecurity=False)
        ).hexdigest()


def read_archive(path: Path, error: type[Exception], what: str, remedy: str) -> dict[str, bytes]:
    """Every regular file of a (gzipped) tar archive, by its normalized path, read in one pass;
    one line, `error`, saying why and `remedy` when it is not a `what` that can be read."""
    try:
        with tarfile.open(path) as tar:
            return {
                posixpath.normpath(m.name): tar.extractfile(m).read() for m in tar if m.isfile()
            }
    except (tarfile.TarError, OSError, EOFError) as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        raise error(f"cannot read {path} as a {what} ({why}): {remedy}") from None


def read_json(path: str | Path) -> Any | None:
    """The parsed file, or None when it is absent or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
