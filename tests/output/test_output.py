"""Encoding run() results, committing parts, and assembling the collected file.

Real files in ``tmp_path``: parts are committed with the runner's own
:class:`PartWriter` and assembled with :func:`assemble_output`.
"""

from __future__ import annotations

import io
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskscore.output.assemble import assemble_output
from daskscore.output.parts import PartWriter, encode_result
from daskscore.output.store import StateStore, read_record, write_atomic, write_record

# -- encode_result ------------------------------------------------------------------


def test_txt_list_one_line_per_element():
    assert encode_result(["a", "b c", "d"], "txt") == b"a\nb c\nd\n"


def test_txt_non_strings_use_str():
    data = encode_result([1, 2.5, None, ("x", 1), {"k": 1}], "txt")
    assert data.decode().splitlines() == ["1", "2.5", "None", "('x', 1)", "{'k': 1}"]


def test_txt_tuple_and_empty_list():
    assert encode_result(("x", "y"), "txt") == b"x\ny\n"
    assert encode_result([], "txt") == b""


def test_txt_dataframe_rows_space_separated_without_header_or_index():
    frame = pd.DataFrame({"file": ["a.png", "b.png"], "label": [3, 7],
                          "p": [0.5, 0.25]}, index=[10, 11])
    assert encode_result(frame, "txt") == b"a.png 3 0.5\nb.png 7 0.25\n"


def test_txt_empty_dataframe_is_empty():
    assert encode_result(pd.DataFrame({"a": []}), "txt") == b""


def test_csv_list_of_scalars_has_result_column():
    assert encode_result(["x", "y"], "csv") == b"result\nx\ny\n"
    assert encode_result([1, 2], "csv") == b"result\n1\n2\n"


def test_csv_list_of_dicts_gives_columns():
    data = encode_result([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "csv")
    assert data == b"a,b\n1,x\n2,y\n"


def test_csv_dataframe_has_header_no_index():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x,1", "y"]}, index=[5, 6])
    data = encode_result(frame, "csv")
    assert data == b'a,b\n1,"x,1"\n2,y\n'
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(data)),
                                  frame.reset_index(drop=True))


def read_parquet_part(data: bytes) -> pa.Table:
    """A part for a Parquet collected file is Arrow IPC."""
    return pa.ipc.open_file(pa.BufferReader(data)).read_all()


def read_parquet_bytes(data: bytes) -> pd.DataFrame:
    return read_parquet_part(data).to_pandas()


def test_parquet_list_of_scalars_has_result_column():
    got = read_parquet_bytes(encode_result([1.5, 2.5], "parquet"))
    pd.testing.assert_frame_equal(got, pd.DataFrame({"result": [1.5, 2.5]}))


def test_parquet_list_of_strings():
    got = read_parquet_bytes(encode_result(["a", "b"], "parquet"))
    assert got["result"].tolist() == ["a", "b"]


def test_parquet_mixed_list_becomes_strings():
    got = read_parquet_bytes(encode_result([1, "two", 3.0], "parquet"))
    assert got["result"].tolist() == ["1", "two", "3.0"]


def test_parquet_list_of_dicts_gives_columns():
    got = read_parquet_bytes(encode_result([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
                                           "parquet"))
    pd.testing.assert_frame_equal(got, pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))


def test_parquet_dataframe_keeps_columns_and_drops_index():
    frame = pd.DataFrame({"id": [1, 2, 3], "score": [0.1, 0.2, 0.3]}, index=[7, 8, 9])
    table = read_parquet_part(encode_result(frame, "parquet"))
    assert table.column_names == ["id", "score"]
    pd.testing.assert_frame_equal(table.to_pandas(), frame.reset_index(drop=True))


# -- assembling -------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> StateStore:
    s = StateStore(str(tmp_path / "out"))
    s.makedirs()
    return s


def commit(store: StateStore, fmt: str, index: int, result) -> list:
    """Commit a part as one runner does (its segment file, one per format);
    return its segment, which the test's records keep for :func:`collect`."""
    writers = store.__dict__.setdefault("test_writers", {})
    if fmt not in writers:
        writers[fmt] = PartWriter(store.parts_url, fmt, {}, enabled=True)
    has_output, part = writers[fmt].commit(index, result)
    assert has_output is True
    store.__dict__.setdefault("test_parts", {})[index] = part
    return part


def collect(store: StateStore, indices, fmt: str, name: str, **kwargs):
    """assemble_output over the parts :func:`commit` wrote, as the job calls it."""
    parts = store.__dict__.get("test_parts", {})
    return assemble_output(store, indices, fmt, name, locate=parts.get, **kwargs)


def no_temp_files(folder) -> bool:
    return not [n for _, _, files in os.walk(folder) for n in files if ".tmp-" in n]


def test_part_writer_disabled_writes_nothing(store):
    writer = PartWriter(store.parts_url, "txt", {}, enabled=False)
    assert writer.commit(0, ["x"]) == (False, None)
    assert os.listdir(store.parts) == []


def test_parts_of_one_runner_are_segments_of_one_file(store):
    first = commit(store, "csv", 42, ["x"])
    second = commit(store, "csv", 7, ["yy", "zz"])
    (name,) = os.listdir(store.parts)
    assert name.startswith("seg-") and name.endswith(".csv")
    assert first == [name, 0, len(encode_result(["x"], "csv"))]
    assert second == [name, first[2], len(encode_result(["yy", "zz"], "csv"))]
    data = open(os.path.join(store.parts, name), "rb").read()
    assert data[second[1]:second[1] + second[2]] == encode_result(["yy", "zz"], "csv")
    # another runner (a new writer) never appends to this one's file
    other = PartWriter(store.parts_url, "csv", {}, enabled=True)
    assert other.commit(1, ["w"])[1][0] != name


def test_parts_of_many_segment_files_are_collected_with_few_open(store, monkeypatch):
    """A folder resumed many times holds a segment file per runner of every
    run; collecting keeps only a few open at a time."""
    from daskscore.output import assemble

    monkeypatch.setattr(assemble._PartReader, "keep_open", 3)
    parts = {}
    writers = [PartWriter(store.parts_url, "txt", {}, enabled=True) for _ in range(8)]
    for index in range(40):  # interleaved: each file is needed again and again
        parts[index] = writers[index % 8].commit(index, [f"line {index}"])[1]
    for w in writers:
        w.close()
    url, count = assemble_output(store, range(40), "txt", "out.txt", locate=parts.get)
    assert count == 40
    assert open(url).read().splitlines() == [f"line {i}" for i in range(40)]
    assert len(os.listdir(store.parts)) == 8
    before = len(os.listdir("/proc/self/fd"))
    assemble_output(store, range(40), "txt", "again.txt", locate=parts.get)
    assert len(os.listdir("/proc/self/fd")) == before  # none left open


def test_segments_of_another_format_are_no_part_of_this_output(store):
    """A rerun with another output format: the old format's segments are
    missing parts (strict: the job says so and scores them again), never bytes
    of another format spliced into this file."""
    from daskscore.errors import JobError

    part = commit(store, "txt", 0, ["old text"])
    with pytest.raises(JobError, match="1 mini-batch"):
        assemble_output(store, [0], "csv", "out.csv", strict=True,
                        locate={0: part}.get)
    assert not os.path.exists(store.path("out.csv"))


def test_a_part_on_blob_storage_is_named_by_mini_batch_id(store):
    assert store.part_path(42, "csv") == os.path.join(store.parts, "000000042.csv")


def test_txt_parts_streamed_in_index_order(store):
    for index in (3, 0, 2, 1):  # committed out of order, as workers finish
        commit(store, "txt", index, [f"mb{index}-a", f"mb{index}-b"])
    url, count = collect(store, [2, 0, 3, 1], "txt", "parallel_run_step.txt")
    assert count == 4
    assert url == os.path.join(store.root, "parallel_run_step.txt")
    with open(url) as f:
        assert f.read().splitlines() == [
            f"mb{i}-{s}" for i in range(4) for s in ("a", "b")
        ]
    assert no_temp_files(store.root)


def test_missing_parts_are_ignored(store):
    commit(store, "txt", 0, ["zero"])
    commit(store, "txt", 2, ["two"])
    url, count = collect(store, range(5), "txt", "out.txt")
    assert count == 2
    with open(url) as f:
        assert f.read() == "zero\ntwo\n"


def test_only_listed_parts_are_assembled(store):
    for index in range(3):
        commit(store, "txt", index, [str(index)])
    url, count = collect(store, [0, 2], "txt", "out.txt")
    assert count == 2
    with open(url) as f:
        assert f.read() == "0\n2\n"


def test_part_written_twice_appears_once(store):
    commit(store, "txt", 0, ["a"])
    commit(store, "txt", 1, ["first try"])
    commit(store, "txt", 1, ["second try"])  # a retried / re-run mini-batch
    commit(store, "txt", 2, ["c"])
    url, count = collect(store, [0, 1, 2], "txt", "out.txt")
    assert count == 3
    with open(url) as f:
        assert f.read() == "a\nsecond try\nc\n"


def test_part_written_twice_appears_once_parquet(store):
    commit(store, "parquet", 0, pd.DataFrame({"id": [1, 2]}))
    commit(store, "parquet", 0, pd.DataFrame({"id": [1, 2]}))
    commit(store, "parquet", 1, pd.DataFrame({"id": [3]}))
    url, _ = collect(store, [0, 1], "parquet", "out.parquet")
    assert pq.read_table(url).column("id").to_pylist() == [1, 2, 3]


def test_csv_header_written_once(store):
    for index in range(3):
        commit(store, "csv", index, pd.DataFrame({"id": [index * 2, index * 2 + 1],
                                                  "label": ["a", "b"]}))
    url, count = collect(store, range(3), "csv", "out.csv")
    assert count == 3
    with open(url) as f:
        lines = f.read().splitlines()
    assert lines[0] == "id,label"
    assert lines.count("id,label") == 1
    assert len(lines) == 7
    got = pd.read_csv(url)
    assert got["id"].tolist() == list(range(6))


def test_csv_parts_with_other_column_order_are_realigned(store):
    commit(store, "csv", 0, pd.DataFrame({"a": [1], "b": ["x"], "c": [0.5]}))
    commit(store, "csv", 1, pd.DataFrame({"c": [1.5], "a": [2], "b": ["y"]}))
    commit(store, "csv", 2, pd.DataFrame({"b": ["z"], "c": [2.5], "a": [3]}))
    url, _ = collect(store, range(3), "csv", "out.csv")
    with open(url) as f:
        assert f.readline() == "a,b,c\n"
    got = pd.read_csv(url)
    pd.testing.assert_frame_equal(
        got, pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, 2.5]})
    )


def test_csv_realigned_values_are_kept_as_written(store):
    # realigning reorders fields; it must not re-type them ("008" is an id, not 8)
    commit(store, "csv", 0, pd.DataFrame({"id": ["007"], "v": ["1.50"], "n": ["NA"]}))
    commit(store, "csv", 1, pd.DataFrame({"v": ["2.50"], "n": ["NA"], "id": ["008"]}))
    url, _ = collect(store, range(2), "csv", "out.csv")
    with open(url) as f:
        assert f.read() == "id,v,n\n007,1.50,NA\n008,2.50,NA\n"


def test_csv_part_missing_a_column_gets_empty_values(store):
    commit(store, "csv", 0, pd.DataFrame({"a": [1], "b": ["x"]}))
    commit(store, "csv", 1, pd.DataFrame({"a": [2]}))
    url, _ = collect(store, range(2), "csv", "out.csv")
    got = pd.read_csv(url)
    assert got["a"].tolist() == [1, 2]
    assert got["b"].iloc[0] == "x" and pd.isna(got["b"].iloc[1])


def test_csv_from_lists_of_scalars(store):
    commit(store, "csv", 0, ["a", "b"])
    commit(store, "csv", 1, ["c"])
    url, _ = collect(store, range(2), "csv", "out.csv")
    with open(url) as f:
        assert f.read() == "result\na\nb\nc\n"


def test_parquet_parts_in_order(store):
    for index in (2, 0, 1):
        commit(store, "parquet", index,
               pd.DataFrame({"id": [index * 10, index * 10 + 1],
                             "v": [float(index)] * 2}))
    url, count = collect(store, range(3), "parquet", "out.parquet")
    assert count == 3
    got = pq.read_table(url).to_pandas()
    assert got["id"].tolist() == [0, 1, 10, 11, 20, 21]
    assert got["v"].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert no_temp_files(store.root)


def test_parquet_parts_with_compatible_schemas_are_unified(store):
    commit(store, "parquet", 0, pd.DataFrame({"id": [1, 2], "name": ["a", "b"]}))
    # a later batch: other column order, an extra column, an int32 id
    commit(store, "parquet", 1, pd.DataFrame({
        "extra": [0.5], "id": pd.Series([3], dtype="int32"), "name": ["c"]}))
    # a batch where a column is all None (pyarrow null type)
    commit(store, "parquet", 2, pd.DataFrame({"id": [4], "name": [None]}))
    url, count = collect(store, range(3), "parquet", "out.parquet")
    assert count == 3
    table = pq.read_table(url)
    assert set(table.column_names) == {"id", "name", "extra"}
    assert table.schema.field("id").type == pa.int64()
    name_type = table.schema.field("name").type
    assert pa.types.is_string(name_type) or pa.types.is_large_string(name_type)
    got = table.to_pandas()
    assert got["id"].tolist() == [1, 2, 3, 4]
    assert got["name"].tolist()[:3] == ["a", "b", "c"]
    assert pd.isna(got["name"].iloc[3])
    extra = got["extra"].tolist()
    assert pd.isna(extra[0]) and pd.isna(extra[1]) and extra[2] == 0.5
    assert pd.isna(extra[3])


def test_parquet_empty_parts_skipped(store):
    commit(store, "parquet", 0, pd.DataFrame({"id": [1]}))
    commit(store, "parquet", 1, pd.DataFrame({"id": pd.Series([], dtype="int64")}))
    commit(store, "parquet", 2, pd.DataFrame({"id": [3]}))
    url, _ = collect(store, range(3), "parquet", "out.parquet")
    assert pq.read_table(url).column("id").to_pylist() == [1, 3]


def test_no_parts_gives_an_empty_but_valid_file(store):
    url, count = collect(store, [], "parquet", "out.parquet")
    assert count == 0
    assert pq.read_table(url).num_rows == 0
    url, count = collect(store, [0, 1], "txt", "out.txt")
    assert count == 0
    assert os.path.getsize(url) == 0


def test_assembling_again_replaces_the_file(store):
    commit(store, "txt", 0, ["old"])
    collect(store, [0], "txt", "out.txt")
    commit(store, "txt", 0, ["new"])
    url, _ = collect(store, [0], "txt", "out.txt")
    with open(url) as f:
        assert f.read() == "new\n"


# -- records, manifest, reset ----------------------------------------------------------


def test_records_round_trip_and_load(store):
    write_record(store.fs, store.records, 3, {"index": 3, "succeeded": 2})
    write_record(store.fs, store.records, 1, {"index": 1, "succeeded": 5})
    write_atomic(store.fs, os.path.join(store.records, ".tmp-garbage.json"), b"{}")
    assert read_record(store.fs, store.records, 3) == {"index": 3, "succeeded": 2}
    assert read_record(store.fs, store.records, 2) is None
    loaded = store.load_records()
    assert sorted(loaded) == [1, 3]
    assert loaded[1]["succeeded"] == 5
    assert sorted(store.load_records(known=[1])) == [3]


def test_half_written_record_is_ignored(store):
    with open(os.path.join(store.records, "000000004.json"), "w") as f:
        f.write('{"index": 4, "succ')
    assert read_record(store.fs, store.records, 4) is None
    assert store.load_records() == {}


def test_manifest_round_trip_and_reset(store):
    assert store.read_manifest() is None
    store.write_manifest({"fingerprint": "abc", "n": 3})
    assert store.read_manifest() == {"fingerprint": "abc", "n": 3}
    commit(store, "txt", 0, ["x"])
    write_record(store.fs, store.records, 0, {"index": 0})
    store.reset()
    assert os.listdir(store.parts) == []
    assert os.listdir(store.records) == []
    assert store.read_manifest() == {"fingerprint": "abc", "n": 3}


def test_state_store_layout(tmp_path):
    s = StateStore(str(tmp_path / "out") + "/")
    assert s.output_url == str(tmp_path / "out")
    assert s.parts == os.path.join(str(tmp_path / "out"), ".daskscore", "parts")
    assert s.records == os.path.join(str(tmp_path / "out"), ".daskscore", "records")
    assert s.local


def test_parquet_output_parts_are_arrow_ipc(store):
    part = commit(store, "parquet", 7, pd.DataFrame({"id": [1, 2]}))
    assert os.listdir(store.parts) == [part[0]] and part[0].endswith(".arrow")
    assert store.part_path(7, "parquet").endswith("000000007.arrow")


def test_collected_parquet_dictionary_encodes_only_repeating_columns(store):
    n = 10_000
    for index in range(2):
        commit(store, "parquet", index, pd.DataFrame({
            "id": range(index * n, (index + 1) * n),            # unique
            "label": [f"class-{i % 7}" for i in range(n)],      # repeats
            "score": [i / n for i in range(n)],                 # unique
        }))
    url, _ = collect(store, range(2), "parquet", "out.parquet")
    meta = pq.ParquetFile(url).metadata
    encodings = {
        meta.schema.column(i).path: meta.row_group(0).column(i).encodings
        for i in range(meta.num_columns)
    }
    assert any("DICTIONARY" in e for e in encodings["label"])
    assert not any("DICTIONARY" in e for e in encodings["id"])
    assert not any("DICTIONARY" in e for e in encodings["score"])
    got = pq.read_table(url).to_pandas()
    assert got["id"].tolist() == list(range(2 * n))
    assert got["label"].iloc[n + 3] == "class-3"


def test_collected_parquet_keeps_nested_columns(store):
    commit(store, "parquet", 0, pd.DataFrame({
        "id": [1, 2], "probs": [[0.1, 0.9], [0.8, 0.2]],
        "meta": [{"a": "x"}, {"a": "y"}]}))
    url, _ = collect(store, range(1), "parquet", "out.parquet")
    got = pq.read_table(url).to_pylist()
    assert got[1] == {"id": 2, "probs": [0.8, 0.2], "meta": {"a": "y"}}
