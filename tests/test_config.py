"""ParallelRunConfig / ParallelRunStep validation and size parsing (no cluster)."""

from __future__ import annotations

import dataclasses

import pytest

import daskscore as ds
from daskscore.config import (
    DEFAULT_APPEND_ROW_FILE_NAME,
    OutputAction,
    parse_file_count,
    parse_size,
)


def make_config(**kwargs) -> ds.ParallelRunConfig:
    kwargs.setdefault("entry_script", "score.py")
    return ds.ParallelRunConfig(**kwargs)


def assert_config_error(excinfo: pytest.ExceptionInfo, field: str, value) -> None:
    """The error is a ValueError/ConfigError naming the parameter and the value."""
    err = excinfo.value
    assert isinstance(err, ValueError)
    assert isinstance(err, ds.ConfigError)
    assert isinstance(err, ds.DaskScoreError)
    assert err.field == field
    assert err.value == value
    message = str(err)
    assert message.startswith(f"{field}=")
    assert repr(value) in message
    assert "not allowed" in message
    assert err.allowed and err.allowed in message


@pytest.fixture
def files(tmp_path) -> ds.FileDataset:
    (tmp_path / "a.txt").write_text("a")
    return ds.Dataset.File.from_files(str(tmp_path / "*.txt"))


@pytest.fixture
def table(tmp_path) -> ds.TabularDataset:
    (tmp_path / "t.csv").write_text("x\n1\n")
    return ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "t.csv"))


def make_step(inputs, config=None, **kwargs) -> ds.ParallelRunStep:
    kwargs.setdefault("name", "batch-job")
    kwargs.setdefault("output", "out")
    return ds.ParallelRunStep(
        parallel_run_config=config or make_config(), inputs=inputs, **kwargs
    )


# -- defaults -----------------------------------------------------------------


def test_defaults_follow_the_contract():
    cfg = make_config()
    assert cfg.mini_batch_size is None
    assert cfg.error_threshold == -1
    assert cfg.allowed_failed_count is None
    assert cfg.allowed_failed_percent is None
    assert cfg.output_action == OutputAction.APPEND_ROW
    assert cfg.output_action == "append_row"
    assert cfg.append_row_file_name is None
    assert cfg.output_file_name == DEFAULT_APPEND_ROW_FILE_NAME
    assert DEFAULT_APPEND_ROW_FILE_NAME == "parallel_run_step.txt"
    assert cfg.output_format == "txt"
    assert cfg.node_count == 1
    assert cfg.process_count_per_node is None
    assert cfg.run_invocation_timeout == 60
    assert cfg.run_max_try == 3
    assert cfg.logging_level == "INFO"
    assert cfg.environment_variables is None
    assert cfg.partition_keys is None


def test_config_is_frozen():
    cfg = make_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.run_max_try = 5  # type: ignore[misc]


def test_to_dict_gives_plain_values():
    d = make_config(output_action=OutputAction.SUMMARY_ONLY).to_dict()
    assert d["output_action"] == "summary_only"
    assert type(d["output_action"]) is str
    assert d["entry_script"] == "score.py"


# -- entry_script ----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["score.txt", "score", "", 42])
def test_entry_script_must_be_a_python_file(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(entry_script=bad)
    assert_config_error(excinfo, "entry_script", bad)


def test_entry_script_accepts_a_pathlike(tmp_path):
    cfg = make_config(entry_script=tmp_path / "score.py")
    assert cfg.entry_script == str(tmp_path / "score.py")


# -- append_row_file_name ----------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt",
    [("out.txt", "txt"), ("out.csv", "csv"), ("out.parquet", "parquet"),
     ("Results.CSV", "csv")],
)
def test_append_row_file_name_extension_picks_the_format(name, fmt):
    cfg = make_config(append_row_file_name=name)
    assert cfg.output_file_name == name
    assert cfg.output_format == fmt


@pytest.mark.parametrize(
    "bad", ["sub/out.txt", "../out.txt", "/abs/out.csv", "a\\b.csv", "", ".", ".."]
)
def test_append_row_file_name_must_be_a_plain_name(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(append_row_file_name=bad)
    assert_config_error(excinfo, "append_row_file_name", bad)
    if bad not in ("", ".", ".."):
        assert "plain file name" in str(excinfo.value)


@pytest.mark.parametrize("bad", ["out.json", "out", "out.tsv", "out.txt.gz"])
def test_append_row_file_name_needs_a_known_extension(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(append_row_file_name=bad)
    assert_config_error(excinfo, "append_row_file_name", bad)
    assert ".parquet" in str(excinfo.value)


# -- error_threshold / allowed_failed_count / allowed_failed_percent --------------


@pytest.mark.parametrize("field", ["error_threshold", "allowed_failed_count"])
@pytest.mark.parametrize("good", [-1, 0, 1, 1000])
def test_failure_counts_accept_ints_from_minus_one(field, good):
    assert getattr(make_config(**{field: good}), field) == good


@pytest.mark.parametrize("field", ["error_threshold", "allowed_failed_count"])
@pytest.mark.parametrize("bad", [-2, -100, 1.5, "3", True])
def test_failure_counts_reject_other_values(field, bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(**{field: bad})
    assert_config_error(excinfo, field, bad)
    assert ">= -1" in str(excinfo.value)


def test_allowed_failed_count_none_means_no_limit():
    assert make_config(allowed_failed_count=None).allowed_failed_count is None


@pytest.mark.parametrize("good", [0, 0.0, 12.5, 100, None])
def test_allowed_failed_percent_accepts_0_to_100(good):
    assert make_config(allowed_failed_percent=good).allowed_failed_percent == good


@pytest.mark.parametrize("bad", [-0.1, -1, 100.5, 101, "10", True])
def test_allowed_failed_percent_rejects_out_of_range(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(allowed_failed_percent=bad)
    assert_config_error(excinfo, "allowed_failed_percent", bad)
    assert "0 to 100" in str(excinfo.value)


# -- run_invocation_timeout / run_max_try / node counts --------------------------


@pytest.mark.parametrize("good", [0.001, 1, 60, 3600.5])
def test_run_invocation_timeout_accepts_positive(good):
    assert make_config(run_invocation_timeout=good).run_invocation_timeout == good


@pytest.mark.parametrize("bad", [0, 0.0, -1, "60", True])
def test_run_invocation_timeout_must_be_positive(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(run_invocation_timeout=bad)
    assert_config_error(excinfo, "run_invocation_timeout", bad)
    assert "greater than 0" in str(excinfo.value)


@pytest.mark.parametrize("good", [1, 2, 10])
def test_run_max_try_accepts_one_or_more(good):
    assert make_config(run_max_try=good).run_max_try == good


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3", False])
def test_run_max_try_must_be_at_least_one(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(run_max_try=bad)
    assert_config_error(excinfo, "run_max_try", bad)
    assert ">= 1" in str(excinfo.value)


@pytest.mark.parametrize("field", ["node_count", "process_count_per_node"])
@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_node_and_process_counts_must_be_positive_ints(field, bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(**{field: bad})
    assert_config_error(excinfo, field, bad)


# -- mini_batch_size --------------------------------------------------------------


@pytest.mark.parametrize("good", ["5", 5, "64KB", "1mb", "1GB", "1024", 5.0])
def test_mini_batch_size_accepted_forms(good):
    cfg = make_config(mini_batch_size=good)
    assert parse_size(cfg.mini_batch_size) >= 1


def test_mini_batch_size_whole_float_becomes_int():
    cfg = make_config(mini_batch_size=5.0)
    assert cfg.mini_batch_size == 5
    assert type(cfg.mini_batch_size) is int


@pytest.mark.parametrize(
    "bad", ["abc", "1.5MB", 0, -1, "1TB", "0", "-5", "", "MB", "5 files", True, 5.5]
)
def test_mini_batch_size_rejected_forms(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(mini_batch_size=bad)
    assert_config_error(excinfo, "mini_batch_size", bad)
    assert "KB, MB or GB" in str(excinfo.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1", 1),
        ("5", 5),
        (5, 5),
        ("1024", 1024),
        ("64KB", 64 * 1024),
        ("64kb", 64 * 1024),
        ("1MB", 1024**2),
        ("1mb", 1024**2),
        ("3Mb", 3 * 1024**2),
        ("1GB", 1024**3),
        ("2gb", 2 * 1024**3),
        (" 2 KB ", 2048),
    ],
)
def test_parse_size_powers_of_1024(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["abc", "1.5MB", 0, -1, "1TB", "0KB", "1 B", True])
def test_parse_size_rejects(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        parse_size(bad)
    assert_config_error(excinfo, "mini_batch_size", bad)


def test_parse_size_names_the_given_field():
    with pytest.raises(ds.ConfigError) as excinfo:
        parse_size("big", field_name="blocksize")
    assert excinfo.value.field == "blocksize"
    assert str(excinfo.value).startswith("blocksize='big'")


@pytest.mark.parametrize("text, expected", [("5", 5), (5, 5), (" 7 ", 7), (1, 1)])
def test_parse_file_count(text, expected):
    assert parse_file_count(text) == expected


@pytest.mark.parametrize("bad", ["1MB", "64KB", "0", 0, -3, "abc", 2.5, False])
def test_parse_file_count_rejects(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        parse_file_count(bad)
    if bad == "0":  # a digit string is read as the number before the check
        assert excinfo.value.value == 0
        assert str(excinfo.value).startswith("mini_batch_size=0 ")
    else:
        assert_config_error(excinfo, "mini_batch_size", bad)
    assert "number of files" in str(excinfo.value)


# -- output_action / logging_level / environment_variables / partition_keys --------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("append_row", OutputAction.APPEND_ROW),
        ("summary_only", OutputAction.SUMMARY_ONLY),
        (OutputAction.SUMMARY_ONLY, OutputAction.SUMMARY_ONLY),
    ],
)
def test_output_action_accepts_both_spellings(value, expected):
    cfg = make_config(output_action=value)
    assert cfg.output_action is expected
    assert str(cfg.output_action) == expected.value


@pytest.mark.parametrize("bad", ["append", "APPEND_ROW", "summary", "", None])
def test_output_action_rejects_others(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(output_action=bad)
    assert_config_error(excinfo, "output_action", bad)
    assert "append_row" in str(excinfo.value)
    assert "summary_only" in str(excinfo.value)


@pytest.mark.parametrize("level", ["DEBUG", "info", "Warning", "ERROR", "critical"])
def test_logging_level_is_normalised(level):
    assert make_config(logging_level=level).logging_level == level.upper()


@pytest.mark.parametrize("bad", ["VERBOSE", "", 10, None])
def test_logging_level_rejects_unknown(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(logging_level=bad)
    assert_config_error(excinfo, "logging_level", bad)
    assert "DEBUG" in str(excinfo.value)


def test_environment_variables_values_become_strings():
    cfg = make_config(environment_variables={"A": 1, "B": "x"})
    assert cfg.environment_variables == {"A": "1", "B": "x"}


@pytest.mark.parametrize("bad", [["A=1"], {"": "x"}, {1: "x"}, "A=1"])
def test_environment_variables_must_be_a_dict_of_names(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(environment_variables=bad)
    assert_config_error(excinfo, "environment_variables", bad)


def test_partition_keys_normalised_to_a_list():
    assert make_config(partition_keys="region").partition_keys == ["region"]
    assert make_config(partition_keys=["a", "b"]).partition_keys == ["a", "b"]


@pytest.mark.parametrize("bad", [[], [""], [1], ""])
def test_partition_keys_must_name_columns(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(partition_keys=bad)
    assert_config_error(excinfo, "partition_keys", bad)


@pytest.mark.parametrize("size", ["1MB", 10])
def test_partition_keys_exclusive_with_mini_batch_size(size):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_config(partition_keys=["region"], mini_batch_size=size)
    assert_config_error(excinfo, "partition_keys", ["region"])
    assert "mini_batch_size" in str(excinfo.value)


# -- ParallelRunStep ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["abc", "batch-mnist", "a1b", "a-b-c", "x" * 32, "step-2", "a--b"]
)
def test_step_name_accepted(name, files):
    assert make_step(files, name=name).name == name


@pytest.mark.parametrize(
    "bad",
    [
        "ab",  # too short
        "x" * 33,  # too long
        "Batch",  # upper case
        "1abc",  # starts with a digit
        "-abc",  # starts with '-'
        "abc-",  # ends with '-'
        "ab_c",  # underscore
        "ab c",  # space
        "abé",  # non-ascii
        "",
        None,
        123,
    ],
)
def test_step_name_rejected(bad, files):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_step(files, name=bad)
    assert_config_error(excinfo, "name", bad)
    assert "3-32" in str(excinfo.value)


@pytest.mark.parametrize("size", ["1MB", "64KB", "1GB"])
def test_file_dataset_rejects_byte_sizes_at_step_construction(size, files):
    cfg = make_config(mini_batch_size=size)  # fine on its own: could be tabular
    with pytest.raises(ds.ConfigError) as excinfo:
        make_step(files, config=cfg)
    assert_config_error(excinfo, "mini_batch_size", size)
    assert "FileDataset" in str(excinfo.value)


@pytest.mark.parametrize("size", ["5", 5, "1024"])
def test_file_dataset_accepts_file_counts(size, files):
    step = make_step(files, config=make_config(mini_batch_size=size))
    assert step.config.mini_batch_size == size


@pytest.mark.parametrize("size", ["1MB", "64KB", 4096])
def test_tabular_dataset_accepts_byte_sizes(size, table):
    step = make_step(table, config=make_config(mini_batch_size=size))
    assert step.input_kind == "tabular"


def test_step_needs_an_output_for_append_row(files):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_step(files, output=None)
    assert_config_error(excinfo, "output", None)


def test_summary_only_step_gets_a_default_output(files):
    cfg = make_config(output_action="summary_only")
    step = make_step(files, config=cfg, output=None)
    assert step.output.endswith("batch-job")


def test_step_output_is_made_absolute(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    step = make_step(files, output="rel/out")
    assert step.output == str(tmp_path / "rel" / "out")


def test_step_rejects_mixed_input_kinds(files, table):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_step([files, table])
    assert excinfo.value.field == "inputs"
    assert "one type" in str(excinfo.value)


@pytest.mark.parametrize("bad", [[], ["data/*.png"], None])
def test_step_rejects_inputs_that_are_not_datasets(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        make_step(bad)
    assert excinfo.value.field == "inputs"
    assert isinstance(excinfo.value, ValueError)


def test_step_rejects_a_config_that_is_not_a_config(files):
    with pytest.raises(ds.ConfigError) as excinfo:
        ds.ParallelRunStep(name="abc", parallel_run_config={"entry_script": "s.py"},
                           inputs=[files], output="out")
    assert excinfo.value.field == "parallel_run_config"


def test_step_arguments_become_strings(files):
    step = make_step(files, arguments=["--scale", 3, 1.5])
    assert step.arguments == ["--scale", "3", "1.5"]


def test_single_dataset_accepted_without_a_list(files):
    assert make_step(files).inputs == [files]


# -- rebuilding a step from its settings -----------------------------------------


def test_from_settings_keeps_a_multi_line_csv(tmp_path):
    (tmp_path / "t.csv").write_text('x;y\n"a\nb";1\n')
    csv = ds.Dataset.Tabular.from_delimited_files(
        str(tmp_path / "t.csv"), separator=";", header=False, support_multi_line=True
    )
    step = make_step(csv, output=str(tmp_path / "out"))
    back = ds.ParallelRunStep.from_settings(step.settings())
    [dataset] = back.inputs
    assert isinstance(dataset, ds.TabularDataset) and dataset.format == "csv"
    assert dataset.read_options["support_multi_line"] is True
    assert dataset.read_options == csv.read_options
    assert dataset.path == csv.path


@pytest.mark.parametrize("make", [
    lambda p: ds.Dataset.File.from_files(str(p / "*.txt")),
    lambda p: ds.Dataset.Tabular.from_parquet_files(str(p / "t.parquet")),
    lambda p: ds.Dataset.Tabular.from_json_lines_files(str(p / "t.jsonl")),
    lambda p: ds.Dataset.Tabular.from_delimited_files(str(p / "t.csv")),
])
def test_from_settings_rebuilds_every_input_format(tmp_path, make):
    dataset = make(tmp_path)
    step = make_step(dataset, output=str(tmp_path / "out"))
    [back] = ds.ParallelRunStep.from_settings(step.settings()).inputs
    assert type(back) is type(dataset)
    assert back.path == dataset.path
    assert getattr(back, "format", None) == getattr(dataset, "format", None)
    assert getattr(back, "read_options", {}) == getattr(dataset, "read_options", {})
