"""What every format shares: fingerprints, hidden files, compressed suffixes, ranges."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
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


class ChainedPlan(Sequence):
    """The mini-batches of several inputs, numbered on, made when asked for.

    ``parts`` are each input's plan: a :class:`~daskscore.io.files.FilePlan`
    (renumbered lazily) or a list of specs (renumbered once, they are small).
    """

    def __init__(self, parts: list[Sequence]) -> None:
        self._parts: list[Sequence] = []
        self._starts = [0]
        for source, part in enumerate(parts):
            first = self._starts[-1]
            if hasattr(part, "renumbered"):
                part = part.renumbered(first, source)
            else:
                part = [replace(s, index=s.index + first, source=source) for s in part]
            self._parts.append(part)
            self._starts.append(first + len(part))

    def __len__(self) -> int:
        return self._starts[-1]

    def listed_at(self) -> float | None:
        """When the earliest listing of a local folder among the parts began
        (:attr:`MiniBatchSpec.listed`), or None when no part walked one."""
        return min(
            (p.listed for p in self._parts if getattr(p, "listed", 0.0)),
            default=None,
        )

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self._starts, i) - 1
        return self._parts[k][i - self._starts[k]]

    def __iter__(self) -> Iterator[Any]:
        for part in self._parts:
            yield from part

    def eager_specs(self) -> Iterator[Any]:
        """The specs of the inputs planned as lists (not FileDatasets)."""
        for part in self._parts:
            if isinstance(part, list):
                yield from part

    def known_items(self) -> int | None:
        """Items of all mini-batches, or None when some count is not known."""
        total = 0
        for part in self._parts:
            if hasattr(part, "known_items"):
                total += part.known_items()
            elif any(s.items is None for s in part):
                return None
            else:
                total += sum(s.items or 0 for s in part)
        return total
