"""The collected file: the committed parts streamed, in input order, into one file.

``.txt`` parts are concatenated; ``.csv`` parts keep one header (the union of
their columns); Arrow parts become one Parquet file with a unified schema. The
client reads one part at a time and never holds the whole output.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterable
from typing import Any

from ..errors import JobError
from ..storage import DiskFullError, is_disk_full, is_local
from .parts import read_part_table
from .store import StateStore, remove_quietly, temp_name

__all__ = ["assemble_output"]

_COPY_CHUNK = 8 * 1024 * 1024
# block size of the collected file's upload to blob storage (see _open_output)
_UPLOAD_BLOCK = 16 * 1024 * 1024


def assemble_output(
    store: StateStore,
    indices: Iterable[int],
    fmt: str,
    file_name: str,
    strict: bool = False,
) -> tuple[str, int]:
    """Stream the committed parts, in mini-batch order, into the collected file.

    Returns the collected file's URL and the number of parts it holds. The parts
    are read one at a time; the client never holds the whole output. A part
    that is not there is left out; with ``strict`` (``indices`` are mini-batches
    recorded with output) that is an error instead: their records are dropped,
    so that the next run scores them again, and no collected file is written.
    """
    fs = store.fs
    final = store.path(file_name)
    exists = fs.exists if not store.local else os.path.exists
    wanted = sorted(indices)
    parts = [store.part_path(i, fmt) for i in wanted]
    found = [exists(p) for p in parts]
    if strict and not all(found):
        _parts_missing(store, [i for i, f in zip(wanted, found) if not f], fmt)
    parts = [p for p, f in zip(parts, found) if f]
    tmp = store.path(temp_name(file_name)) if store.local else final
    store.assembly_warnings = []
    try:
        store.assembly_warnings = _assemble(fs, parts, fmt, tmp)
        if store.local:
            os.replace(tmp, final)
    except BaseException as exc:
        if store.local:
            remove_quietly(tmp)
            if is_disk_full(exc):
                raise _disk_full(store, parts, file_name, exc) from exc
        raise
    return store.url(final), len(parts)


def _parts_missing(store: StateStore, missing: list[int], fmt: str) -> None:
    """Committed output that is gone: forget those mini-batches, and say so."""
    store.drop_records(set(missing))
    shown = ", ".join(str(i) for i in missing[:5])
    shown += ", ..." if len(missing) > 5 else ""
    raise JobError(
        f"{len(missing)} mini-batch(es) recorded as scored have no committed part "
        f"in {store.url(store.parts)} (mini-batches {shown}; e.g. "
        f"{store.part_path(missing[0], fmt).rsplit('/', 1)[-1]}): something "
        "removed them from the output folder; their records were dropped and no "
        "collected file was written: run the same step again to score them"
    )


def _assemble(fs, parts: list[str], fmt: str, target: str) -> list[str]:
    """Write the collected file ``target``; return the warnings (Parquet)."""
    if fmt == "parquet":
        return _assemble_parquet(fs, parts, target)
    if fmt == "csv":
        _assemble_csv(fs, parts, target)
        return []
    with _open_output(fs, target) as out:
        for part in parts:
            with fs.open(part, "rb") as f:
                while chunk := f.read(_COPY_CHUNK):
                    out.write(chunk)
    return []


def _disk_full(
    store: StateStore, parts: list[str], file_name: str, exc: BaseException
) -> DiskFullError:
    """The full disk, with about how much the collected file needs (the parts')."""
    needed = sum(os.path.getsize(p) for p in parts if os.path.exists(p))
    try:
        free: int | None = shutil.disk_usage(store.root).free
    except OSError:
        free = None
    return DiskFullError(
        store.root,
        what=f"the collected file {file_name}",
        needed=needed,
        free=free,
        code=getattr(exc, "errno", None),
    )


def _open_output(fs, path: str):
    """Open the collected file for writing, streamed.

    On blob storage it is uploaded in blocks (Put Block, then Put Block List at
    close), so the client holds one block, not the file: ``_UPLOAD_BLOCK``
    unless ``storage_options`` set a ``blocksize`` (adlfs' own default, 50 MiB,
    would hold any smaller output whole). A block blob has at most 50,000
    blocks: 16 MiB blocks allow a collected file of up to 781 GiB.
    """
    if is_local(fs):
        return fs.open(path, "wb")
    block = getattr(fs, "blocksize", None)
    if not block or block == getattr(type(fs), "DEFAULT_BLOCK_SIZE", 50 * 2**20):
        block = _UPLOAD_BLOCK
    return fs.open(path, "wb", block_size=block)


def _csv_header(line: bytes) -> list[str]:
    import csv

    return next(csv.reader([line.decode("utf-8").rstrip("\r\n")]), [])


def _assemble_csv(fs, parts: list[str], target: str) -> None:
    """Concatenate CSV parts under one header: the union of their columns.

    Parts whose header is the union are copied byte for byte; the others are
    rewritten field by field into the union's column order (values kept exactly
    as written, missing columns empty).
    """
    import csv

    headers: list[bytes] = []
    for part in parts:
        with fs.open(part, "rb") as f:
            headers.append(f.readline())
    columns: list[str] = []
    for line in headers:
        for name in _csv_header(line):
            if name not in columns:
                columns.append(name)
    with _open_output(fs, target) as out:
        if not parts:
            return
        union = io.StringIO()
        csv.writer(union, lineterminator="\n").writerow(columns)
        union_line = union.getvalue().encode("utf-8")
        out.write(union_line)
        for part, line in zip(parts, headers):
            with fs.open(part, "rb") as f:
                f.readline()
                if _csv_header(line) == columns:
                    while chunk := f.read(_COPY_CHUNK):
                        out.write(chunk)
                    continue
                names = _csv_header(line)
                text = io.TextIOWrapper(f, encoding="utf-8", newline="")
                buf = io.StringIO()
                writer = csv.writer(buf, lineterminator="\n")
                for row in csv.reader(text):
                    values = dict(zip(names, row))
                    writer.writerow([values.get(c, "") for c in columns])
                    if buf.tell() > _COPY_CHUNK:
                        out.write(buf.getvalue().encode("utf-8"))
                        buf.seek(0)
                        buf.truncate()
                out.write(buf.getvalue().encode("utf-8"))


def _unified_schema(schemas: list) -> tuple[Any, list[str]]:
    """One schema for all parts; columns whose types clash become strings."""
    import pyarrow as pa

    try:
        return pa.unify_schemas(schemas, promote_options="permissive"), []
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    names: list[str] = []
    types: dict[str, list] = {}
    for schema in schemas:
        for field in schema:
            if field.name not in types:
                names.append(field.name)
                types[field.name] = []
            types[field.name].append(field.type)
    fields, clashes = [], []
    for name in names:
        try:
            merged = pa.unify_schemas(
                [pa.schema([(name, t)]) for t in types[name]],
                promote_options="permissive",
            ).field(name)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            merged = pa.field(name, pa.large_string())
            kinds = sorted({str(t) for t in types[name]})
            clashes.append(
                f"column {name!r} has clashing types across mini-batches "
                f"({' vs '.join(kinds)}); written as strings"
            )
        fields.append(merged)
    return pa.schema(fields), clashes


def _cast_column(column, target):
    """Cast one column to the unified type (to strings when types clashed)."""
    import pyarrow as pa

    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        values = [None if v is None else str(v) for v in column.to_pylist()]
        return pa.array(values, type=target)


def _leaf_paths(schema) -> list[str]:
    """The Parquet leaf column paths of an Arrow schema ("a.b", "l.list.element")."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(schema.empty_table(), buf)
    meta = pq.ParquetFile(io.BytesIO(buf.getvalue())).metadata
    return [meta.schema.column(i).path for i in range(meta.num_columns)]


def _dictionary_columns(table) -> list[str]:
    """The columns of the collected file worth dictionary encoding.

    Judged on the first part: a column whose values repeat (at most half of them
    distinct) is dictionary encoded, one of unique values (ids, scores) is not,
    which saves building a dictionary that Parquet would throw away anyway.
    Nested columns keep dictionary encoding on all their leaves.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    chosen: list[str] = []
    nested: list[str] = []
    for field in table.schema:
        if pa.types.is_nested(field.type):
            nested.append(field.name)
            continue
        column = table[field.name]
        present = len(column) - column.null_count
        try:
            distinct = pc.count_distinct(column).as_py()
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
            distinct = 0  # a type without a hash kernel: keep the default
        if present and distinct <= present / 2:
            chosen.append(field.name)
    if nested:
        chosen += [
            path
            for path in _leaf_paths(table.schema)
            if path.split(".", 1)[0] in nested
        ]
    return chosen


def _assemble_parquet(fs, parts: list[str], target: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = []
    for part in parts:
        with fs.open(part, "rb") as f:
            schemas.append(pa.ipc.open_file(f).schema)
    warnings: list[str] = []
    if schemas:
        schema, warnings = _unified_schema(schemas)
    else:
        schema = pa.schema([("result", pa.string())])
    with _open_output(fs, target) as out:
        writer = None
        for part in parts:
            table = read_part_table(fs, part)
            if table.num_rows == 0:
                continue
            columns = []
            for field in schema:
                if field.name in table.column_names:
                    columns.append(_cast_column(table[field.name], field.type))
                else:
                    columns.append(pa.nulls(table.num_rows, field.type))
            table = pa.Table.from_arrays(columns, schema=schema)
            if writer is None:
                writer = pq.ParquetWriter(
                    out, schema, use_dictionary=_dictionary_columns(table)
                )
            writer.write_table(table)
        if writer is None:  # nothing to write: an empty but valid file
            writer = pq.ParquetWriter(out, schema)
        writer.close()
    return warnings
