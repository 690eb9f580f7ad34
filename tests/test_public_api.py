"""The public surface: ``daskscore.__all__`` and the error tree (pinned on purpose).

Changing a name here is an API change: tests outside this repository use them.
"""

from __future__ import annotations

import importlib

import pytest

import daskscore as ds
from daskscore import errors as exceptions

PUBLIC_NAMES = {
    "ConfigError",
    "DaskScoreError",
    "Dataset",
    "DatasetError",
    "EntryScript",
    "EntryScriptError",
    "ErrorThresholdExceeded",
    "FileDataset",
    "JobError",
    "JobProgress",
    "MiniBatchContext",
    "MiniBatchSpec",
    "OutputAction",
    "ParallelRunConfig",
    "ParallelRunStep",
    "ProgressCallback",
    "StepRunResult",
    "TabularDataset",
    "TextProgress",
    "__version__",
    # workspaces, models, pipelines (issue 3)
    "DataPath",
    "Datastore",
    "Experiment",
    "Model",
    "NotRegisteredError",
    "Pipeline",
    "PipelineData",
    "PipelineRun",
    "StepRun",
    "Workspace",
    "WorkspaceError",
    # inside a Dask pipeline (issue 11)
    "MiniBatchError",
    "map_partitions",
    "scorer",
    # the embedded cluster kept between step.run() calls (issue 12)
    "close_embedded_clusters",
}

ERRORS = ["ConfigError", "DatasetError", "EntryScriptError", "ErrorThresholdExceeded",
          "JobError", "MiniBatchError", "NotRegisteredError", "WorkspaceError"]


def test_all_is_pinned():
    assert set(ds.__all__) >= PUBLIC_NAMES, sorted(PUBLIC_NAMES - set(ds.__all__))
    extra = set(ds.__all__) - PUBLIC_NAMES
    assert not extra, f"new public names {sorted(extra)}: add them to PUBLIC_NAMES"


def test_all_has_no_duplicates_and_is_sorted():
    assert len(ds.__all__) == len(set(ds.__all__))
    names = [n for n in ds.__all__ if n != "__version__"]
    assert names == sorted(names)


@pytest.mark.parametrize("name", sorted(PUBLIC_NAMES))
def test_every_public_name_is_importable(name):
    module = importlib.import_module("daskscore")
    assert getattr(module, name) is not None
    namespace: dict = {}
    exec(f"from daskscore import {name}", namespace)
    assert namespace[name] is getattr(module, name)


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from daskscore import *", namespace)
    assert {k for k in namespace if k != "__builtins__"} == set(ds.__all__)


def test_version_is_a_string():
    assert isinstance(ds.__version__, str)
    assert ds.__version__.count(".") >= 1


def test_dataset_factories():
    assert callable(ds.Dataset.File.from_files)
    for name in ("from_delimited_files", "from_parquet_files", "from_json_lines_files",
                 "from_dask_dataframe"):
        assert callable(getattr(ds.Dataset.Tabular, name)), name


def test_output_action_is_a_string_enum():
    assert ds.OutputAction.APPEND_ROW == "append_row"
    assert ds.OutputAction.SUMMARY_ONLY == "summary_only"
    assert str(ds.OutputAction.APPEND_ROW) == "append_row"
    assert ds.OutputAction("summary_only") is ds.OutputAction.SUMMARY_ONLY


# -- the error tree ----------------------------------------------------------------


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_subclasses_daskscore_error(name):
    cls = getattr(ds, name)
    assert issubclass(cls, ds.DaskScoreError)
    assert issubclass(cls, Exception)
    assert cls is getattr(exceptions, name)


def test_exceptions_module_exports_the_tree():
    assert {"DaskScoreError", *ERRORS} <= set(exceptions.__all__)
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, ds.DaskScoreError), name
        assert cls.exit_code in (1, 2), name
        # the whole tree is drawn in the module docstring
        assert name in exceptions.__doc__, name


@pytest.mark.parametrize("name", ["ConfigError", "DatasetError"])
def test_config_and_dataset_errors_are_value_errors(name):
    assert issubclass(getattr(ds, name), ValueError)


@pytest.mark.parametrize("name", ["EntryScriptError", "ErrorThresholdExceeded",
                                  "JobError"])
def test_other_errors_are_not_value_errors(name):
    assert not issubclass(getattr(ds, name), ValueError)


@pytest.mark.parametrize(
    "error, code",
    [
        (ds.ConfigError("run_max_try", 0, "an int >= 1"), 2),
        (ds.DatasetError("no files match"), 2),
        (ds.EntryScriptError("score.py", "defines no run()"), 2),
        (ds.ErrorThresholdExceeded("error_threshold=0 exceeded"), 1),
        (ds.JobError("the cluster died"), 1),
        (ds.DaskScoreError("anything"), 1),
    ],
)
def test_exit_codes(error, code):
    assert error.exit_code == code
    assert type(error).exit_code == code


def test_cli_usage_error_is_in_the_tree_with_exit_2():
    from daskscore.errors import UsageError

    assert issubclass(UsageError, ds.DaskScoreError)
    assert UsageError.exit_code == 2


def test_config_error_attributes_and_message():
    err = ds.ConfigError("mini_batch_size", "abc", "a size such as 64KB")
    assert (err.field, err.value, err.allowed) == ("mini_batch_size", "abc",
                                                   "a size such as 64KB")
    assert str(err) == "mini_batch_size='abc' is not allowed: a size such as 64KB"
    with pytest.raises(ValueError, match="mini_batch_size"):
        raise err


def test_entry_script_error_attributes_and_message():
    err = ds.EntryScriptError("score.py", "syntax error at line 3: invalid syntax",
                              details="def run(:")
    assert err.script == "score.py"
    assert err.problem.startswith("syntax error")
    assert err.details == "def run(:"
    assert str(err) == "entry script score.py: syntax error at line 3: invalid syntax"


def test_error_threshold_exceeded_message_points_at_the_logs():
    err = ds.ErrorThresholdExceeded("error_threshold=0 exceeded: 1 items failed",
                                    "/out")
    assert err.reason.startswith("error_threshold=0")
    assert err.output_dir == "/out"
    assert str(err) == ("error_threshold=0 exceeded: 1 items failed "
                        "(see /out/logs/job_result.txt)")
    assert str(ds.ErrorThresholdExceeded("failed")) == "failed"


def test_errors_survive_pickling():
    # errors travel from workers to the client
    import pickle

    for err in (ds.ConfigError("name", "X", "lower case"),
                ds.EntryScriptError("s.py", "import failed", "tb"),
                ds.ErrorThresholdExceeded("too many", "/out")):
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err)
        assert str(again) == str(err)


def test_raise_for_status():
    ok = ds.StepRunResult(status="Completed", total_items=2, succeeded_items=2,
                          failed_items=0, mini_batches=1, failed_mini_batches=0,
                          output_dir="/out")
    assert ok.raise_for_status() is ok
    bad = ds.StepRunResult(status="Failed", total_items=2, succeeded_items=1,
                           failed_items=1, mini_batches=1, failed_mini_batches=1,
                           output_dir="/out", reason="error_threshold=0 exceeded")
    with pytest.raises(ds.ErrorThresholdExceeded) as excinfo:
        bad.raise_for_status()
    assert excinfo.value.reason == "error_threshold=0 exceeded"
    assert "/out/logs/job_result.txt" in str(excinfo.value)
    assert bad.log_dir == "/out/logs"
