"""CSV and JSON-lines inputs, split into byte ranges cut at line ends.

A mini-batch is one file's byte range of about ``mini_batch_size``; the reader
extends it to the end of its last line (``fsspec.utils.read_block``) and puts
the CSV header back in front. Compressed files, and CSV files whose quoted values
may hold line breaks (``support_multi_line=True``), are never split.
"""

from __future__ import annotations

import io
import math
from typing import Any

from .._protocol import MiniBatchSpec
from ..storage import url_to_fs
from ._common import WHOLE_FILE, is_compressed, open_range

KINDS = ("csv", "jsonl")


def plan_text(
    fmt: str, path: str, file_size: int | None, size: int, split: bool = True
) -> list[MiniBatchSpec]:
    """The byte ranges of one file (``index`` 0: the caller numbers them)."""
    if file_size is None:
        return [
            MiniBatchSpec(
                index=0, kind="error", paths=(path,), items=1, error="file not found"
            )
        ]
    if file_size == 0:
        return []
    if not split or is_compressed(path) or file_size <= size:
        # compressed text cannot be split by byte ranges, nor can rows with
        # quoted line breaks
        return [
            MiniBatchSpec(index=0, kind=fmt, paths=(path,), start=0, stop=file_size)
        ]
    count = math.ceil(file_size / size)
    step = math.ceil(file_size / count)
    return [
        MiniBatchSpec(
            index=0,
            kind=fmt,
            paths=(path,),
            start=start,
            stop=min(start + step, file_size),
        )
        for start in range(0, file_size, step)
    ]


def read_text_bytes(
    spec: MiniBatchSpec,
    storage_options: dict[str, Any],
    read_options: dict[str, Any],
    header: Any = None,
) -> bytes:
    """A CSV/JSON-lines mini-batch's rows as bytes (the CSV header first).

    ``header(fs, fpath)`` gives a file's first line (the reader caches it).
    """
    from fsspec.utils import read_block

    path = spec.paths[0]
    fs, fpath = url_to_fs(path, storage_options)
    whole = spec.start == 0 and (spec.stop >= WHOLE_FILE or spec.stop >= fs.size(fpath))
    if whole:
        import fsspec

        with fsspec.open(path, "rb", compression="infer", **storage_options) as f:
            return f.read()
    length = spec.stop - spec.start
    with open_range(fs, fpath, length) as f:
        data = read_block(f, spec.start, length, delimiter=b"\n")
    if spec.kind == "csv" and read_options.get("header", True) and spec.start > 0:
        data = (header or first_line)(fs, fpath) + data
    return data


def first_line(fs, fpath: str) -> bytes:
    """The first line of a file (a CSV header)."""
    with open_range(fs, fpath, 0) as f:
        return f.readline()


def parse_text(data: bytes, kind: str, read_options: dict[str, Any]):
    """The rows of a CSV/JSON-lines mini-batch as a pandas DataFrame."""
    import pandas as pd

    if not data.strip():
        return pd.DataFrame()
    if kind == "csv":
        return pd.read_csv(
            io.BytesIO(data),
            sep=read_options.get("separator", ","),
            header=0 if read_options.get("header", True) else None,
        )
    return pd.read_json(io.BytesIO(data), lines=True)


def pandas_csv_options(read_options: dict[str, Any]) -> dict[str, Any]:
    """``pandas.read_csv`` / ``dask.dataframe.read_csv`` options of a CSV input."""
    opts: dict[str, Any] = {"sep": read_options.get("separator", ",")}
    if not read_options.get("header", True):
        opts["header"] = None
    return opts
