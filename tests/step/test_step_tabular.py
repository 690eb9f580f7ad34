"""Tabular inputs end to end: CSV, Parquet, JSON lines and dask DataFrames.

Every row must reach ``run()`` exactly once, in input order, and a mini-batch must
never span two files. Real worker processes, real files in ``tmp_path``.
"""

from __future__ import annotations

import logging

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


@pytest.fixture
def daskscore_log(caplog):
    """Records of the "daskscore" logger (the CLI may have stopped it propagating)."""

    logger = logging.getLogger("daskscore")
    old = logger.propagate
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="daskscore"):
        yield caplog
    logger.propagate = old


def test_csv_with_quoted_line_breaks_is_read_whole_or_with_support_multi_line(
        tmp_path, shared_client, daskscore_log):
    """Planning sees the quoted line breaks and reads each file whole (one
    warning); support_multi_line=True says so and reads every row intact."""
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

    for multi_line in (False, True):
        daskscore_log.clear()
        out = tmp_path / f"out-{multi_line}"
        result = make_step(script, ds.Dataset.Tabular.from_delimited_files(
            str(data / "*.csv"), support_multi_line=multi_line), out,
            mini_batch_size="4KB",
            append_row_file_name="rows.csv").run(client=shared_client)
        got = check_rows(result, out, frames)
        assert result.mini_batches == 2  # one per file
        assert sorted(set(got["batch_rows"])) == [300, 400]
        warned = [r.getMessage() for r in daskscore_log.records
                  if "support_multi_line=True" in r.getMessage()]
        assert len(warned) == (0 if multi_line else 1), warned


def test_csv_ranges_cut_inside_quoted_values_fail_with_their_rows_no_garbage(
        tmp_path, shared_client):
    """B2 with planning's scan off: a range that starts or ends inside a quoted
    value fails as READ_ERROR, counting its rows; no garbage row is scored."""
    import dask

    script = write_script(tmp_path / "src", ROWS_SCRIPT)
    data = tmp_path / "in"
    data.mkdir()
    frame = source_frame("a", 0, 1500)  # every third value holds a line break
    frame["text"] = [f"row {i}\nline two" if i % 3 == 0 else t
                     for i, t in zip(frame["id"], frame["text"])]
    frame.to_csv(data / "a.csv", index=False)
    out = tmp_path / "out"

    with dask.config.set({"daskscore.csv.quote-scan": 0}):
        result = make_step(script, ds.Dataset.Tabular.from_delimited_files(
            str(data / "a.csv")), out, mini_batch_size="4KB",
            append_row_file_name="rows.csv", run_max_try=1).run(client=shared_client)

    assert result.status == "Completed"
    assert result.mini_batches > 5
    assert result.failed_mini_batches > 0
    assert counts(result)[0] == 1500  # each row counted once, scored or failed
    assert result.succeeded_items + result.failed_items == 1500
    tries = [t for rows in tries_by_mini_batch(out).values() for t in rows]
    assert {t["status"] for t in tries} <= {"RUN_DONE", "READ_ERROR"}
    errors = [t for t in tries if t["status"] == "READ_ERROR"]
    assert sum(int(t["items"]) for t in errors) == result.failed_items
    assert all("support_multi_line=True" in t["error"] for t in errors)
    got = result.to_dask_dataframe().compute()
    assert list(got.columns) == ["id", "src", "batch_rows"], (got.columns, got.head())
    assert got["id"].dtype.kind == "i" and got["id"].is_unique
    assert set(got["id"]) <= set(range(1500))
    assert len(got) == result.succeeded_items > 0


def test_b2_reproduction_every_row_once_no_garbage(tmp_path, shared_client):
    """The issue's reproduction: 3,000 rows, every third value with a quoted line
    break, mini_batch_size=8KB."""
    script = write_script(tmp_path / "src", """
        def init():
            pass

        def run(mini_batch):
            return mini_batch[["id", "text"]]
    """)
    rows = [f'{i},"line one of {i}\nline two of {i}"' if i % 3 == 0
            else f"{i},plain {i}" for i in range(1, 3001)]
    (tmp_path / "b2.csv").write_text("id,text\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.Tabular.from_delimited_files(
        str(tmp_path / "b2.csv")), out, mini_batch_size="8KB",
        append_row_file_name="scores.csv").run(client=shared_client)
    assert result.status == "Completed", result.reason
    assert counts(result) == (3000, 3000, 0)
    got = pd.read_csv(out / "scores.csv")
    assert got["id"].tolist() == list(range(1, 3001))
    assert got["text"][2] == "line one of 3\nline two of 3"


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
