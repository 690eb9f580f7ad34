"""Parts: what ``run()`` returned for one mini-batch, committed by its runner.

A part is encoded for the collected file's format (``.txt`` lines, ``.csv`` with
a header, or Arrow IPC for a ``.parquet`` file). On a local disk the runner
appends it to its own *segment file*, ``.daskscore/parts/seg-<token>.<suffix>``
(one per runner process, so no two processes ever write one file), and the
mini-batch's record keeps where: ``part = [file, offset, length]``. One
``write`` to a file kept open replaces a file created and renamed per
mini-batch, and collecting reads a few files instead of one per mini-batch. A
segment counts only once its record is committed: what a killed runner or a
failed write left behind is never referenced (a failed write is cut off again).

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
    "read_part_table",
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


def read_part_table(fs, path: str):
    """A committed Parquet-output part (Arrow IPC) as a ``pyarrow.Table``."""
    import pyarrow as pa

    if is_local(fs):
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).read_all()
    return pa.ipc.open_file(pa.BufferReader(fs.cat_file(path))).read_all()


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
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            try:
                self._fd = os.open(path, flags, 0o644)
            except FileNotFoundError:  # the folder first
                os.makedirs(self.parts_path, exist_ok=True)
                self._fd = os.open(path, flags, 0o644)
            self._end = os.fstat(self._fd).st_size
        start = self._end
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                if written <= 0:  # pragma: no cover - os.write raises instead
                    raise OSError(errno.EIO, "short write", self.segment_name)
                view = view[written:]
        except BaseException:
            try:  # what a full disk took of it: cut off, its space given back
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            raise
        self._end = start + len(data)
        return [self.segment_name, start, len(data)]

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
