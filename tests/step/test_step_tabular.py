"""Tabular inputs end to end: CSV, Parquet, JSON lines and dask DataFrames.

Every row must reach ``run()`` exactly once, in input order, and a mini-batch must
never span two files. Real worker processes, real files in ``tmp_path``.
"""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import counts, make_step, tries_by_mini_batch, write_script

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(180)

# Returns its rows with the mini-batch's size; refuses mini-batches that mix files
# or lost the header (the columns must be exactly those of the input).
ROWS_SCRIPT = """
COLUMNS = ["id", "src", "x", "text"]

def init():
    pass

def run(mini_batch):
    if list(mini_batch.columns) != COLUMNS:
        raise ValueError(f"unexpected columns {list(mini_batch.columns)}")
    if mini_batch["src"].nunique() != 1:
        raise ValueError("a mini-batch spans two files")
    out = mini_batch[["id", "src"]].copy()
    out["batch_rows"] = len(mini_batch)
    return out
"""


def source_frame(src: str, start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "id": range(start, start + n),
        "src": src,
        "x": [i * 0.25 for i in range(start, start + n)],
        "text": [f"row {i}, quoted \"{i % 7}\"" for i in range(start, start + n)],
    })


def check_rows(result, out, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Every input row exactly once, in input order; the mini-batch sizes add up."""
    assert result.status == "Completed", result.reason
    expected = pd.concat(frames, ignore_index=True)
    assert counts(result) == (len(expected), len(expected), 0)
    got = result.to_dask_dataframe().compute().reset_index(drop=True)
    assert got["id"].tolist() == expected["id"].tolist()
    assert got["src"].tolist() == expected["src"].tolist()
    tries = tries_by_mini_batch(out)
    assert len(tries) == result.mini_batches
    assert all(len(rows) == 1 and rows[0]["status"] == "RUN_DONE"
               for rows in tries.values())
    return got


def test_csv_files_split_into_mini_batches_give_every_row_once(tmp_path,
                                                               shared_client):
    script = write_script(tmp_path / "src", ROWS_SCRIPT)
    data = tmp_path / "in"
    data.mkdir()
    frames = [source_frame("a", 0, 1500), source_frame("b", 1500, 700)]
    for frame, name in zip(frames, ("a.csv", "b.csv")):
        frame.to_csv(data / name, index=False)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_delimited_files(
        str(data / "*.csv")), out, mini_batch_size="8KB",
        append_row_file_name="rows.csv").run(client=shared_client)

    got = check_rows(result, out, frames)
    assert result.mini_batches > 4  # both files were split
    # a mini-batch never spans two files (else run() raised above) and holds
    # about mini_batch_size bytes
    assert got["batch_rows"].max() < 1500


def test_parquet_row_groups_are_grouped_and_sliced_into_mini_batches(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", ROWS_SCRIPT)
    data = tmp_path / "in"
    data.mkdir()
    frames = [source_frame("a", 0, 1000), source_frame("b", 1000, 1200)]
    # a: 10 small row groups (grouped); b: one big row group (sliced by rows)
    pq.write_table(pa.Table.from_pandas(frames[0], preserve_index=False),
                   data / "a.parquet", row_group_size=100)
    pq.write_table(pa.Table.from_pandas(frames[1], preserve_index=False),
                   data / "b.parquet", row_group_size=10_000)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_parquet_files(str(data)), out,
                       mini_batch_size="16KB",
                       append_row_file_name="rows.parquet").run(client=shared_client)

    got = check_rows(result, out, frames)
    assert result.mini_batches >= 4
    sizes_a = got[got["src"] == "a"]["batch_rows"]
    sizes_b = got[got["src"] == "b"]["batch_rows"]
    # a's mini-batches are whole row groups, several of them; b's one row group
    # is sliced by rows
    assert set(sizes_a % 100) == {0} and 100 < sizes_a.max() < 1000
    assert sizes_b.max() < 1200


def test_json_lines_split_into_mini_batches_give_every_row_once(tmp_path,
                                                                shared_client):
    script = write_script(tmp_path / "src", ROWS_SCRIPT)
    data = tmp_path / "in"
    data.mkdir()
    frames = [source_frame("a", 0, 900), source_frame("b", 900, 100)]
    for frame, name in zip(frames, ("a.jsonl", "b.jsonl")):
        frame.to_json(data / name, orient="records", lines=True)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_json_lines_files(
        str(data / "*.jsonl")), out, mini_batch_size="10KB",
        append_row_file_name="rows.csv").run(client=shared_client)

    got = check_rows(result, out, frames)
    assert result.mini_batches > 3
    assert got["batch_rows"].max() < 900


def test_each_input_is_read_with_its_own_options(tmp_path, shared_client):
    """Three inputs of one step: CSV, CSV with ';' and no header, JSON lines."""
    data = tmp_path / "in"
    data.mkdir()
    frames = [source_frame("a", 0, 500), source_frame("b", 500, 600),
              source_frame("c", 1100, 300)]
    frames[0].to_csv(data / "a.csv", index=False)
    frames[1].to_csv(data / "b.csv", index=False, header=False, sep=";")
    frames[2].to_json(data / "c.jsonl", orient="records", lines=True)
    inputs = [
        ds.Dataset.Tabular.from_delimited_files(str(data / "a.csv")),
        ds.Dataset.Tabular.from_delimited_files(
            str(data / "b.csv"), separator=";", header=False),
        ds.Dataset.Tabular.from_json_lines_files(str(data / "c.jsonl")),
    ]
    # the header-less CSV's columns are numbered; the script names them
    script = write_script(tmp_path / "src", ROWS_SCRIPT.replace(
        "def run(mini_batch):",
        "def run(mini_batch):\n"
        "    if list(mini_batch.columns) == [0, 1, 2, 3]:\n"
        "        mini_batch.columns = COLUMNS"))
    out = tmp_path / "out"
    result = make_step(script, inputs, out, mini_batch_size="8KB",
                       append_row_file_name="rows.csv").run(client=shared_client)

    got = check_rows(result, out, frames)
    assert result.mini_batches > 4
    assert got["batch_rows"].max() < 600


def multi_line_frame(src: str, start: int, n: int) -> pd.DataFrame:
    frame = source_frame(src, start, n)
    frame["text"] = [f"row {i},\nline two \"{i % 5}\"\n" for i in frame["id"]]
    return frame


def test_csv_with_quoted_line_breaks_needs_support_multi_line(tmp_path,
                                                              shared_client):
    """By default a line break ends a row (split files garble quoted ones);
    support_multi_line=True never splits a file and reads every row intact."""
    script = write_script(tmp_path / "src", ROWS_SCRIPT.replace(
        "    out = mini_batch[[\"id\", \"src\"]].copy()",
        "    if not mini_batch[\"text\"].str.endswith(\"\\n\").all():\n"
        "        raise ValueError(\"a quoted line break was lost\")\n"
        "    out = mini_batch[[\"id\", \"src\"]].copy()"))
    data = tmp_path / "in"
    data.mkdir()
    frames = [multi_line_frame("a", 0, 400), multi_line_frame("b", 400, 300)]
    for frame, name in zip(frames, ("a.csv", "b.csv")):
        frame.to_csv(data / name, index=False)

    split = make_step(script, ds.Dataset.Tabular.from_delimited_files(
        str(data / "*.csv")), tmp_path / "split", mini_batch_size="4KB",
        append_row_file_name="rows.csv", error_threshold=-1,
        run_max_try=1).run(client=shared_client)
    assert split.mini_batches > 2
    assert split.failed_items > 0  # rows cut at a quoted line break

    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_delimited_files(
        str(data / "*.csv"), support_multi_line=True), out,
        mini_batch_size="4KB",
        append_row_file_name="rows.csv").run(client=shared_client)
    got = check_rows(result, out, frames)
    assert result.mini_batches == 2  # one per file
    assert sorted(set(got["batch_rows"])) == [300, 400]


def test_dask_dataframe_partitions_are_the_mini_batches(tmp_path, shared_client):
    script = write_script(tmp_path / "src", ROWS_SCRIPT)
    frame = source_frame("a", 0, 100)
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    lengths = ddf.map_partitions(len).compute().tolist()
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_dask_dataframe(ddf), out,
                       append_row_file_name="rows.csv").run(client=shared_client)

    assert result.mini_batches == ddf.npartitions == 4
    got = check_rows(result, out, [frame])
    per_batch = [int(rows[0]["items"]) for _, rows in
                 sorted(tries_by_mini_batch(out).items())]
    assert per_batch == lengths
    assert got["batch_rows"].tolist() == [n for n in lengths for _ in range(n)]


def test_failed_tabular_mini_batch_counts_its_rows_as_failed_items(tmp_path,
                                                                  shared_client):
    script = write_script(tmp_path / "src", """
        def init():
            pass

        def run(mini_batch):
            if 0 in mini_batch["id"].tolist():
                raise ValueError("the first mini-batch fails")
            return mini_batch
    """)
    data = tmp_path / "in"
    data.mkdir()
    source_frame("a", 0, 1000).to_csv(data / "a.csv", index=False)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_delimited_files(
        str(data / "a.csv")), out, mini_batch_size="8KB", run_max_try=1,
        append_row_file_name="rows.csv").run(client=shared_client)

    tries = tries_by_mini_batch(out)
    first_rows = int(tries[0][0]["items"])
    assert 1 < first_rows < 1000
    assert result.status == "Completed"
    assert counts(result) == (1000, 1000 - first_rows, first_rows)
    got = pd.read_csv(result.output_file)
    assert got["id"].tolist() == list(range(first_rows, 1000))
