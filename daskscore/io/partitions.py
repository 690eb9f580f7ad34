"""``partition_keys``: one mini-batch per combination of those columns' values.

Planning reads only the key columns of every file and counts the rows of each
combination; reading loads the files' rows (once per runner, cached across the
partitions of the same input) and keeps those of the mini-batch's combination.
"""

from __future__ import annotations

import re
from typing import Any

from .._protocol import MiniBatchSpec
from ..errors import DatasetError
from ..storage import url_to_fs
from ._common import WHOLE_FILE, fingerprint
from .parquet import read_parquet_file
from .text import parse_text, read_text_bytes


def _read_key_columns(
    fmt: str,
    path: str,
    keys: list[str],
    storage_options: dict[str, Any],
    read_options: dict[str, Any],
):
    import pandas as pd

    if fmt == "parquet":
        return read_parquet_file(path, storage_options, columns=keys).to_pandas()
    fs, fpath = url_to_fs(path, storage_options)
    with fs.open(fpath, "rb") as f:
        if fmt == "csv":
            return pd.read_csv(f, sep=read_options.get("separator", ","), usecols=keys)
        return pd.read_json(f, lines=True)[keys]


def plan_partitions(
    fmt: str,
    entries: list[tuple[str, Any, Any]],
    keys: list[str],
    storage_options: dict[str, Any],
    read_options: dict[str, Any],
) -> tuple[list[MiniBatchSpec], str]:
    """One mini-batch per distinct combination of ``keys``, in sorted order."""
    import pandas as pd

    paths = tuple(p for p, _, _ in entries)
    frames = []
    for path in paths:
        try:
            frames.append(
                _read_key_columns(fmt, path, keys, storage_options, read_options)
            )
        except (KeyError, ValueError) as exc:
            raise DatasetError(
                f"partition_keys {keys}: cannot read those columns from {path}: {exc}"
            ) from exc
    table = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=keys)
    )
    counts = table.groupby(keys, dropna=False, sort=True).size()
    specs = []
    for i, (values, count) in enumerate(counts.items()):
        values = values if isinstance(values, tuple) else (values,)
        key_values = tuple(
            (k, v.item() if hasattr(v, "item") else v) for k, v in zip(keys, values)
        )
        specs.append(
            MiniBatchSpec(
                index=i,
                kind="partition",
                paths=paths,
                items=int(count),
                key_values=key_values,
            )
        )
    return specs, fingerprint(entries, fmt, "partition_keys", keys)


def read_partition_table(
    spec: MiniBatchSpec, storage_options: dict[str, Any], read_options: dict[str, Any]
):
    """Every row of the files of a partition mini-batch, as one pandas DataFrame."""
    import pandas as pd

    fmt = read_options.get("format", "csv")
    frames = []
    for path in spec.paths:
        if fmt == "parquet":
            frames.append(read_parquet_file(path, storage_options).to_pandas())
            continue
        whole = MiniBatchSpec(
            index=spec.index, kind=fmt, paths=(path,), start=0, stop=WHOLE_FILE,
            source=spec.source,
        )
        data = read_text_bytes(whole, storage_options, read_options)
        # the key columns stay as planning read them (select_partition)
        frames.append(parse_text(data, fmt, read_options,
                                 keep=tuple(k for k, _ in spec.key_values)))
    return pd.concat(frames, ignore_index=True)


def select_partition(table, key_values: tuple[tuple[str, Any], ...]):
    """The rows of ``table`` whose key columns hold ``key_values`` (NaN matches NaN)."""
    import pandas as pd

    mask = pd.Series(True, index=table.index)
    for column, value in key_values:
        if value is None or (isinstance(value, float) and value != value):
            mask &= table[column].isna()
        else:
            mask &= table[column] == value
    return table[mask].reset_index(drop=True)


# -- FileDataset partition_format: key values from the files' folders and names --
_FORMAT_KEY = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def partition_format_keys(partition_format: str) -> list[str]:
    """The key names of a ``partition_format`` such as ``/{user}/{genres}.wav``."""
    if re.search(r"\{[^}]*:", partition_format):
        raise DatasetError(
            f"partition_format={partition_format!r}: typed keys such as "
            "'{PartitionDate:yyyy/MM/dd}' are not provided; name plain keys, e.g. "
            "'/{year}/{month}/{day}/data.csv'"
        )
    keys = _FORMAT_KEY.findall(partition_format)
    if not keys or len(set(keys)) != len(keys):
        raise DatasetError(
            f"partition_format={partition_format!r} must name each key once in "
            "braces, e.g. '/{user}/{season}/{genres}.wav'"
        )
    return keys


def _format_regex(partition_format: str) -> re.Pattern[str]:
    """The format as a pattern matching the end of a path: each key one path
    part (or part of one), ``*`` any characters within a part."""
    pattern, last = "", 0
    for match in _FORMAT_KEY.finditer(partition_format):
        pattern += re.escape(partition_format[last : match.start()])
        pattern += f"(?P<{match.group(1)}>[^/]+?)"
        last = match.end()
    pattern += re.escape(partition_format[last:])
    pattern = pattern.replace(r"\*", "[^/]*").lstrip("/")
    return re.compile(f"(?:^|/){pattern}$")


def file_key_values(path: str, root: str, partition_format: str) -> dict[str, str]:
    """The key values of one file: the format matched against the end of its
    path below ``root`` (DatasetError when it does not match)."""
    rel = path[len(root) :] if path.startswith(root) else path
    rel = rel.replace("\\", "/").lstrip("/")
    match = _format_regex(partition_format).search(rel)
    if match is None:
        raise DatasetError(
            f"{path} does not match partition_format={partition_format!r} (below "
            f"{root}); give a format that matches every file, or a path that "
            "selects only such files"
        )
    return match.groupdict()


def plan_file_partitions(
    entries: list[tuple[str, Any, Any]],
    root: str,
    partition_format: str,
    keys: list[str],
) -> tuple[list[MiniBatchSpec], str]:
    """One mini-batch of files per combination of ``keys``' values (parsed from
    the files' paths by ``partition_format``), in sorted key order."""
    known = partition_format_keys(partition_format)
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise DatasetError(
            f"partition_keys {keys}: {unknown} not in partition_format="
            f"{partition_format!r} (its keys: {known})"
        )
    groups: dict[tuple[str, ...], list[str]] = {}
    for path, _, _ in entries:
        values = file_key_values(path, root, partition_format)
        groups.setdefault(tuple(values[k] for k in keys), []).append(path)
    specs = [
        MiniBatchSpec(
            index=i,
            kind="files",
            paths=tuple(groups[combo]),
            items=len(groups[combo]),
            key_values=tuple(zip(keys, combo)),
        )
        for i, combo in enumerate(sorted(groups))
    ]
    return specs, fingerprint(entries, "files", "partition_format",
                              partition_format, keys)
