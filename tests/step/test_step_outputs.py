"""Outputs and logs end to end: every collected format, summary_only, logs/.

Real worker processes, real files in ``tmp_path``, real entry scripts.
"""

from __future__ import annotations

import re

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers import (
    REPORT_KEYS,
    TRIES_COLUMNS,
    counts,
    file_names,
    make_files,
    make_step,
    read_lines,
    read_report,
    tries_by_mini_batch,
    tries_header,
    write_script,
)

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(180)

ROWS = 300


@pytest.fixture
def table(tmp_path):
    """A CSV input of ROWS rows (several mini-batches at 2KB) and its frame."""
    frame = pd.DataFrame({
        "id": range(ROWS),
        "x": [i * 0.5 for i in range(ROWS)],
        "name": [f"n{i:04d}" for i in range(ROWS)],
    })
    path = tmp_path / "in" / "table.csv"
    path.parent.mkdir()
    frame.to_csv(path, index=False)
    return ds.Dataset.Tabular.from_delimited_files(str(path)), frame


DOUBLE_SCRIPT = """
def init():
    pass

def run(mini_batch):
    out = mini_batch[["id", "name"]].copy()
    out["y"] = mini_batch["x"] * 2
    return out
"""


def expected_scores(frame):
    return pd.DataFrame({"id": frame["id"], "name": frame["name"], "y": frame["x"] * 2})


# -- formats ------------------------------------------------------------------------
def test_txt_output_of_list_returns_is_one_line_per_element(tmp_path, shared_client):
    script = write_script(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            return [f"{os.path.basename(p)}: {open(p).read().strip()}"
                    for p in mini_batch]
    """)
    make_files(tmp_path / "in", 23)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="5").run(client=shared_client)

    assert result.status == "Completed"
    assert result.output_file.endswith("parallel_run_step.txt")
    expected = [f"{n}: {i}" for i, n in enumerate(file_names(23))]
    assert read_lines(out / "parallel_run_step.txt") == expected
    frame = result.to_dask_dataframe().compute()
    assert list(frame.columns) == ["result"]
    assert frame["result"].tolist() == expected


def test_txt_output_of_dataframe_returns_is_space_separated_without_header(
        tmp_path, shared_client, table):
    dataset, frame = table
    script = write_script(tmp_path / "src", DOUBLE_SCRIPT)
    out = tmp_path / "out"
    result = make_step(script, dataset, out, mini_batch_size="2KB",
                       append_row_file_name="scores.txt").run(client=shared_client)

    assert result.status == "Completed"
    assert result.mini_batches > 1
    want = expected_scores(frame)
    expected = [f"{i} {n} {y}" for i, n, y in want.itertuples(index=False)]
    assert read_lines(out / "scores.txt") == expected


def test_csv_output_has_one_header_and_reads_back_with_its_columns(
        tmp_path, shared_client, table):
    dataset, frame = table
    script = write_script(tmp_path / "src", DOUBLE_SCRIPT)
    out = tmp_path / "out"
    result = make_step(script, dataset, out, mini_batch_size="2KB",
                       append_row_file_name="scores.csv").run(client=shared_client)

    assert result.status == "Completed"
    assert result.mini_batches > 1
    lines = read_lines(out / "scores.csv")
    assert lines[0] == "id,name,y"
    assert lines.count("id,name,y") == 1
    assert len(lines) == ROWS + 1
    got = result.to_dask_dataframe().compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected_scores(frame), check_dtype=False)


def test_parquet_output_keeps_columns_and_types(tmp_path, shared_client, table):
    dataset, frame = table
    script = write_script(tmp_path / "src", DOUBLE_SCRIPT)
    out = tmp_path / "out"
    result = make_step(script, dataset, out, mini_batch_size="2KB",
                       append_row_file_name="scores.parquet").run(client=shared_client)

    assert result.status == "Completed"
    assert result.mini_batches > 1
    on_disk = pq.read_table(out / "scores.parquet").to_pandas()
    pd.testing.assert_frame_equal(on_disk, expected_scores(frame))
    got = result.to_dask_dataframe().compute().reset_index(drop=True)
    assert list(got.columns) == ["id", "name", "y"]
    assert str(got["id"].dtype) == "int64" and str(got["y"].dtype) == "float64"
    assert got["id"].tolist() == list(range(ROWS))


@pytest.mark.parametrize("file_name", ["rows.csv", "rows.parquet"])
def test_list_returns_in_table_formats(tmp_path, shared_client, file_name):
    """Scalars become one column "result"; dicts become their columns."""
    script = write_script(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            if len(names) == 3:
                return [{"file": n, "size": os.path.getsize(p)}
                        for n, p in zip(names, mini_batch)]
            return names
    """)
    make_files(tmp_path / "in", 7)
    dataset = ds.Dataset.File.from_files(str(tmp_path / "in"))
    scalars = make_step(script, dataset, tmp_path / "scalars", mini_batch_size="2",
                        append_row_file_name=file_name).run(client=shared_client)
    dicts = make_step(script, dataset, tmp_path / "dicts", mini_batch_size="3",
                      append_row_file_name=file_name).run(client=shared_client)

    names = file_names(7)
    got = scalars.to_dask_dataframe().compute().reset_index(drop=True)
    assert got.to_dict("list") == {"result": names}
    # mini-batches of 3, 3, 1: the last one returns scalars, aligned to the columns
    got = dicts.to_dask_dataframe().compute().reset_index(drop=True)
    assert list(got.columns)[:2] == ["file", "size"]
    assert got["file"].tolist()[:6] == names[:6]
    assert got["size"].tolist()[:6] == [2] * 6
    assert len(got) == 7


def test_summary_only_writes_no_collected_file_and_keeps_script_files(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", """
        import os

        import daskscore as ds

        def init():
            global OUT
            OUT = ds.EntryScript().output_dir

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            with open(os.path.join(OUT, names[0] + ".summary"), "w") as f:
                f.write("\\n".join(names))
            return names
    """)
    make_files(tmp_path / "in", 9)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="4", output_action="summary_only",
                       ).run(client=shared_client)

    assert result.status == "Completed"
    assert counts(result) == (9, 9, 0)
    assert result.output_file is None
    assert not (out / "parallel_run_step.txt").exists()
    names = file_names(9)
    written = sorted(p.name for p in (out / "outputs").iterdir())
    assert written == [f"{names[i]}.summary" for i in (0, 4, 8)]
    assert read_lines(out / "outputs" / f"{names[4]}.summary") == names[4:8]
    with pytest.raises(ValueError):
        result.to_dask_dataframe()


# -- logs -----------------------------------------------------------------------------
LOGGING_SCRIPT = """
import os

import daskscore as ds


def init():
    ds.EntryScript().logger.info("init says hello")


def run(mini_batch):
    helper = ds.EntryScript()
    helper.logger.info("scoring %d files starting at %s", len(mini_batch),
                       os.path.basename(mini_batch[0]))
    helper.logger.debug("a debug line")
    print("printed by run()", flush=True)
    names = [os.path.basename(p) for p in mini_batch]
    if "item-0004.txt" in names:
        raise ValueError("boom in item-0004")
    return names
"""


@pytest.fixture
def failed_job(tmp_path, shared_client):
    """A job whose mini-batch 2 (of 4) raises on every try: Failed (error_threshold)."""
    script = write_script(tmp_path / "src", LOGGING_SCRIPT)
    make_files(tmp_path / "in", 8)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="2", error_threshold=1, run_max_try=2,
                       ).run(client=shared_client)
    return script, out, result


def test_job_result_names_the_root_cause_when_failed(failed_job):
    _, out, result = failed_job
    assert result.status == "Failed"
    text = (out / "logs" / "job_result.txt").read_text()
    assert "Failed" in text
    assert result.reason and result.reason in text
    assert "error_threshold" in text
    # the user's own error, not only the threshold, is named
    assert "boom in item-0004" in text


def test_job_report_json_has_the_documented_keys(failed_job):
    _, out, result = failed_job
    report = read_report(out)
    assert REPORT_KEYS <= set(report), REPORT_KEYS - set(report)
    assert report["status"] == result.status == "Failed"
    assert report["step"] == "test-step"
    assert (report["total_items"], report["succeeded_items"],
            report["failed_items"]) == counts(result)
    assert report["mini_batches"] == result.mini_batches
    assert report["failed_mini_batches"] == result.failed_mini_batches >= 1
    assert report["tries"] == result.tries
    assert report["elapsed_seconds"] > 0
    assert report["items_per_second"] >= 0
    assert report["output_action"] == "append_row"


def test_processed_mini_batches_csv_has_one_row_per_try(failed_job):
    _, out, result = failed_job
    assert tries_header(out) == TRIES_COLUMNS
    tries = tries_by_mini_batch(out)
    assert sum(len(rows) for rows in tries.values()) == result.tries
    assert [(r["try"], r["status"]) for r in tries[2]] == [
        ("1", "RUN_EXCEPTION"), ("2", "RUN_EXCEPTION")]
    for rows in tries.values():
        for row in rows:
            assert row["worker"]
            assert float(row["elapsed_seconds"]) >= float(row["run_seconds"]) >= 0
            assert "item-" in row["input"]
            if row["status"] == "RUN_DONE":
                assert (row["items"], row["succeeded"], row["failed"]) == ("2", "2",
                                                                           "0")


def test_user_error_files_hold_the_users_traceback(failed_job):
    script, out, _ = failed_job
    errors = sorted((out / "logs" / "user" / "error").glob("*.txt"))
    assert len(errors) == 2  # two tries of mini-batch 2
    raise_line = LOGGING_SCRIPT.lstrip().splitlines().index(
        '        raise ValueError("boom in item-0004")') + 1
    for error in errors:
        text = error.read_text()
        assert "Traceback" in text
        assert f'File "{script}", line {raise_line}, in run' in text
        assert "ValueError: boom in item-0004" in text


def test_entry_script_log_holds_the_scripts_logger_messages(failed_job):
    _, out, _ = failed_job
    logs = list((out / "logs" / "user").glob("*/entry_script.log"))
    assert logs
    text = "".join(p.read_text() for p in logs)
    assert "init says hello" in text
    assert "scoring 2 files starting at item-0000.txt" in text


@pytest.mark.parametrize("file_name", ["rows.csv", "rows.parquet"])
def test_columns_only_some_mini_batches_return_are_not_lost(tmp_path, shared_client,
                                                            file_name):
    """Everything run() returns is written: a column that appears in a later
    mini-batch only is kept (empty for the other rows), not dropped."""
    script = write_script(tmp_path / "src", """
        import os

        import pandas as pd

        def init():
            pass

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            out = pd.DataFrame({"file": names})
            if "item-0002.txt" in names:
                out["note"] = "checked"
            return out
    """)
    make_files(tmp_path / "in", 4)
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                       tmp_path / "out", mini_batch_size="2",
                       append_row_file_name=file_name).run(client=shared_client)

    assert result.status == "Completed"
    got = result.to_dask_dataframe().compute().reset_index(drop=True)
    assert got["file"].tolist() == file_names(4)
    assert "note" in got.columns, f"column 'note' was dropped from {file_name}"
    assert got["note"].tolist()[2:] == ["checked", "checked"]
    assert got["note"].isna().tolist()[:2] == [True, True]


def test_stdout_of_the_script_is_kept_per_worker(failed_job):
    _, out, _ = failed_job
    logs = list((out / "logs" / "user").glob("*/stdout.txt"))
    assert "printed by run()" in "".join(p.read_text() for p in logs)


def test_logging_level_filters_the_scripts_logger(failed_job, tmp_path,
                                                  shared_client):
    script, out, _ = failed_job
    default_text = "".join(p.read_text() for p in
                           (out / "logs" / "user").glob("*/entry_script.log"))
    assert "a debug line" not in default_text  # logging_level defaults to INFO

    debug_out = tmp_path / "debug"
    make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), debug_out,
              mini_batch_size="2", logging_level="DEBUG").run(client=shared_client)
    text = "".join(p.read_text() for p in
                   (debug_out / "logs" / "user").glob("*/entry_script.log"))
    assert "a debug line" in text and "init says hello" in text


@pytest.mark.parametrize("file_name", ["rows.txt", "rows.csv", "rows.parquet"])
def test_collected_output_without_any_scored_item_reads_back_empty(
        tmp_path, shared_client, file_name):
    script = write_script(tmp_path / "src", """
        def init():
            pass

        def run(mini_batch):
            raise ValueError("every mini-batch fails")
    """)
    make_files(tmp_path / "in", 3)
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                       tmp_path / "out", run_max_try=1, error_threshold=-1,
                       append_row_file_name=file_name).run(client=shared_client)

    assert result.status == "Completed"
    assert result.succeeded_items == 0
    assert (tmp_path / "out" / file_name).is_file()
    assert len(result.to_dask_dataframe().compute()) == 0


def test_parquet_parts_with_clashing_column_types_give_a_clear_outcome(
        tmp_path, shared_client):
    """Mini-batches returning an int column and a str column of the same name:
    the job completes, everything scored is kept and readable, the clashing
    column is written as strings, and the report's warnings name it; never a
    bare pyarrow error out of run() after all the scoring was done."""
    script = write_script(tmp_path / "src", """
        import os

        import pandas as pd

        def init():
            pass

        def run(mini_batch):
            if os.path.basename(mini_batch[0]) == "item-0000.txt":
                return pd.DataFrame({"v": [1]})
            return pd.DataFrame({"v": ["x"]})
    """)
    make_files(tmp_path / "in", 2)
    out = tmp_path / "out"
    step = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                     mini_batch_size="1", append_row_file_name="rows.parquet")
    result = step.run(client=shared_client)
    assert result.status == "Completed", result.reason
    assert (result.succeeded_items, result.failed_items) == (2, 0)
    got = result.to_dask_dataframe().compute()
    assert list(got["v"]) == ["1", "x"]  # strings, the int one included
    [warning] = [w for w in read_report(out)["warnings"] if "'v'" in w]
    assert re.fullmatch(r"column 'v' has clashing types across mini-batches "
                        r"\(int64 vs (large_)?string\); written as strings",
                        warning), warning
    assert (out / "logs" / "job_result.txt").is_file()
