"""Parts: what ``run()`` returned for one mini-batch, committed under its id.

A part is encoded for the collected file's format (``.txt`` lines, ``.csv`` with
a header, or Arrow IPC for a ``.parquet`` file) and written atomically to
``.daskscore/parts/<id>`` by the runner that scored it.
"""

from __future__ import annotations

import sys
from typing import Any

from .._protocol import part_name
from ..storage import is_local, url_to_fs
from .store import join, write_atomic

__all__ = [
    "PartWriter",
    "encode_result",
    "is_dataframe",
    "read_part_table",
    "result_frame",
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
    """Commits what ``run()`` returned under the mini-batch's id (runner side)."""

    def __init__(
        self, parts_url: str, fmt: str, storage_options: dict[str, Any], enabled: bool
    ) -> None:
        self.fmt = fmt
        self.enabled = enabled
        self.fs, self.parts_path = url_to_fs(parts_url, storage_options)

    def commit(self, index: int, result: Any) -> bool:
        """Write the part; return whether there is one (False for summary_only)."""
        if not self.enabled:
            return False
        data = encode_result(result, self.fmt)
        write_atomic(self.fs, join(self.parts_path, part_name(index, self.fmt)), data)
        return True




def result_frame(result: Any):
    """What ``run()`` returned as a pandas DataFrame, as the step writes it.

    A DataFrame as it is; a list of dicts one row each; any other list one
    ``result`` column.
    """
    return result if is_dataframe(result) else _table_from_list(result)
