"""Commands that rebuild the committed results' data and weights (docs/rebuild.md)."""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable
from pathlib import Path

from common.errors import UserError


def read_tree(
    src: Path, error: type[UserError], remedy: str
) -> tuple[list[str], Callable[[str], bytes]]:
    """The '/'-separated paths of the files in the folder or tar archive SRC, and a reader of
    their bytes (OSError or KeyError for a path that is not there)."""
    if src.is_dir():
        names = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()]
        return names, lambda name: (src / name).read_bytes()
    if not src.exists():
        raise error(f"{src} does not exist: {remedy}")
    try:
        with tarfile.open(src) as tar:
            files = {
                posixpath.normpath(m.name): tar.extractfile(m).read() for m in tar if m.isfile()
            }
    except (tarfile.TarError, OSError, EOFError) as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        raise error(f"cannot read {src} as a tar archive ({why}): {remedy}") from None
    return list(files), files.__getitem__
