"""``ds.map_partitions`` over ``dd.read_parquet``: the runners read the partitions.

A ``dd.read_parquet`` collection's partitions are not read by the worker and
sent to the runner; each is Dask's own read task, run by the runner
(:func:`daskscore.collections.partition_reads`), or for a plain piece of one
file the same read done with pyarrow alone (``DaskPiece``). These tests check
that such a read gives exactly the frame Dask gives (rows, columns, dtypes,
index) for the usual ways of calling ``read_parquet``, that anything else falls
back to Dask's computation, and that scoring through the reads gives the same result as
scoring the same frames sent by the worker.
"""

from __future__ import annotations

import os

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from helpers import write_script

import daskscore as ds
from daskscore.collections import partition_reads

pytest_plugins = ["helpers"]

N_FILES = 3
ROWS = 40

SCRIPT = """
import os

import pandas as pd


def init():
    pass


def run(mini_batch):
    return pd.DataFrame({"id": mini_batch["id"].to_numpy(),
                         "double": mini_batch["x"].to_numpy() * 2.0,
                         "pid": os.getpid()})
"""

LIST_SCRIPT = """
def init():
    pass


def run(mini_batch):
    return [float(x) * 3.0 for x in mini_batch["x"]]
"""


def _table(folder, files: int = N_FILES, rows: int = ROWS):
    """``files`` Parquet files (2 row groups each): int, float, string, category."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        ids = np.arange(f * rows, (f + 1) * rows)
        pdf = pd.DataFrame({
            "id": ids,
            "x": ids.astype("float32") / 4,
            "name": [f"n{i}" for i in ids],
            "kind": pd.Categorical([("a", "b")[i % 2] for i in ids]),
        })
        pdf.to_parquet(folder / f"part-{f}.parquet", row_group_size=rows // 2)
    return folder


def _hive(folder):
    pdf = pd.DataFrame({"id": range(30), "x": [float(i) for i in range(30)],
                        "year": [2020 + i % 3 for i in range(30)]})
    pdf.to_parquet(folder, partition_cols=["year"])
    return folder


# Dask's read_parquet with an index calls set_index/reset_index(inplace=True),
# which pandas 3.1 deprecates (a warning, an error under this suite's settings)
DASKS_INPLACE = pytest.mark.filterwarnings(
    "ignore:The inplace keyword:pandas.errors.Pandas4Warning")

READS = {
    "plain": lambda p: dd.read_parquet(p),
    "columns": lambda p: dd.read_parquet(p, columns=["id", "x"]),
    "projected": lambda p: dd.read_parquet(p)[["x", "name"]],
    "filters": lambda p: dd.read_parquet(p, filters=[("id", ">=", 25)]),
    "index": lambda p: dd.read_parquet(p, index="id"),
    "row groups": lambda p: dd.read_parquet(p, split_row_groups=True),
    "pyarrow filesystem": lambda p: dd.read_parquet(p, filesystem="arrow"),
}


@DASKS_INPLACE
@pytest.mark.parametrize("how", sorted(READS))
def test_a_read_gives_exactly_dasks_partition(tmp_path, how):
    ddf = READS[how](str(_table(tmp_path / "t")))
    reads = partition_reads(ddf)
    assert reads is not None
    assert len(reads) == ddf.npartitions
    for i, read in enumerate(reads):
        expected = ddf.partitions[i].compute(scheduler="sync")
        pd.testing.assert_frame_equal(read.read(), expected, check_exact=True)


# reads the runner does with pyarrow alone (io.parquet.read_dask_piece), and
# those it leaves to Dask's own task (which imports dask.dataframe there)
PIECES = {"plain", "columns", "projected", "index", "row groups"}


@DASKS_INPLACE
@pytest.mark.parametrize("how", sorted(READS))
def test_plain_pieces_are_read_without_dask_the_rest_by_dasks_task(tmp_path, how):
    reads = partition_reads(READS[how](str(_table(tmp_path / "t"))))
    if how in PIECES:
        assert all(r.piece is not None and r.task is None for r in reads)
    else:
        assert all(r.piece is None and r.task is not None for r in reads)


DASK_IN_RUNNER = """
import sys

import pandas as pd


def init():
    pass


def run(mini_batch):
    return pd.DataFrame({"id": mini_batch["id"].to_numpy(),
                         "dask_dataframe": "dask.dataframe" in sys.modules})
"""


def test_a_runner_reading_plain_pieces_never_imports_dask_dataframe(
        tmp_path, shared_client):
    folder = str(_table(tmp_path / "t"))
    cfg = _config(tmp_path, DASK_IN_RUNNER, "no_dask_here.py")
    meta = pd.DataFrame({"id": pd.Series([], dtype="int64"),
                         "dask_dataframe": pd.Series([], dtype="bool")})
    got = ds.map_partitions(dd.read_parquet(folder), cfg, meta=meta,
                            client=shared_client).compute()
    assert list(got["id"]) == list(range(N_FILES * ROWS))
    assert not got["dask_dataframe"].any()  # ~0.7 s of imports per runner saved
    # a read Dask must do itself still works there
    filtered = dd.read_parquet(folder, filters=[("id", ">=", 25)])
    got = ds.map_partitions(filtered, cfg, meta=meta,
                            client=shared_client).compute()
    assert list(got["id"]) == list(range(25, N_FILES * ROWS))
    assert got["dask_dataframe"].all()


def test_a_hive_partitioned_read_gives_dasks_partitions(tmp_path):
    ddf = dd.read_parquet(str(_hive(tmp_path / "hive")))
    reads = partition_reads(ddf)
    assert reads is not None and len(reads) == ddf.npartitions
    for i, read in enumerate(reads):
        expected = ddf.partitions[i].compute(scheduler="sync")
        got = read.read()
        assert str(got["year"].dtype) == str(expected["year"].dtype)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_anything_but_a_plain_read_is_computed_by_dask(tmp_path):
    ddf = dd.read_parquet(str(_table(tmp_path / "t")))
    assert partition_reads(ddf.assign(y=ddf.x + 1)) is None
    assert partition_reads(ddf[ddf.x > 3]) is None
    assert partition_reads(dd.from_pandas(pd.DataFrame({"a": [1, 2]}),
                                          npartitions=1)) is None


def _config(tmp_path, body: str, name: str) -> ds.ParallelRunConfig:
    src = write_script(tmp_path / f"src-{name}", body, name=name)
    return ds.ParallelRunConfig(entry_script=str(src), run_max_try=1)


def test_scores_read_by_the_runners_equal_scores_of_sent_frames(
        tmp_path, shared_client):
    folder = str(_table(tmp_path / "t"))
    cfg = _config(tmp_path, SCRIPT, "pushed.py")
    meta = pd.DataFrame({"id": pd.Series([], dtype="int64"),
                         "double": pd.Series([], dtype="float32"),
                         "pid": pd.Series([], dtype="int64")})
    pushed = ds.map_partitions(dd.read_parquet(folder), cfg, meta=meta,
                               client=shared_client)
    # no task of the graph reads Parquet: the runners do
    assert not any("read_parquet" in str(k) for k in dict(pushed.dask))
    # the same frames, computed by Dask and sent to the runners
    sent = ds.map_partitions(dd.from_pandas(pd.read_parquet(folder),
                                            npartitions=N_FILES, sort=False),
                             cfg, meta=meta, client=shared_client)
    assert partition_reads(sent) is None
    got, want = pushed.compute(), sent.compute()
    assert list(got["id"]) == list(range(N_FILES * ROWS))  # input order
    pd.testing.assert_frame_equal(got.drop(columns="pid"),
                                  want.drop(columns="pid"), check_exact=True)
    assert os.getpid() not in set(got["pid"])


@DASKS_INPLACE
def test_a_list_from_run_keeps_the_read_partitions_index(tmp_path, shared_client):
    folder = str(_table(tmp_path / "t"))
    cfg = _config(tmp_path, LIST_SCRIPT, "listed.py")
    meta = pd.DataFrame({"result": pd.Series([], dtype="float64")})
    ddf = dd.read_parquet(folder, index="id")
    got = ds.map_partitions(ddf, cfg, meta=meta, client=shared_client).compute()
    assert list(got.index) == list(range(N_FILES * ROWS))
    assert list(got["result"]) == [i / 4 * 3.0 for i in range(N_FILES * ROWS)]


def test_a_file_gone_before_compute_raises_minibatcherror(tmp_path, shared_client):
    folder = _table(tmp_path / "t")
    cfg = _config(tmp_path, SCRIPT, "gone.py")
    meta = pd.DataFrame({"id": pd.Series([], dtype="int64"),
                         "double": pd.Series([], dtype="float32"),
                         "pid": pd.Series([], dtype="int64")})
    scores = ds.map_partitions(dd.read_parquet(str(folder)), cfg, meta=meta,
                               client=shared_client)
    os.remove(folder / "part-1.parquet")
    with pytest.raises(ds.MiniBatchError) as info:
        scores.compute()
    text = str(info.value)
    assert info.value.partition == 1
    assert "reading partition 1 failed: FileNotFoundError" in text
    assert "\n" not in text


BIG = 200  # rows per file: several 1KB mini-batches of each, Parquet and CSV


def _datasets(tmp_path) -> dict:
    folder = _table(tmp_path / "t", rows=BIG)
    csv = tmp_path / "csv"
    csv.mkdir()
    for f in range(N_FILES):
        pd.read_parquet(folder / f"part-{f}.parquet").to_csv(
            csv / f"part-{f}.csv", index=False)
    return {
        "parquet": ds.Dataset.Tabular.from_parquet_files(str(folder)),
        "csv": ds.Dataset.Tabular.from_delimited_files(str(csv)),
    }


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_datasets_mini_batches_are_read_as_dask_reads_them(tmp_path, kind):
    ddf = _datasets(tmp_path)[kind].to_dask_dataframe(mini_batch_size="1KB")
    assert ddf.npartitions > N_FILES  # row groups / byte ranges, not files
    reads = partition_reads(ddf)
    assert reads is not None and len(reads) == ddf.npartitions
    for i, read in enumerate(reads):
        expected = ddf.partitions[i].compute(scheduler="sync")
        pd.testing.assert_frame_equal(read.read(), expected, check_exact=True)


def test_a_dataset_scored_through_the_runners_reads(tmp_path, shared_client):
    dataset = _datasets(tmp_path)["csv"]
    ddf = dataset.to_dask_dataframe(mini_batch_size="1KB")
    cfg = _config(tmp_path, SCRIPT, "dataset.py")
    scores = ds.map_partitions(ddf, cfg, client=shared_client)  # meta inferred
    assert not any("daskscore-read" in str(k) for k in dict(scores.dask))
    got = scores.compute()
    assert list(got["id"]) == list(range(N_FILES * BIG))
    assert list(got["double"]) == [i / 2 for i in range(N_FILES * BIG)]
