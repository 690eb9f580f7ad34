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


def _pandas_at_least(major: int, minor: int) -> bool:
    import pandas as pd

    parts = pd.__version__.split(".")
    return (int(parts[0]), int(parts[1])) >= (major, minor)


def _dask_types_mapper(convert_string: bool) -> Any:
    """The ``types_mapper`` Dask's Arrow engine gives ``to_pandas`` (no user
    mapper, no ``dtype_backend``): Arrow strings, dates and decimals stay Arrow
    when Dask converts strings; None otherwise."""
    if not convert_string:
        return None
    import pandas as pd
    import pyarrow as pa

    strings = pd.StringDtype("pyarrow")
    mapped = {pa.string(): strings, pa.date32(): pd.ArrowDtype(pa.date32()),
              pa.date64(): pd.ArrowDtype(pa.date64())}
    if _pandas_at_least(2, 2):
        mapped[pa.large_string()] = strings

    def mapper(arrow_type: Any) -> Any:
        if arrow_type in mapped:
            return mapped[arrow_type]
        return pd.ArrowDtype(arrow_type) if pa.types.is_decimal(arrow_type) else None

    return mapper


def read_dask_piece(
    fs: Any,
    path: str,
    row_groups: list[int] | None,
    columns: list[Any],
    index: Any,
    categories: Any,
    convert_string: bool,
    columns_name: Any = None,
):
    """One partition of ``dd.read_parquet`` that is a plain piece of one file.

    What Dask's Arrow engine computes for a piece without filters, hive
    partitions or a ``dtype_backend`` (``ArrowDatasetEngine.read_partition`` and
    ``read_parquet_part``, step by step), without importing ``dask.dataframe``
    (~0.7 s in each runner). ``collections.partition_reads`` hands a runner
    such a piece only when the partition's task is exactly that;
    ``tests/collections/test_partition_reads.py`` compares it with Dask's own
    for each way of reading.
    """
    import pyarrow.parquet as pq

    wanted = list(columns)
    columns = list(columns)
    if isinstance(index, list):
        columns += [level for level in index if level not in columns]
    with fs.open(path, mode="rb") as f:
        reader = pq.ParquetFile(f, pre_buffer=True)
        read = dict(columns=columns, use_threads=False, use_pandas_metadata=True)
        if row_groups is None:
            table = reader.read(**read)
        else:
            table = reader.read_row_groups(list(row_groups), **read)
    kwargs: dict[str, Any] = {"use_threads": False, "ignore_metadata": False}
    mapper = _dask_types_mapper(convert_string)
    if mapper is not None:
        kwargs["types_mapper"] = mapper
    df = table.to_pandas(categories=categories, **kwargs)
    df = _dask_index(df, columns, index)
    if columns_name:
        df.columns.name = columns_name
    index = index or []
    df = df[[c for c in wanted if c not in index]]
    if index == ["__null_dask_index__"]:
        df.index.name = None
    return df


def _dask_index(df: Any, columns: list[Any], index: Any) -> Any:
    """The index Dask's engine leaves after ``to_pandas`` (which may set one
    from the pandas metadata): kept, put back among the columns, or dropped."""
    in_columns = set(df.index.names).issubset(set(columns))
    if not index:
        df = df.reset_index(drop=not in_columns)
    elif set(df.index.names) != set(index) and in_columns:
        df = df.reset_index(drop=False)
    elif in_columns:
        index = False
        columns = list(set(columns) - set(df.index.names))
    df = df[list(columns)]
    return df.set_index(index) if index else df
