"""Tabular mini-batches as v1 scripts expect them: typed columns, fresh index,
and the partition context (``partition_keys``)."""

from __future__ import annotations

import json

import pytest
from helpers import read_lines, write_script

import daskscore as ds
from daskscore.errors import DatasetError
from daskscore.io.text import parse_text

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(300)

CSV = (
    "WeekStarting,Store,Brand,Quantity,Price,Note,Stamp\n"
    "2021-01-04,1001,tropicana,10,1.5,a,2021-01-04 10:00:00\n"
    "2021-01-11,1001,tropicana,12,1.5,,2021-01-11 10:30:00\n"
    "2021-01-04,1002,dominicks,7,2.0,c,2021-01-04T08:00:00\n"
    "2021-01-11,1002,dominicks,9,,d,2021-01-11T09:15:00\n"
)


def test_columns_are_typed_as_in_the_reference(tmp_path):
    (tmp_path / "oj.csv").write_text(CSV)
    data = CSV.encode()
    default = ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "oj.csv"))
    frame = parse_text(data, "csv", default.read_options)
    assert str(frame["WeekStarting"].dtype).startswith("datetime64")
    assert str(frame["Stamp"].dtype).startswith("datetime64")
    assert frame["Store"].dtype == "int64" and frame["Price"].dtype == "float64"
    assert frame["Note"].isna().sum() == 1
    assert frame.set_index("WeekStarting").index.isocalendar().week.tolist() == [
        1, 2, 1, 2]
    whole = default.to_pandas_dataframe()  # a notebook's view: typed the same way
    assert whole.dtypes.to_dict() == frame.dtypes.to_dict()
    untyped = ds.Dataset.Tabular.from_delimited_files(
        str(tmp_path / "oj.csv"), infer_column_types=False)
    assert not str(parse_text(data, "csv", untyped.read_options)[
        "WeekStarting"].dtype).startswith("datetime64")
    typed = ds.Dataset.Tabular.from_delimited_files(
        str(tmp_path / "oj.csv"), set_column_types={"Store": str, "Quantity": "float"},
        empty_as_string=True, header=True, separator=",", encoding="utf8")
    frame = parse_text(data, "csv", typed.read_options)
    assert frame["Store"].tolist() == ["1001", "1001", "1002", "1002"]
    assert frame["Quantity"].dtype == "float64"
    assert frame["Note"].tolist() == ["a", "", "c", "d"]
    with pytest.raises(DatasetError, match="set_column_types"):
        ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "oj.csv"),
                                                set_column_types={"Store": object()})


PARTITIONED = """
    import json


    def init():
        pass


    def run(mini_batch, mini_batch_context):
        part = mini_batch_context.dataset.to_pandas_dataframe()
        return [json.dumps({
            "keys": mini_batch_context.partition_key_value,
            "index": mini_batch_context.minibatch_index,
            "rows": list(mini_batch.index),
            "same": part.equals(mini_batch),
            "week": str(mini_batch["WeekStarting"].dtype),
        }) for _ in range(len(mini_batch))]
"""

ONE_ARGUMENT = """
    def init():
        pass


    def run(mini_batch):
        return [f"{s} {q}" for s, q in zip(mini_batch["Store"], mini_batch["Quantity"])]
"""


def test_partitioned_input_context_and_one_argument_run(tmp_path, shared_client):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "oj.csv").write_text(CSV)
    table = ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "data"))
    results = {}
    for name, body in (("two", PARTITIONED), ("one", ONE_ARGUMENT)):
        script = write_script(tmp_path / name, body)
        cfg = ds.ParallelRunConfig(entry_script=str(script), error_threshold=0,
                                   partition_keys=["Brand", "Store"])
        step = ds.ParallelRunStep(name=f"part-{name}", parallel_run_config=cfg,
                                  inputs=[table], output=str(tmp_path / f"out-{name}"))
        result = step.run(client=shared_client)
        assert result.status == "Completed", result.reason
        results[name] = read_lines(result.output_file)
    first = [json.loads(line) for line in results["two"]]
    assert [r["keys"] for r in first[::2]] == [
        {"Brand": "dominicks", "Store": 1002}, {"Brand": "tropicana", "Store": 1001}]
    assert [r["index"] for r in first] == [0, 0, 1, 1]
    assert all(r["rows"] == [0, 1] and r["same"] for r in first)
    assert all(r["week"].startswith("datetime64") for r in first)
    assert results["one"] == ["1002 7", "1002 9", "1001 10", "1001 12"]
