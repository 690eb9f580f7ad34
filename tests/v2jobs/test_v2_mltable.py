"""daskscore's own MLTable reader and the ``mltable`` module, without a cluster."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from daskscore.errors import UsageError
from daskscore.v2jobs import mltable_module
from daskscore.v2jobs.mltable import load_mltable


def _table(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLTable").write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def partitioned(tmp_path: Path) -> Path:
    for store, brand in [("s1", "a"), ("s1", "b"), ("s2", "a")]:
        folder = tmp_path / "t" / store / brand
        folder.mkdir(parents=True)
        pd.DataFrame({"week": [1, 2], "sales": [f"{store}{brand}", ""]}).to_csv(
            folder / "data.csv", index=False)
    return tmp_path / "t"


def test_partition_format_gives_columns_and_partition_keys(partitioned):
    table = load_mltable(str(_table(partitioned, """\
        paths:
          - pattern: ./*/*/data.csv
        transformations:
          - read_delimited:
              delimiter: ','
              header: all_files_same_headers
              include_path_column: true
          - extract_columns_from_partition_format:
              partition_format: '{store}/{brand}/data.csv'
          - drop_columns: [Path]
        """)))
    assert table.partition_keys == ["store", "brand"]
    frame = table.to_pandas_dataframe()
    assert list(frame.columns) == ["week", "sales", "store", "brand"]
    assert frame[["store", "brand"]].drop_duplicates().values.tolist() == [
        ["s1", "a"], ["s1", "b"], ["s2", "a"]]
    assert list(frame.index) == list(range(6))
    assert frame["sales"].isna().sum() == 3


def test_header_options_empty_as_string_take_skip_keep(partitioned):
    frame = load_mltable(str(_table(partitioned, """\
        paths:
          - folder: ./
        transformations:
          - read_delimited:
              header: no_header
              empty_as_string: true
          - skip: 1
          - take: 3
          - keep_columns: [Column2]
        """))).to_pandas_dataframe()
    assert list(frame.columns) == ["Column2"]
    # no header: every line is a row ("week,sales" too), empties stay ""
    assert frame["Column2"].tolist() == ["s1a", "", "sales"]


def test_parquet_and_json_lines(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(folder / "x.parquet")
    (folder / "y.jsonl").write_text('{"a": 4}\n{"a": 5}\n')
    parquet = load_mltable(str(_table(folder / "m1", """\
        paths: [{file: ../x.parquet}]
        transformations: [read_parquet]
        """))).to_pandas_dataframe()
    assert parquet["a"].tolist() == [1, 2, 3]
    lines = mltable_module.load(str(_table(folder / "m2", """\
        paths: [{file: ../y.jsonl}]
        transformations:
          - read_json_lines: {encoding: utf8}
        """))).to_pandas_dataframe()
    assert lines["a"].tolist() == [4, 5]


def test_unknown_transformation_is_one_line_naming_it(partitioned):
    _table(partitioned, """\
        paths: [{folder: ./}]
        transformations:
          - read_delimited: {}
          - convert_column_types:
              - columns: week
                column_type: int
        """)
    with pytest.raises(UsageError) as err:
        load_mltable(str(partitioned))
    assert "\n" not in str(err.value)
    assert "transformation 'convert_column_types' is not supported" in str(err.value)


def test_missing_mltable_file(tmp_path):
    with pytest.raises(UsageError, match="no MLTable file at"):
        load_mltable(str(tmp_path))


def test_runner_gives_mltable_when_the_package_is_missing(partitioned):
    _table(partitioned, "paths: [{pattern: ./*/*/data.csv}]\n"
                        "transformations: [read_delimited]\n")
    code = ("from daskscore.azureml import provide_mltable\n"
            "provide_mltable()\n"
            "import mltable\n"
            f"print(len(mltable.load({str(partitioned)!r}).to_pandas_dataframe()))\n"
            "print(mltable.load.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["6", "daskscore.v2jobs.mltable_module"]


def test_header_from_first_file(tmp_path):
    (tmp_path / "a.csv").write_text("x;y\n1;2\n")
    (tmp_path / "b.csv").write_text("3;4\n5;6\n")
    frame = load_mltable(str(_table(tmp_path, """\
        paths:
          - pattern: ./*.csv
        transformations:
          - read_delimited: {delimiter: ';', header: from_first_file}
        """))).to_pandas_dataframe()
    assert frame.to_dict("list") == {"x": [1, 3, 5], "y": [2, 4, 6]}
