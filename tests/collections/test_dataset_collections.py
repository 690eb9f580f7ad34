"""Datasets as Dask collections: exactly the mini-batches a step's ``run()`` gets.

Each test runs a real step whose ``run()`` reports the mini-batch each row came
in, and compares it with the partitions of ``to_dask_dataframe(mini_batch_size=)``
or ``to_dask_bag(mini_batch_size=)``: the same count, boundaries and order.
"""

from __future__ import annotations

import os

import dask
import dask.bag as db
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_files, make_step, write_script

import daskscore as ds

pytest_plugins = ["helpers"]

ROWS_SCRIPT = """
def init():
    pass

def run(mini_batch, context):
    out = mini_batch[["id"]].copy()
    out["mini_batch"] = context.minibatch_index
    return out
"""

FILES_SCRIPT = """
import os

def init():
    pass

def run(mini_batch, context):
    return [f"{context.minibatch_index} {os.path.basename(p)}" for p in mini_batch]
"""


def _step_batches(tmp_path, script: str, dataset, size, fmt: str):
    src = write_script(tmp_path / "src", script)
    step = make_step(src, dataset, tmp_path / "out", mini_batch_size=size,
                     append_row_file_name=f"out.{fmt}")
    result = step.run(client=_client())
    assert result.status == "Completed", result.reason
    return result


def _client():
    from distributed import get_client

    return get_client()


def _partitions(collection) -> list:
    return list(dask.compute(*collection.to_delayed()))


def _by_mini_batch(frame: pd.DataFrame) -> list[list[int]]:
    return [list(g["id"]) for _, g in frame.groupby("mini_batch", sort=True)]


def _parquet_input(folder) -> None:
    folder.mkdir()
    start = 0
    for f, n in enumerate([700, 1300, 250]):
        table = pa.table({"id": range(start, start + n),
                          "x": [float(i) for i in range(start, start + n)]})
        pq.write_table(table, folder / f"part-{f}.parquet", row_group_size=100)
        start += n


def test_parquet_partitions_are_the_steps_mini_batches(tmp_path, shared_client):
    _parquet_input(tmp_path / "in")
    dataset = ds.Dataset.Tabular.from_parquet_files(str(tmp_path / "in"))
    ddf = dataset.to_dask_dataframe(mini_batch_size="4KB")
    result = _step_batches(tmp_path, ROWS_SCRIPT, dataset, "4KB", "parquet")
    assert ddf.npartitions == result.mini_batches > 3
    step_rows = result.to_dask_dataframe().compute()
    parts = _partitions(ddf)
    assert [list(p["id"]) for p in parts] == _by_mini_batch(step_rows)
    assert list(parts[0].columns) == ["id", "x"]
    # lazy and composable like any dask DataFrame
    assert ddf["id"].sum().compute() == sum(range(2250))


def test_csv_partitions_are_the_steps_byte_ranges(tmp_path, shared_client):
    folder = tmp_path / "in"
    folder.mkdir()
    start = 0
    for f, n in enumerate([400, 900]):
        pd.DataFrame({"id": range(start, start + n), "text": "some words"}).to_csv(
            folder / f"part-{f}.csv", index=False)
        start += n
    dataset = ds.Dataset.Tabular.from_delimited_files(str(folder / "*.csv"))
    ddf = dataset.to_dask_dataframe(mini_batch_size="2KB")
    result = _step_batches(tmp_path, ROWS_SCRIPT, dataset, "2KB", "parquet")
    assert ddf.npartitions == result.mini_batches > 2
    parts = _partitions(ddf)
    assert [list(p["id"]) for p in parts] == _by_mini_batch(
        result.to_dask_dataframe().compute())


def test_file_partitions_are_the_steps_file_lists(tmp_path, shared_client):
    make_files(tmp_path / "in", 11)
    dataset = ds.Dataset.File.from_files(str(tmp_path / "in"))
    bag = dataset.to_dask_bag(mini_batch_size=3)
    assert isinstance(bag, db.Bag)
    result = _step_batches(tmp_path, FILES_SCRIPT, dataset, 3, "txt")
    assert bag.npartitions == result.mini_batches == 4
    lines = (tmp_path / "out" / "out.txt").read_text().split("\n")
    steps: dict[int, list[str]] = {}
    for line in filter(None, lines):
        index, name = line.split(" ")
        steps.setdefault(int(index), []).append(name)
    parts = _partitions(bag)
    assert [[os.path.basename(p) for p in part] for part in parts] == [
        steps[i] for i in sorted(steps)]
    assert all(os.path.isfile(p) for part in parts for p in part)


def test_without_a_mini_batch_size_dasks_own_reader_is_kept(tmp_path):
    _parquet_input(tmp_path / "in")
    dataset = ds.Dataset.Tabular.from_parquet_files(str(tmp_path / "in"))
    assert dataset.to_dask_dataframe().npartitions == 3  # one per file


def test_a_dataset_collection_scored_with_map_partitions(tmp_path, shared_client):
    make_files(tmp_path / "in", 7)
    src = write_script(tmp_path / "score", """
        def init():
            pass

        def run(mini_batch):
            return [int(open(p).read()) for p in mini_batch]
        """)
    cfg = ds.ParallelRunConfig(entry_script=str(src))
    bag = ds.Dataset.File.from_files(str(tmp_path / "in")).to_dask_bag(
        mini_batch_size=2)
    got = ds.map_partitions(bag, cfg).compute()
    assert got == sorted(got) and len(got) == 7


def test_an_unreadable_mini_batch_raises_a_one_line_dataset_error(
        tmp_path, shared_client):
    make_files(tmp_path / "in", 3)
    dataset = ds.Dataset.File.from_files(str(tmp_path / "in"))
    bag = dataset.to_dask_bag(mini_batch_size=2)
    os.remove(sorted((tmp_path / "in").iterdir())[0])
    with pytest.raises(ds.DatasetError, match="mini-batch 0 .* cannot be read"):
        bag.compute()
