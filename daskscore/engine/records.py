"""The client's table of final records: one per mini-batch, held on disk.

A job of 1,000,000 mini-batches would hold a million record dicts (with their
tries) in the client, several GB. :class:`RecordBook` keeps each record as one
JSON line in a local temporary file and, in memory, 13 bytes per mini-batch:
whether it is recorded, has output or failed, and where its line is (and, for
output in a runner's segment file, where that part is: another 20 bytes). It is read
like the dict it replaces (``index in book``, ``book[index]``, ``len(book)``,
``sorted(book)``, ``book.items()`` in id order), so the reports and the
collected file stream the records in id order from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections.abc import Iterator
from typing import Any

__all__ = ["RecordBook"]

_PRESENT, _OUTPUT, _FAILED, _LIVE = 1, 2, 4, 8


class RecordBook:
    """The final records of mini-batches ``0 .. n-1``, by id (see the module)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._flags = bytearray(n)
        self._offsets = array("q", bytes(8 * n))
        self._lengths = array("I", bytes(4 * n))
        self._count = 0
        self._file = tempfile.TemporaryFile(prefix="daskscore-records-")
        self._end = 0
        # where each part in a segment file is (MiniBatchRecord.part): made on
        # the first such record; a file's number is its place in _segments
        self._segments: list[str] = []
        self._segment_ids: dict[str, int] = {}
        self._part_at: tuple[array, array, array] | None = None

    def __setitem__(self, index: int, record: dict[str, Any]) -> None:
        if not 0 <= index < self.n:
            raise IndexError(f"mini-batch {index} is not in a plan of {self.n}")
        line = json.dumps(record, default=str).encode() + b"\n"
        os.pwrite(self._file.fileno(), line, self._end)
        self._offsets[index], self._lengths[index] = self._end, len(line)
        self._end += len(line)
        if not self._flags[index] & _PRESENT:
            self._count += 1
        self._flags[index] = (
            _PRESENT
            | (_OUTPUT if record.get("has_output") else 0)
            | (_FAILED if record.get("failed_mini_batch") else 0)
            | (_LIVE if record.get("live") else 0)
        )
        part = record.get("part")
        if part or self._part_at is not None:
            self._keep_part(index, part if record.get("has_output") else None)

    def _keep_part(self, index: int, part: list | None) -> None:
        if self._part_at is None:
            n = self.n
            self._part_at = (
                array("i", [-1]) * n, array("q", bytes(8 * n)), array("q", bytes(8 * n))
            )
        files, offsets, lengths = self._part_at
        if not part:
            files[index] = -1
            return
        name = part[0]
        number = self._segment_ids.get(name)
        if number is None:
            number = self._segment_ids[name] = len(self._segments)
            self._segments.append(name)
        files[index], offsets[index], lengths[index] = number, part[1], part[2]

    def part_of(self, index: int) -> tuple[str, int, int] | None:
        """Where ``index``'s output is in a segment file, ``(file, offset,
        length)``; None when it has a part of its own (or none)."""
        if self._part_at is None or not self._flags[index] & _OUTPUT:
            return None
        files, offsets, lengths = self._part_at
        number = files[index]
        if number < 0:
            return None
        return self._segments[number], offsets[index], lengths[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index not in self:
            raise KeyError(index)
        data = os.pread(
            self._file.fileno(), self._lengths[index], self._offsets[index]
        )
        return json.loads(data)

    def get(self, index: int, default: Any = None) -> Any:
        return self[index] if index in self else default

    def __contains__(self, index: object) -> bool:
        return (
            isinstance(index, int)
            and 0 <= index < self.n
            and bool(self._flags[index] & _PRESENT)
        )

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        """The recorded mini-batch ids, in id order."""
        return (i for i, flag in enumerate(self._flags) if flag)

    def keys(self) -> Iterator[int]:
        return iter(self)

    def items(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(id, record)`` in id order, read back one at a time."""
        for index in self:
            yield index, self[index]

    def values(self) -> Iterator[dict[str, Any]]:
        for _, record in self.items():
            yield record

    def in_order(self) -> _InOrder:
        """The records in id order, as something that can be iterated again."""
        return _InOrder(self)

    def with_output(self) -> Iterator[int]:
        """The ids of the mini-batches whose record says they committed output."""
        return (i for i in self if self._flags[i] & _OUTPUT)

    def is_live(self, index: int) -> bool:
        """Whether ``index`` holds a live summary (``worker.feed``), not yet
        the full record the worker committed."""
        return index in self and bool(self._flags[index] & _LIVE)

    def live_ids(self) -> Iterator[int]:
        """The ids that hold a live summary only."""
        return (i for i, flag in enumerate(self._flags) if flag & _LIVE)

    def final(self) -> _Final:
        """The ids that hold a full record (``in``), live summaries left out."""
        return _Final(self)

    def failed(self) -> int:
        """How many recorded mini-batches failed."""
        return sum(1 for i in self if self._flags[i] & _FAILED)

    def close(self) -> None:
        self._file.close()


class _Final:
    """``index in``: whether a :class:`RecordBook` holds ``index``'s full record."""

    def __init__(self, book: RecordBook) -> None:
        self.book = book

    def __contains__(self, index: object) -> bool:
        return index in self.book and not self.book.is_live(index)  # type: ignore[arg-type]


class _InOrder:
    """A :class:`RecordBook`'s records in id order, read anew by each ``iter()``."""

    def __init__(self, book: RecordBook) -> None:
        self.book = book

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.book.values()
