"""Parquet inputs, grouped by row groups up to ``mini_batch_size``.

Row groups are grouped until their uncompressed size (``total_byte_size``)
reaches the size; a row group bigger than that is sliced by rows. A file whose
footer cannot be read is one mini-batch that fails with READ_ERROR.
"""

from __future__ import annotations

import math
from typing import Any

from .._protocol import MiniBatchSpec
from ..storage import url_to_fs
from ._common import open_range


def plan_parquet(
    path: str, size: int, storage_options: dict[str, Any]
) -> list[MiniBatchSpec]:
    """The mini-batches of one Parquet file (``index`` 0: the caller numbers them)."""
    import pyarrow.parquet as pq

    try:
        fs, fpath = url_to_fs(path, storage_options)
        with fs.open(fpath, "rb") as f:
            meta = pq.ParquetFile(f).metadata
    except Exception as exc:  # a corrupt or missing file fails its own mini-batch
        return [
            MiniBatchSpec(
                index=0,
                kind="error",
                paths=(path,),
                items=1,
                error=f"cannot read Parquet metadata: {type(exc).__name__}: {exc}",
            )
        ]
    return _plan_row_groups(path, meta, size)


def _piece(path: str, groups: tuple[int, ...], start: int, stop: int) -> MiniBatchSpec:
    """A mini-batch of rows ``start:stop`` of the row groups ``groups`` together."""
    return MiniBatchSpec(
        index=0,
        kind="parquet",
        paths=(path,),
        row_groups=groups,
        start=start,
        stop=stop,
        items=stop - start,
    )


def _plan_row_groups(path: str, meta: Any, size: int) -> list[MiniBatchSpec]:
    """Row groups grouped up to ``size`` bytes; a bigger one sliced by rows."""
    specs: list[MiniBatchSpec] = []
    group: list[int] = []
    group_rows = group_bytes = 0

    def flush() -> None:
        nonlocal group, group_rows, group_bytes
        if group and group_rows:
            specs.append(_piece(path, tuple(group), 0, group_rows))
        group, group_rows, group_bytes = [], 0, 0

    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        rows, nbytes = rg.num_rows, max(rg.total_byte_size, 1)
        if rows == 0:
            continue
        if nbytes > size:
            # a row group bigger than a mini-batch is sliced by rows
            flush()
            pieces = min(math.ceil(nbytes / size), rows)
            step = math.ceil(rows / pieces)
            for start in range(0, rows, step):
                specs.append(_piece(path, (g,), start, min(start + step, rows)))
            continue
        if group and group_bytes + nbytes > size:
            flush()
        group.append(g)
        group_rows += rows
        group_bytes += nbytes
    flush()
    return specs


def read_row_groups(spec: MiniBatchSpec, storage_options: dict[str, Any]):
    """The row groups a Parquet mini-batch needs, as one Arrow table."""
    import pyarrow.parquet as pq

    fs, fpath = url_to_fs(spec.paths[0], storage_options)
    # the footer, then the row groups' column chunks coalesced into a few
    # ranged reads: never the whole file for one mini-batch
    with open_range(fs, fpath, 0) as f:
        return pq.ParquetFile(f, pre_buffer=True).read_row_groups(
            list(spec.row_groups)
        )


def read_parquet_file(path: str, storage_options: dict[str, Any], columns=None):
    """A whole Parquet file (or some of its columns) as an Arrow table."""
    import pyarrow.parquet as pq

    fs, fpath = url_to_fs(path, storage_options)
    with fs.open(fpath, "rb") as f:
        return pq.read_table(f, columns=columns)
