"""Parts: what ``run()`` returned for one mini-batch, committed by its runner.

A part is encoded for the collected file's format (``.txt`` lines, ``.csv`` with
a header, or Arrow IPC for a ``.parquet`` file). On a local disk the runner
appends it to its own *segment file*, ``.daskscore/parts/seg-<token>.<suffix>``
(one per runner process, so no two processes ever write one file), and the
mini-batch's record keeps where: ``part = [file, offset, length]``. One
``write`` to a file kept open replaces a file created and renamed per
mini-batch, and collecting reads a few files instead of one per mini-batch. A
segment counts only once its record is committed: what a killed runner or a
failed write left behind is never referenced (a failed write is cut off again,
and the runner goes on in a new segment file). Such bytes stay until the
output folder starts afresh.

On blob storage (no appends) each part is a blob of its own,
``parts/<id>.<suffix>``, uploaded whole; its record has no ``part``.
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
from typing import Any

from .._protocol import PART_SUFFIX, part_name
from ..storage import is_local, url_to_fs
from .store import join, write_atomic

__all__ = [
    "PartWriter",
    "encode_result",
    "is_dataframe",
    "result_frame",
    "segment_name",
]


def _table_from_list(result: list | tuple):
    import pandas as pd

    if result and all(isinstance(x, dict) for x in result):
        return pd.DataFrame(list(result))
    values = list(result)
    frame = pd.DataFrame({"result": values})
    if frame["result"].dtype == object:
        kinds = {type(v) for v in values}
        if len(kinds) > 1:
            frame["result"] = [str(v) for v in values]
    return frame


def is_dataframe(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame, without importing pandas.

    A script that returns lists never pays pandas' import (~0.3 s per runner).
    """
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def encode_result(result: Any, fmt: str) -> bytes:
    """Encode what ``run()`` returned as one part of the collected output."""
    if fmt == "txt":
        if is_dataframe(result):
            if result.empty:
                return b""
            text = result.to_csv(
                sep=" ", header=False, index=False, lineterminator="\n"
            )
        else:
            text = "".join(f"{x}\n" for x in result)
        return text.encode("utf-8")
    frame = result if is_dataframe(result) else _table_from_list(result)
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class PartWriter:
    """Commits what ``run()`` returned (runner side; see the module)."""

    def __init__(
        self, parts_url: str, fmt: str, storage_options: dict[str, Any], enabled: bool
    ) -> None:
        self.fmt = fmt
        self.enabled = enabled
        self.fs, self.parts_path = url_to_fs(parts_url, storage_options)
        self.segments = enabled and is_local(self.fs)
        self.segment_name = segment_name(fmt)
        self._fd: int | None = None
        self._end = 0

    def commit(self, index: int, result: Any) -> tuple[bool, list | None]:
        """Write the part; return whether there is one (False for
        summary_only) and its segment ``[file, offset, length]`` (None for a
        part of its own)."""
        if not self.enabled:
            return False, None
        data = encode_result(result, self.fmt)
        if self.segments:
            return True, self._append(data)
        write_atomic(self.fs, join(self.parts_path, part_name(index, self.fmt)), data)
        return True, None

    def _append(self, data: bytes) -> list:
        if self._fd is None:
            path = os.path.join(self.parts_path, self.segment_name)
            flags = os.O_WRONLY | os.O_CREAT
            try:
                self._fd = os.open(path, flags, 0o644)
            except FileNotFoundError:  # the folder first
                os.makedirs(self.parts_path, exist_ok=True)
                self._fd = os.open(path, flags, 0o644)
            self._end = os.fstat(self._fd).st_size
        start = self._end
        view = memoryview(data)
        try:
            at = start
            while view:  # this writer alone writes its file: at a known offset
                written = os.pwrite(self._fd, view, at)
                if written <= 0:  # pragma: no cover - os.pwrite raises instead
                    raise OSError(errno.EIO, "short write", self.segment_name)
                view, at = view[written:], at + written
        except BaseException:
            self._cut(start)
            raise
        self._end = start + len(data)
        return [self.segment_name, start, len(data)]

    def _cut(self, start: int) -> None:
        """After a failed write: give back what it took (a full disk), and go
        on in a new segment file, so that no part ever follows bytes of unknown
        length."""
        try:
            os.ftruncate(self._fd, start)
        except OSError:
            pass
        self.close()
        self.segment_name = segment_name(self.fmt)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def segment_name(fmt: str) -> str:
    """A new segment file's name: ``seg-<token>.<suffix>``, unique to its writer."""
    return f"seg-{secrets.token_hex(8)}.{PART_SUFFIX.get(fmt, fmt)}"


def result_frame(result: Any):
    """What ``run()`` returned as a pandas DataFrame, as the step writes it.

    A DataFrame as it is; a list of dicts one row each; any other list one
    ``result`` column.
    """
    return result if is_dataframe(result) else _table_from_list(result)
