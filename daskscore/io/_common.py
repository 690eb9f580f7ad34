"""What every format shares: fingerprints, hidden files, compressed suffixes, ranges."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from ..storage import is_local

# Text files with these suffixes are decompressed whole: they cannot be split by
# byte ranges (fsspec's ``compression="infer"`` knows the same suffixes)
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")
# Bytes read past a mini-batch's end to find the end of its last row
ROW_MARGIN = 1 << 17
# A ``stop`` that means "to the end of the file"
WHOLE_FILE = 1 << 62


def is_compressed(path: str) -> bool:
    """Whether a text file is compressed (by its name, as fsspec infers it)."""
    return path.lower().endswith(COMPRESSED_SUFFIXES)


def fingerprint(entries: Iterable[tuple[str, Any, Any]], *extra: object) -> str:
    """A hash of listed files (path, size, mtime) and planning settings."""
    h = hashlib.sha256()
    for e in extra:
        h.update(repr(e).encode())
    for path, size, mtime in entries:
        h.update(f"{path}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:32]


def open_range(fs, fpath: str, length: int):
    """Open a file to read about ``length`` bytes from some offset.

    Remote files (blob storage) are opened with a read-ahead block of about that
    size, so that a mini-batch is one ranged GET of its own bytes instead of the
    filesystem's default block (adlfs: 50 MiB, up to the end of the file).
    """
    if is_local(fs):
        return fs.open(fpath, "rb")
    return fs.open(
        fpath, "rb", block_size=max(length, 0) + ROW_MARGIN, cache_type="readahead"
    )
