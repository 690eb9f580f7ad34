"""Mini-batch planning of file and tabular datasets, read back with the real reader.

No cluster: ``dataset.plan(size)`` gives the specs, and
``daskscore.runner.reader.Reader`` (the reader the runner processes use) turns each
spec into what ``run()`` receives.
"""

from __future__ import annotations

import gzip
import math
import os

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import daskscore as ds
from daskscore.runner.reader import Reader as _Reader

# -- helpers ----------------------------------------------------------------------


def reader(tmp_path, **read_options) -> _Reader:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    source = {"storage_options": {}, "read_options": dict(read_options)}
    return _Reader([source], str(scratch))


def read_specs(tmp_path, dataset, specs):
    """Every spec read with the real reader: list of (frame, items, problem)."""
    r = reader(tmp_path, **getattr(dataset, "read_options", {}))
    return [r.read(spec) for spec in specs]


def concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True)


def touch_files(folder, names) -> list[str]:
    out = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
        out.append(str(path))
    return out


def csv_frame(rows: int) -> pd.DataFrame:
    """Rows of varying byte length (so block edges fall everywhere in lines)."""
    return pd.DataFrame(
        {
            "id": range(rows),
            "name": [f"item-{i}" + "x" * (i % 13) for i in range(rows)],
            "score": [i * 7 % 101 for i in range(rows)],
            "label": [
                f'"quoted, {i}"' if i % 5 == 0 else f"plain{i}" for i in range(rows)
            ],
        }
    )


def assert_specs_numbered(specs) -> None:
    assert [s.index for s in specs] == list(range(len(specs)))


# -- FileDataset planning -----------------------------------------------------------


def test_file_plan_sorted_order_and_last_batch_shorter(tmp_path):
    names = [f"f{i:02d}.png" for i in (7, 3, 11, 0, 5, 9, 1, 2, 10, 4, 8, 6)]
    touch_files(tmp_path, names)
    dataset = ds.Dataset.File.from_files(str(tmp_path / "*.png"))

    specs, fingerprint = dataset.plan("5")

    assert [len(s.paths) for s in specs] == [5, 5, 2]
    assert [s.items for s in specs] == [5, 5, 2]
    assert all(s.kind == "files" for s in specs)
    assert_specs_numbered(specs)
    flat = [p for s in specs for p in s.paths]
    assert flat == sorted(str(tmp_path / n) for n in names)
    assert isinstance(fingerprint, str) and fingerprint


def test_file_plan_default_size_is_ten(tmp_path):
    touch_files(tmp_path, [f"f{i:02d}.bin" for i in range(23)])
    specs, _ = ds.Dataset.File.from_files(str(tmp_path)).plan(None)
    assert [s.items for s in specs] == [10, 10, 3]


def test_file_plan_int_size_and_exact_multiple(tmp_path):
    touch_files(tmp_path, [f"f{i}.bin" for i in range(6)])
    specs, _ = ds.Dataset.File.from_files(str(tmp_path / "*.bin")).plan(3)
    assert [s.items for s in specs] == [3, 3]


def test_file_plan_rejects_byte_size(tmp_path):
    touch_files(tmp_path, ["a.bin"])
    with pytest.raises(ds.ConfigError) as excinfo:
        ds.Dataset.File.from_files(str(tmp_path)).plan("1MB")
    assert excinfo.value.field == "mini_batch_size"


def test_file_plan_folder_is_recursive(tmp_path):
    touch_files(tmp_path, ["b/2.txt", "a/deep/er/1.txt", "top.txt", "a/0.txt"])
    specs, _ = ds.Dataset.File.from_files(str(tmp_path)).plan(100)
    assert len(specs) == 1
    assert list(specs[0].paths) == sorted(
        str(tmp_path / n) for n in ["b/2.txt", "a/deep/er/1.txt", "top.txt", "a/0.txt"]
    )


def test_file_plan_folder_lists_files_not_folders(tmp_path):
    touch_files(tmp_path, ["x/1.txt"])
    (tmp_path / "empty-dir").mkdir()
    specs, _ = ds.Dataset.File.from_files(str(tmp_path)).plan(10)
    assert specs[0].paths == (str(tmp_path / "x" / "1.txt"),)


def test_file_plan_single_file(tmp_path):
    (path,) = touch_files(tmp_path, ["only.txt"])
    specs, _ = ds.Dataset.File.from_files(path).plan(10)
    assert [s.paths for s in specs] == [(path,)]


def test_file_plan_list_input_sorted_and_missing_kept(tmp_path):
    paths = touch_files(tmp_path, ["c.txt", "a.txt", "b.txt"])
    missing = str(tmp_path / "0-missing.txt")
    dataset = ds.Dataset.File.from_files([*paths, missing])

    specs, _ = dataset.plan(2)

    assert [list(s.paths) for s in specs] == [
        [missing, str(tmp_path / "a.txt")],
        [str(tmp_path / "b.txt"), str(tmp_path / "c.txt")],
    ]
    # the missing file fails at read time; the other file of its batch is still read
    good, items, problem = reader(tmp_path).read(specs[0])
    assert good == [str(tmp_path / "a.txt")]
    assert items == 2
    assert problem is not None and "0-missing.txt" in problem
    good, items, problem = reader(tmp_path).read(specs[1])
    assert (good, items, problem) == (list(specs[1].paths), 2, None)


def test_file_plan_list_accepts_pathlike(tmp_path):
    paths = touch_files(tmp_path, ["b.txt", "a.txt"])
    from pathlib import Path

    specs, _ = ds.Dataset.File.from_files([Path(p) for p in paths]).plan(10)
    assert specs[0].paths == tuple(sorted(paths))


def test_file_to_path_matches_plan_order(tmp_path):
    touch_files(tmp_path, ["z.txt", "m.txt", "a.txt"])
    dataset = ds.Dataset.File.from_files(str(tmp_path / "*.txt"))
    specs, _ = dataset.plan(1)
    assert dataset.to_path() == [s.paths[0] for s in specs]


def test_glob_matching_nothing_raises_dataset_error(tmp_path):
    pattern = str(tmp_path / "nothing-here" / "*.png")
    with pytest.raises(ds.DatasetError) as excinfo:
        ds.Dataset.File.from_files(pattern).plan(10)
    assert isinstance(excinfo.value, ValueError)
    assert pattern in str(excinfo.value)


def test_empty_folder_raises_dataset_error(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(ds.DatasetError) as excinfo:
        ds.Dataset.File.from_files(str(folder)).plan(10)
    assert str(folder) in str(excinfo.value)


def test_missing_path_raises_dataset_error(tmp_path):
    path = str(tmp_path / "no-such-file.csv")
    with pytest.raises(ds.DatasetError) as excinfo:
        ds.Dataset.Tabular.from_delimited_files(path).plan("1MB")
    assert path in str(excinfo.value)
    assert "does not exist" in str(excinfo.value)


def test_empty_list_raises_dataset_error():
    with pytest.raises(ds.DatasetError, match="empty"):
        ds.Dataset.File.from_files([]).plan(10)


def test_file_dataset_rejects_non_path():
    with pytest.raises(ds.DatasetError) as excinfo:
        ds.FileDataset(42)
    assert "42" in str(excinfo.value)


def test_from_dask_dataframe_rejects_pandas():
    with pytest.raises(ds.DatasetError, match="DataFrame"):
        ds.Dataset.Tabular.from_dask_dataframe(pd.DataFrame({"a": [1]}))


def test_home_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    touch_files(tmp_path, ["h.txt"])
    specs, _ = ds.Dataset.File.from_files("~/h.txt").plan(10)
    assert specs[0].paths == (str(tmp_path / "h.txt"),)


# -- CSV split by bytes -----------------------------------------------------------


@pytest.mark.parametrize("trailing_newline", [True, False])
@pytest.mark.parametrize("size", [1, 5, 17, 64, 100, 333, 1000, 4096, "1MB"])
def test_csv_byte_split_reads_every_row_once_in_order(tmp_path, size, trailing_newline):
    # one read per spec: keep the tiny-block cases small
    expected = csv_frame(15 if size in (1, 5) else 120)
    path = tmp_path / "data.csv"
    text = expected.to_csv(index=False)
    if not trailing_newline:
        text = text.rstrip("\n")
    path.write_text(text)
    file_size = os.path.getsize(path)
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))

    specs, _ = dataset.plan(size)

    nbytes = 1024**2 if size == "1MB" else size
    assert len(specs) == math.ceil(file_size / nbytes)
    assert_specs_numbered(specs)
    assert all(s.kind == "csv" and s.paths == (str(path),) for s in specs)
    # the byte ranges tile the file
    assert specs[0].start == 0 and specs[-1].stop == file_size
    assert all(a.stop == b.start for a, b in zip(specs, specs[1:]))

    results = read_specs(tmp_path, dataset, specs)
    assert all(problem is None for _, _, problem in results)
    assert [items for _, items, _ in results] == [len(f) for f, _, _ in results]
    for frame, _, _ in results:  # header re-attached: every block has the columns
        assert list(frame.columns) == list(expected.columns)
    got = concat(f for f, _, _ in results)
    pd.testing.assert_frame_equal(got, expected)


def test_csv_blocks_smaller_than_a_line_give_empty_mini_batches(tmp_path):
    path = tmp_path / "wide.csv"
    expected = pd.DataFrame({"a": ["x" * 50, "y" * 50, "z" * 50], "b": [1, 2, 3]})
    expected.to_csv(path, index=False)
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))
    specs, _ = dataset.plan(3)
    results = read_specs(tmp_path, dataset, specs)
    counts = [items for _, items, _ in results]
    assert sum(counts) == 3
    assert counts.count(0) == len(specs) - 3
    assert max(counts) == 1
    pd.testing.assert_frame_equal(concat(f for f, _, _ in results), expected)


def test_csv_without_header_and_tab_separator(tmp_path):
    path = tmp_path / "data.tsv"
    lines = [f"{i}\tname {i}\t{i * 1.5}" for i in range(50)]
    path.write_text("\n".join(lines) + "\n")
    dataset = ds.Dataset.Tabular.from_delimited_files(
        str(path), separator="\t", header=False
    )
    specs, _ = dataset.plan(97)
    assert len(specs) > 3
    got = concat(f for f, _, _ in read_specs(tmp_path, dataset, specs))
    assert list(got.columns) == [0, 1, 2]
    assert got[0].tolist() == list(range(50))
    assert got[1].tolist() == [f"name {i}" for i in range(50)]
    assert got[2].tolist() == [i * 1.5 for i in range(50)]


def test_csv_mini_batch_never_spans_two_files(tmp_path):
    frames = {}
    for name, rows in [("b.csv", 40), ("a.csv", 7), ("c.csv", 1)]:
        frames[name] = csv_frame(rows).assign(source=name)
        frames[name].to_csv(tmp_path / name, index=False)
    dataset = ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "*.csv"))

    specs, _ = dataset.plan(200)

    assert_specs_numbered(specs)
    assert all(len(s.paths) == 1 for s in specs)
    files_in_order = [s.paths[0] for s in specs]
    assert files_in_order == sorted(files_in_order)
    assert {os.path.basename(p) for p in files_in_order} == set(frames)
    results = read_specs(tmp_path, dataset, specs)
    for spec, (frame, _, _) in zip(specs, results):
        if len(frame):
            assert set(frame["source"]) == {os.path.basename(spec.paths[0])}
    got = concat(f for f, _, _ in results)
    expected = pd.concat([frames[n] for n in sorted(frames)], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected)


def test_small_csv_files_are_one_mini_batch_each(tmp_path):
    for name in ("x.csv", "y.csv"):
        csv_frame(3).to_csv(tmp_path / name, index=False)
    specs, _ = ds.Dataset.Tabular.from_delimited_files(str(tmp_path)).plan("1MB")
    assert [(os.path.basename(s.paths[0]), s.start) for s in specs] == [
        ("x.csv", 0), ("y.csv", 0)
    ]


def test_empty_csv_file_has_no_mini_batches(tmp_path):
    (tmp_path / "a.csv").write_text("")
    csv_frame(2).to_csv(tmp_path / "b.csv", index=False)
    specs, _ = ds.Dataset.Tabular.from_delimited_files(str(tmp_path)).plan(10)
    assert {s.paths[0] for s in specs} == {str(tmp_path / "b.csv")}


def test_compressed_csv_is_one_mini_batch_and_readable(tmp_path):
    expected = csv_frame(200)
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as f:
        expected.to_csv(f, index=False)
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))
    specs, _ = dataset.plan(64)  # far smaller than the file: still not split
    assert len(specs) == 1
    frame, items, problem = read_specs(tmp_path, dataset, specs)[0]
    assert problem is None and items == 200
    pd.testing.assert_frame_equal(frame, expected)


def test_unparseable_csv_block_is_a_read_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b'a,b\n1,2\n"unclosed,3\n')
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))
    specs, _ = dataset.plan("1MB")
    frame, items, problem = read_specs(tmp_path, dataset, specs)[0]
    assert frame is None
    assert items == 2  # the rows it held, not 1
    assert problem


# -- JSON lines ------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 40, 200, "1MB"])
def test_json_lines_split_reads_every_row_once(tmp_path, size):
    rows = 15 if size == 1 else 60
    expected = pd.DataFrame(
        {"id": range(rows), "text": [f"row {i} " + "." * (i % 9) for i in range(rows)]}
    )
    path = tmp_path / "rows.jsonl"
    expected.to_json(path, orient="records", lines=True)
    dataset = ds.Dataset.Tabular.from_json_lines_files(str(path))

    specs, _ = dataset.plan(size)

    assert all(s.kind == "jsonl" for s in specs)
    if size != "1MB":
        assert len(specs) == math.ceil(os.path.getsize(path) / size)
    results = read_specs(tmp_path, dataset, specs)
    assert all(problem is None for _, _, problem in results)
    pd.testing.assert_frame_equal(concat(f for f, _, _ in results), expected)


# -- Parquet ----------------------------------------------------------------------


def write_parquet(
    path, rows: int, row_group_size: int, offset: int = 0
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": pd.Series(range(offset, offset + rows), dtype="int64"),
            "value": [float(i) / 3 for i in range(rows)],
            "tag": [f"t{i % 17}" for i in range(rows)],
        }
    )
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False),
        path,
        row_group_size=row_group_size,
    )
    return frame


def row_group_bytes(path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)]


def test_parquet_small_row_groups_are_grouped(tmp_path):
    path = tmp_path / "p.parquet"
    expected = write_parquet(path, rows=1000, row_group_size=100)
    sizes = row_group_bytes(path)
    assert len(sizes) == 10
    size = sum(sizes[:3]) + 1  # room for three row groups, not four
    dataset = ds.Dataset.Tabular.from_parquet_files(str(path))

    specs, _ = dataset.plan(size)

    assert all(s.kind == "parquet" for s in specs)
    assert [s.row_groups for s in specs][0] == (0, 1, 2)
    groups = [g for s in specs for g in s.row_groups]
    assert groups == list(range(10))  # every row group once, in order
    assert all(len(s.row_groups) <= 3 for s in specs)
    assert sum(s.items for s in specs) == 1000
    results = read_specs(tmp_path, dataset, specs)
    assert [items for _, items, _ in results] == [s.items for s in specs]
    pd.testing.assert_frame_equal(concat(f for f, _, _ in results), expected)


def test_parquet_whole_file_fits_one_mini_batch(tmp_path):
    path = tmp_path / "p.parquet"
    expected = write_parquet(path, rows=300, row_group_size=50)
    dataset = ds.Dataset.Tabular.from_parquet_files(str(path))
    specs, _ = dataset.plan("1MB")
    assert len(specs) == 1
    assert specs[0].row_groups == tuple(range(6))
    frame, items, _ = read_specs(tmp_path, dataset, specs)[0]
    assert items == 300
    pd.testing.assert_frame_equal(frame, expected)


@pytest.mark.parametrize("divisor", [2, 3, 7, 10_000])
def test_parquet_big_row_group_is_sliced_by_rows(tmp_path, divisor):
    path = tmp_path / "big.parquet"
    expected = write_parquet(path, rows=1001, row_group_size=1001)
    (nbytes,) = row_group_bytes(path)
    size = max(nbytes // divisor, 1)
    dataset = ds.Dataset.Tabular.from_parquet_files(str(path))

    specs, _ = dataset.plan(size)

    assert len(specs) > 1
    assert len(specs) <= 1001  # never more pieces than rows
    assert all(s.row_groups == (0,) for s in specs)
    assert specs[0].start == 0 and specs[-1].stop == 1001
    assert all(a.stop == b.start for a, b in zip(specs, specs[1:]))
    results = read_specs(tmp_path, dataset, specs)
    assert [items for _, items, _ in results] == [s.stop - s.start for s in specs]
    got = concat(f for f, _, _ in results)
    assert not got["id"].duplicated().any()
    pd.testing.assert_frame_equal(got, expected)


def test_parquet_mixed_big_and_small_row_groups(tmp_path):
    path = tmp_path / "mixed.parquet"
    frame = write_parquet(tmp_path / "src.parquet", rows=700, row_group_size=700)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table.slice(0, 20))
        writer.write_table(table.slice(20, 600))
        writer.write_table(table.slice(620, 30))
        writer.write_table(table.slice(650, 50))
    sizes = row_group_bytes(path)
    size = sizes[0] + sizes[2] // 2  # row group 1 is far bigger than this
    assert sizes[1] > size
    dataset = ds.Dataset.Tabular.from_parquet_files(str(path))

    specs, _ = dataset.plan(size)

    assert specs[0].row_groups == (0,)
    assert sum(1 for s in specs if s.row_groups == (1,)) > 1
    results = read_specs(tmp_path, dataset, specs)
    got = concat(f for f, _, _ in results)
    assert got["id"].is_unique
    pd.testing.assert_frame_equal(got, frame)


def test_parquet_mini_batch_never_spans_two_files(tmp_path):
    a = write_parquet(tmp_path / "a.parquet", rows=30, row_group_size=10)
    b = write_parquet(tmp_path / "b.parquet", rows=25, row_group_size=10, offset=30)
    dataset = ds.Dataset.Tabular.from_parquet_files(str(tmp_path / "*.parquet"))
    specs, _ = dataset.plan("1GB")
    assert [os.path.basename(s.paths[0]) for s in specs] == ["a.parquet", "b.parquet"]
    assert [s.items for s in specs] == [30, 25]
    assert_specs_numbered(specs)
    got = concat(f for f, _, _ in read_specs(tmp_path, dataset, specs))
    pd.testing.assert_frame_equal(got, pd.concat([a, b], ignore_index=True))


def test_corrupt_parquet_is_one_error_spec(tmp_path):
    good = write_parquet(tmp_path / "a.parquet", rows=10, row_group_size=10)
    (tmp_path / "b.parquet").write_bytes(b"this is not parquet at all" * 10)
    dataset = ds.Dataset.Tabular.from_parquet_files(str(tmp_path))

    specs, _ = dataset.plan("1MB")

    assert [s.kind for s in specs] == ["parquet", "error"]
    bad = specs[1]
    assert bad.items == 1
    assert bad.paths == (str(tmp_path / "b.parquet"),)
    assert bad.error and "Parquet" in bad.error
    assert bad.index == 1
    results = read_specs(tmp_path, dataset, specs)
    pd.testing.assert_frame_equal(results[0][0], good)
    frame, items, problem = results[1]
    assert frame is None and items == 1 and problem == bad.error


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_missing_file_in_a_tabular_list_is_an_error_spec(tmp_path, fmt):
    good = tmp_path / f"a.{fmt}"
    if fmt == "csv":
        csv_frame(5).to_csv(good, index=False)
        dataset = ds.Dataset.Tabular.from_delimited_files(
            [str(tmp_path / "b.csv"), str(good)])
    else:
        write_parquet(good, rows=5, row_group_size=5)
        dataset = ds.Dataset.Tabular.from_parquet_files(
            [str(tmp_path / "b.parquet"), str(good)])
    specs, _ = dataset.plan("1MB")
    assert [(s.kind, os.path.basename(s.paths[0])) for s in specs] == [
        (fmt, f"a.{fmt}"), ("error", f"b.{fmt}")
    ]
    frame, items, problem = read_specs(tmp_path, dataset, specs)[1]
    assert frame is None and items == 1 and problem


def test_truncated_parquet_is_an_error_spec(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(path, rows=100, row_group_size=10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    specs, _ = ds.Dataset.Tabular.from_parquet_files(str(path)).plan("1MB")
    assert [(s.kind, s.items) for s in specs] == [("error", 1)]


def test_from_dask_dataframe_one_spec_per_partition():
    frame = pd.DataFrame({"a": range(10)})
    ddf = dd.from_pandas(frame, npartitions=4)
    dataset = ds.Dataset.Tabular.from_dask_dataframe(ddf)
    specs, fp1 = dataset.plan("1MB")
    assert [(s.kind, s.index, s.start) for s in specs] == [
        ("frame", i, i) for i in range(ddf.npartitions)
    ]
    _, fp2 = ds.Dataset.Tabular.from_dask_dataframe(ddf).plan("1MB")
    _, fp3 = ds.Dataset.Tabular.from_dask_dataframe(ddf + 1).plan("1MB")
    assert fp1 == fp2
    assert fp1 != fp3


# -- fingerprint ----------------------------------------------------------------------


def test_file_fingerprint_stable_and_sensitive(tmp_path):
    touch_files(tmp_path, ["a.bin", "b.bin", "c.bin"])
    dataset = ds.Dataset.File.from_files(str(tmp_path / "*.bin"))
    _, fp = dataset.plan(2)

    assert dataset.plan(2)[1] == fp  # planning again: same
    assert ds.Dataset.File.from_files(str(tmp_path / "*.bin")).plan("2")[1] == fp
    assert dataset.plan(3)[1] != fp  # another mini-batch size

    path = tmp_path / "b.bin"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    _, fp_mtime = dataset.plan(2)
    assert fp_mtime != fp

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dataset.plan(2)[1] == fp  # back to the same state: same fingerprint

    path.write_bytes(b"a different length")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size alone changed
    assert dataset.plan(2)[1] not in (fp, fp_mtime)


def test_file_fingerprint_changes_when_a_file_is_added(tmp_path):
    touch_files(tmp_path, ["a.bin"])
    dataset = ds.Dataset.File.from_files(str(tmp_path))
    _, fp = dataset.plan(10)
    touch_files(tmp_path, ["b.bin"])
    assert dataset.plan(10)[1] != fp


def test_tabular_fingerprint_stable_and_sensitive(tmp_path):
    path = tmp_path / "t.csv"
    csv_frame(20).to_csv(path, index=False)
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))
    _, fp = dataset.plan("1KB")
    assert dataset.plan(1024)[1] == fp
    assert dataset.plan("2KB")[1] != fp
    other_sep = ds.Dataset.Tabular.from_delimited_files(str(path), separator=";")
    assert other_sep.plan("1KB")[1] != fp

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 3_000_000_000))
    assert dataset.plan("1KB")[1] != fp


def test_parquet_fingerprint_changes_with_content(tmp_path):
    path = tmp_path / "p.parquet"
    write_parquet(path, rows=10, row_group_size=10)
    dataset = ds.Dataset.Tabular.from_parquet_files(str(path))
    _, fp = dataset.plan("1MB")
    assert dataset.plan("1MB")[1] == fp
    stat = path.stat()
    write_parquet(path, rows=11, row_group_size=10)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dataset.plan("1MB")[1] != fp


# -- describe() -----------------------------------------------------------------------


def test_spec_describe_names_the_input(tmp_path):
    paths = touch_files(tmp_path, ["a.txt", "b.txt"])
    specs, _ = ds.Dataset.File.from_files(paths).plan(2)
    text = specs[0].describe()
    assert paths[0] in text and paths[1] in text and "2 files" in text
    specs, _ = ds.Dataset.File.from_files(paths).plan(1)
    assert specs[1].describe() == paths[1]


def test_folder_listing_leaves_out_dot_files_and_table_marker_files(tmp_path):
    """A folder written by Spark or dask holds _SUCCESS / .crc files: not data."""
    table = tmp_path / "table"
    table.mkdir()
    pd.DataFrame({"x": range(5)}).to_parquet(table / "part-0.parquet")
    (table / "_SUCCESS").write_text("")
    (table / ".part-0.parquet.crc").write_bytes(b"\x00\x01")
    specs, _ = ds.Dataset.Tabular.from_parquet_files(str(table)).plan("1MB")
    assert [s.kind for s in specs] == ["parquet"]
    assert sum(s.items for s in specs) == 5

    images = tmp_path / "images"
    images.mkdir()
    for name in ("_0.png", "a.png", ".DS_Store"):
        (images / name).write_bytes(b"png")
    files = ds.Dataset.File.from_files(str(images)).to_path()
    assert [os.path.basename(p) for p in files] == ["_0.png", "a.png"]


def test_folder_listing_walks_subfolders_links_once_and_gives_sizes(tmp_path):
    from daskscore.storage import list_inputs as _list_files

    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    (root / "x.txt").write_bytes(b"12")
    (root / "a" / "y.txt").write_bytes(b"123")
    (root / "a" / "b" / "z.txt").write_bytes(b"1234")
    (root / ".hidden").write_bytes(b"h")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    entries = _list_files(str(root), None)
    got = [(os.path.relpath(p, root), size) for p, size, _ in entries]
    # the link back to the root is not walked again (each folder once), and the
    # hidden file is skipped
    assert got == [("a/b/z.txt", 4), ("a/y.txt", 3), ("x.txt", 2)]
    assert all(isinstance(m, float) for _, _, m in entries)


def test_two_inputs_with_the_same_parquet_path_are_read_from_their_own_storage(
        tmp_path):
    """The reader's table cache is per input: same path string, other storage."""
    from daskscore.datasets import MiniBatchSpec
    from daskscore.runner.reader import Reader as _Reader

    for root, letter in ((tmp_path / "a", "A"), (tmp_path / "b", "B")):
        root.mkdir()
        pq.write_table(pa.table({"v": [letter] * 4}), root / "x.parquet",
                       row_group_size=4)
    sources = [{"storage_options": {"path": str(tmp_path / name)},
                "read_options": {"format": "parquet"}} for name in ("a", "b")]
    reader = _Reader(sources, str(tmp_path))
    got = []
    for index, source in enumerate((0, 1)):
        spec = MiniBatchSpec(index=index, kind="parquet", paths=("dir://x.parquet",),
                             row_groups=(0,), start=0, stop=2, items=2, source=source)
        frame, _, problem = reader.read(spec)
        assert problem is None, problem
        got.append(frame["v"].tolist())
    assert got == [["A", "A"], ["B", "B"]]


# -- datasets from their format names ---------------------------------------------


@pytest.mark.parametrize("fmt, cls, table_format", [
    ("files", ds.FileDataset, None),
    ("file", ds.FileDataset, None),
    ("csv", ds.TabularDataset, "csv"),
    ("parquet", ds.TabularDataset, "parquet"),
    ("jsonl", ds.TabularDataset, "jsonl"),
])
def test_dataset_from_format_builds_every_format(tmp_path, fmt, cls, table_format):
    from daskscore.datasets import dataset_from_format

    path = str(tmp_path / "in")
    dataset = dataset_from_format(fmt, path, {"auto_mkdir": True})
    assert type(dataset) is cls
    assert dataset.path == path
    assert dataset.storage_options == {"auto_mkdir": True}
    assert getattr(dataset, "format", None) == table_format
    if fmt == "csv":  # the defaults of Dataset.Tabular.from_delimited_files
        assert dataset.read_options == {"separator": ",", "header": True}
    elif cls is ds.TabularDataset:
        assert dataset.read_options == {}


def test_dataset_from_format_keeps_the_csv_read_options(tmp_path):
    from daskscore.datasets import dataset_from_format

    path = str(tmp_path / "t.tsv")
    read = {"separator": "\t", "header": False, "support_multi_line": True}
    dataset = dataset_from_format("csv", [path], None, read)
    assert dataset.path == [path]
    assert dataset.read_options == read
    assert dataset.read_options == ds.Dataset.Tabular.from_delimited_files(
        [path], separator="\t", header=False, support_multi_line=True
    ).read_options
    single = dataset_from_format("csv", path, None, {"support_multi_line": False})
    assert "support_multi_line" not in single.read_options


def test_dataset_from_format_rejects_an_unknown_format(tmp_path):
    from daskscore.datasets import dataset_from_format

    with pytest.raises(ds.ConfigError) as excinfo:
        dataset_from_format("xlsx", str(tmp_path / "t.xlsx"))
    assert excinfo.value.field == "format"
    assert "'jsonl'" in str(excinfo.value)


# -- quoted line breaks across byte ranges (B2) ------------------------------------


@pytest.fixture
def daskscore_log(caplog):
    """Records of the "daskscore" logger (the CLI may have stopped it propagating)."""
    import logging

    logger = logging.getLogger("daskscore")
    old = logger.propagate
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="daskscore"):
        yield caplog
    logger.propagate = old


def write_multi_line_csv(path, rows: int = 3000, every: int = 3) -> pd.DataFrame:
    """The reproduction of B2: every third value holds a quoted line break (and
    escaped "" quotes, so that quote parity alone would not do)."""
    expected = pd.DataFrame({
        "id": range(1, rows + 1),
        "text": [f'line one of {i}\nline two of {i} ""{i % 7}""' if i % every == 0
                 else f"plain {i}, with a comma" for i in range(1, rows + 1)],
    })
    expected.to_csv(path, index=False)
    return expected


def test_csv_with_quoted_line_breaks_is_read_whole_with_one_warning(
        tmp_path, daskscore_log):
    path = tmp_path / "multi.csv"
    expected = write_multi_line_csv(path)
    assert os.path.getsize(path) > 8 * 1024 * 10
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))

    specs, _ = dataset.plan("8KB")

    # the file is not cut at all: one mini-batch, the whole file
    assert [(s.start, s.stop) for s in specs] == [(0, os.path.getsize(path))]
    warnings = [r.getMessage() for r in daskscore_log.records
                if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and "support_multi_line=True" in warnings[0]
    ((frame, items, problem),) = read_specs(tmp_path, dataset, specs)
    assert problem is None and items == 3000
    pd.testing.assert_frame_equal(frame, expected)


def test_csv_quoted_line_breaks_past_the_planning_scan_fail_with_their_rows(
        tmp_path):
    """Ranges whose edge falls inside a quoted value fail as READ_ERROR with the
    rows they hold; every other range reads its rows intact; no garbage row."""
    import dask

    path = tmp_path / "multi.csv"
    expected = write_multi_line_csv(path)
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))
    with dask.config.set({"daskscore.csv.quote-scan": 0}):
        specs, _ = dataset.plan("8KB")
    assert len(specs) > 10

    results = read_specs(tmp_path, dataset, specs)

    failed = [(items, problem) for frame, items, problem in results if problem]
    assert failed, "some range edges fall inside quoted values"
    for _, problem in failed:
        assert "support_multi_line=True" in problem and "--csv-multi-line" in problem
        assert str(path) in problem
    # each row is counted once: by the range that scored it, or the one that failed
    assert sum(items for _, items, _ in results) == 3000
    good = concat(f for f, _, p in results if p is None)
    assert good["id"].dtype.kind == "i"  # no text in the id column: no garbage row
    by_id = expected.set_index("id")
    assert good["id"].is_unique
    assert good["text"].tolist() == by_id.loc[good["id"], "text"].tolist()
    assert len(good) + sum(items for items, _ in failed) == 3000


def test_csv_range_of_rows_after_a_multi_line_value_still_reads(tmp_path):
    """A range whose own bytes are in doubt is checked from the file start: where
    its edges are row ends after all, it reads."""
    import dask

    path = tmp_path / "one.csv"
    rows = [f"{i},plain {i}" for i in range(400)]
    rows[3] = '3,"first\nsecond"'  # the only quoted line break, early
    rows[300] = '300,12"'          # a stray quote (text) that ends a field
    path.write_text("id,text\n" + "\n".join(rows) + "\n")
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))
    with dask.config.set({"daskscore.csv.quote-scan": 0}):
        specs, _ = dataset.plan(256)
    results = read_specs(tmp_path, dataset, specs)
    assert [p for _, _, p in results if p] == []
    got = concat(f for f, _, _ in results)
    assert got["id"].tolist() == list(range(400))
    assert got["text"][3] == "first\nsecond" and got["text"][300] == '12"'


def test_csv_with_stray_quotes_and_no_line_breaks_is_still_split(tmp_path):
    path = tmp_path / "inches.csv"
    expected = pd.DataFrame({"id": range(300),
                             "size": [f'{i % 30}" pipe' for i in range(300)]})
    path.write_text("id,size\n" + "".join(f"{i},{s}\n" for i, s in
                                          zip(expected["id"], expected["size"])))
    dataset = ds.Dataset.Tabular.from_delimited_files(str(path))
    specs, _ = dataset.plan(512)
    assert len(specs) > 5
    results = read_specs(tmp_path, dataset, specs)
    assert all(p is None for _, _, p in results)
    pd.testing.assert_frame_equal(concat(f for f, _, _ in results), expected)


def test_broken_json_line_counts_every_line_and_names_the_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [f'{{"id": {i}, "text": "row {i}"}}' for i in range(60)]
    lines[16] = '{"id": 16, "text": "row 16"'  # line 17 lost its closing brace
    path.write_text("\n".join(lines) + "\n")
    dataset = ds.Dataset.Tabular.from_json_lines_files(str(path))

    (whole,) = dataset.plan("1MB")[0]
    frame, items, problem = read_specs(tmp_path, dataset, [whole])[0]
    assert frame is None and items == 60
    assert f"line 17 of {path}" in problem

    specs, _ = dataset.plan(400)
    results = read_specs(tmp_path, dataset, specs)
    bad = [(items, problem) for _, items, problem in results if problem]
    assert len(bad) == 1
    items, problem = bad[0]
    assert items > 1 and "line " in problem and "of the mini-batch" in problem
    assert sum(i for _, i, _ in results) == 60


def test_latin1_csv_needs_its_encoding_and_reads_with_it(tmp_path):
    path = tmp_path / "latin.csv"
    expected = pd.DataFrame({"id": [1, 2], "city": ["Zürich", "Genève"]})
    path.write_bytes(expected.to_csv(index=False).encode("latin-1"))

    plain = ds.Dataset.Tabular.from_delimited_files(str(path))
    frame, items, problem = read_specs(tmp_path, plain, plain.plan("1MB")[0])[0]
    assert frame is None and items == 2
    assert "encoding='latin-1'" in problem and "--encoding" in problem
    assert str(path) in problem and len(problem.splitlines()) == 1

    latin = ds.Dataset.Tabular.from_delimited_files(str(path), encoding="latin-1")
    assert latin.read_options["encoding"] == "latin-1"
    specs, _ = latin.plan(16)  # split into ranges: each reads with the encoding
    got = concat(f for f, _, _ in read_specs(tmp_path, latin, specs))
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(latin.to_pandas_dataframe(), expected)


def test_latin1_json_lines_read_with_their_encoding(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"city": "Genève"}\n{"city": "Zürich"}\n'.encode("latin-1"))
    dataset = ds.Dataset.Tabular.from_json_lines_files(str(path), encoding="latin-1")
    frame, items, problem = read_specs(tmp_path, dataset, dataset.plan("1MB")[0])[0]
    assert problem is None
    assert frame["city"].tolist() == ["Genève", "Zürich"]


def test_encoding_is_kept_by_dataset_from_format_and_checked(tmp_path):
    from daskscore.datasets import dataset_from_format

    path = str(tmp_path / "t.csv")
    csv = dataset_from_format("csv", path, None, {"encoding": "latin-1"})
    assert csv.read_options["encoding"] == "latin-1"
    jsonl = dataset_from_format("jsonl", path, None, {"encoding": "cp1252"})
    assert jsonl.read_options == {"encoding": "cp1252"}
    with pytest.raises(ds.DatasetError, match="encoding='klingon'"):
        ds.Dataset.Tabular.from_delimited_files(path, encoding="klingon")


def test_encoding_survives_a_step_rebuilt_from_its_settings(tmp_path):
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(b): return b\n")
    inputs = [ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "a.csv"),
                                                      encoding="latin-1"),
              ds.Dataset.Tabular.from_json_lines_files(str(tmp_path / "a.jsonl"),
                                                       encoding="cp1252")]
    step = ds.ParallelRunStep(
        name="enc-step", inputs=inputs, output=str(tmp_path / "out"),
        parallel_run_config=ds.ParallelRunConfig(
            entry_script=str(tmp_path / "score.py")))
    again = ds.ParallelRunStep.from_settings(step.settings())
    assert [d.read_options.get("encoding") for d in again.inputs] == [
        "latin-1", "cp1252"]


# -- what a resume looks at: change times (issue 12) ------------------------------
def test_a_retargeted_link_is_a_change_for_a_resume(tmp_path):
    """A file link or a folder link pointed elsewhere (same names, same sizes,
    old times) keeps its targets' change times: the links' own show it."""
    from daskscore.storage import files_clock

    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "a.txt").write_text(version)
    (tmp_path / "in").mkdir()
    os.symlink(tmp_path / "v1" / "a.txt", tmp_path / "in" / "a.txt")
    os.symlink(tmp_path / "v1", tmp_path / "current")
    by_file = ds.Dataset.File.from_files(str(tmp_path / "in"))
    by_folder = ds.Dataset.File.from_files(str(tmp_path / "current"))
    since = files_clock()
    assert not by_file.changed_since(since) and not by_folder.changed_since(since)
    os.remove(tmp_path / "in" / "a.txt")
    os.symlink(tmp_path / "v2" / "a.txt", tmp_path / "in" / "a.txt")
    os.remove(tmp_path / "current")
    os.symlink(tmp_path / "v2", tmp_path / "current")
    assert by_file.changed_since(since) and by_folder.changed_since(since)


def test_change_times_of_coarse_file_systems_count_within_their_step():
    """FAT or HFS+ keep whole seconds, some NFS servers microseconds: a change
    after ``since`` is rounded down below it, and must still count."""
    from daskscore.storage import changed_after

    since = 1_800_000_000.5  # a files_clock() time
    assert changed_after(1_800_000_000 * 10**9, since)  # whole s: within 2 s
    assert not changed_after(1_799_999_997 * 10**9, since)
    assert changed_after(1_800_000_000_499_999 * 1000, since)  # us, rounded down
    assert not changed_after(1_800_000_000_499_000 * 1000, since)
    assert not changed_after(1_800_000_000_400_000_123, since)  # ns: earlier
    assert changed_after(1_800_000_000_500_000_123, since)
