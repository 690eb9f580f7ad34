"""How a worker commits the records of a pack: one append-only log per pack.

Each mini-batch has two moments a worker must leave on storage: it *started*
(so that a worker that dies while scoring it costs the mini-batch a try, and a
run stopped meanwhile shows as an interrupted try), and it *ended*, its final
record (which means "done": a part without a record is ignored and redone).

On a local disk both are lines appended to one file per pack,
``records/<first>-<last>.pack`` (the pack's first and last mini-batch ids)::

    S {"index": 42, "worker": ..., "run": ..., "started_at": ..., "lost": [...]}
    R {"index": 42, ...the final record...}

An append is one ``write`` to a file kept open: no file created, renamed or
removed per mini-batch (on ext4 those cost 50-300 us each, most of what a
worker spent outside ``run()``). Each line starts with a line break, so a line
torn by a crash or a full disk is a line of its own that does not parse, and
the lines after it still do. A record counts once its line is whole. A pack
that Dask runs again (its worker died) opens the same log: it finds the
records already committed, and the mini-batch that was being scored (started,
no record) with the tries it lost.

On blob storage (no appends) each mark and record is a file of its own
(``000000042.json.started``, ``000000042.json``), as before; readers
(:class:`~daskscore.output.store.StateStore`) understand both.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from typing import Any

from ..storage import is_local
from .store import (
    RECORD,
    STARTED,
    join,
    pack_name,
    read_json,
    read_pack,
    read_record,
    remove_file,
    started_mark_name,
    write_atomic,
    write_record,
)

__all__ = ["FileLog", "PackLog", "open_log"]

class PackLog:
    """The append-only log of one pack on a local disk (see the module)."""

    def __init__(self, records_path: str, first: int, last: int):
        self.path = os.path.join(records_path, pack_name(first, last))
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        self.records, self.starts = read_pack(data)
        self._fd: int | None = None

    def record(self, index: int) -> dict[str, Any] | None:
        """The record an earlier execution of this pack committed, if any."""
        return self.records.get(index)

    def mark(self, index: int) -> dict[str, Any] | None:
        """The start mark of an earlier execution that did not end, if any."""
        return None if index in self.records else self.starts.get(index)

    def start(self, index: int, mark: dict[str, Any]) -> None:
        self._append(STARTED, {"index": index, **mark})

    def commit(self, index: int, record: dict[str, Any]) -> None:
        self._append(RECORD, record)

    def _append(self, kind: bytes, entry: dict[str, Any]) -> None:
        line = b"\n" + kind + b" " + json.dumps(entry, default=str).encode()
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            try:
                self._fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:  # the folder first (a reset meanwhile)
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._fd = os.open(self.path, flags, 0o644)
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            if written <= 0:  # pragma: no cover - os.write raises instead
                raise OSError(errno.EIO, "short write", self.path)
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FileLog:
    """A pack's marks and records as one file each (blob storage, no appends)."""

    def __init__(self, fs: Any, records_path: str):
        self.fs, self.records_path = fs, records_path

    def record(self, index: int) -> dict[str, Any] | None:
        return read_record(self.fs, self.records_path, index)

    def mark(self, index: int) -> dict[str, Any] | None:
        return read_json(self.fs, join(self.records_path, started_mark_name(index)))

    def start(self, index: int, mark: dict[str, Any]) -> None:
        path = join(self.records_path, started_mark_name(index))
        write_atomic(self.fs, path, json.dumps(mark).encode())

    def commit(self, index: int, record: dict[str, Any]) -> None:
        write_record(self.fs, self.records_path, index, record)
        remove_file(self.fs, join(self.records_path, started_mark_name(index)))

    def close(self) -> None:
        pass


def open_log(fs: Any, records_path: str, specs: Sequence[Any]) -> PackLog | FileLog:
    """The commit log of a pack of ``specs``: a :class:`PackLog` on a local disk,
    named by the pack's lowest and highest id."""
    if is_local(fs):
        indices = [s.index for s in specs]
        return PackLog(records_path, min(indices), max(indices))
    return FileLog(fs, records_path)
