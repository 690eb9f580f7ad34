"""Loading, binding and path resolution of v2 job files, without a cluster."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from examples_data import EXAMPLES

import daskscore as ds
from daskscore.errors import UsageError
from daskscore.v2jobs.bindings import resolve
from daskscore.v2jobs.parallel import runner_flags
from daskscore.v2jobs.paths import PathResolver
from daskscore.v2jobs.spec import load_job_file


@pytest.fixture
def many_models(tmp_path: Path) -> Path:
    folder = tmp_path / "many_models"
    shutil.copytree(EXAMPLES / "many_models", folder)
    (folder / "data").mkdir()
    (folder / "data" / "sales.csv").write_text("Store,Week,Sales\n1,1,10\n")
    return folder


def _plan(path: Path, tmp_path: Path, overrides=None):
    file = load_job_file(str(path), overrides)
    paths = PathResolver(str(tmp_path / "ws"))
    return file, resolve(file, str(tmp_path / "out"), paths)


def test_pipeline_resolves_every_binding_in_dependency_order(many_models, tmp_path):
    file, plan = _plan(many_models / "pipeline.yml", tmp_path)
    assert plan.order == ["partition", "train"]
    assert plan.jobs["train"].needs == {"partition"}
    partitioned = str(tmp_path / "out" / "partition" / "partitioned")
    assert plan.jobs["partition"].outputs["partitioned"].location.url == partitioned
    assert plan.jobs["train"].inputs["sales_table"].location.url == partitioned
    assert plan.jobs["train"].inputs["sales_table"].type == "mltable"
    # the component's default, overridden by the pipeline input
    raw = file.jobs["partition"].data["command"]
    command = plan.render("partition", raw, "command")
    assert command == (f"python partition.py --input {many_models}/data/sales.csv "
                       f"--columns Store --output {partitioned}")
    # ${{parent.outputs.x}} and ${{name}} in a path
    assert plan.jobs["train"].outputs["models"].location.url == str(
        tmp_path / "out" / "train" / "models")
    assert plan.jobs["train"].outputs["summary"].location.url == str(
        many_models / "out" / "train" / "aggregated_returns.csv")
    assert any("settings.default_compute: accepted and ignored" in n
               for n in file.notes)
    assert file.experiment_name == "many-models"


def test_set_overrides_an_input(many_models, tmp_path):
    file, plan = _plan(many_models / "pipeline.yml", tmp_path,
                       ["jobs.partition.inputs.partition_columns=Week"])
    assert plan.jobs["partition"].inputs["partition_columns"].value == "Week"
    with pytest.raises(UsageError, match="--set 'nope': use jobs.JOB.inputs"):
        load_job_file(str(many_models / "pipeline.yml"), ["nope"])


def _write(folder: Path, text: str, name: str = "pipeline.yml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


PIPE = """\
type: pipeline
jobs:
  a:
    type: command
    command: echo {a_cmd}
    inputs:
      x: {a_in}
    outputs:
      out: {{type: uri_folder}}
  b:
    type: command
    command: echo ${{{{inputs.y}}}}
    inputs:
      y: ${{{{parent.jobs.a.outputs.out}}}}
    outputs:
      out: {{type: uri_folder}}
"""


def test_unknown_key_in_a_binding_is_one_line_naming_it(tmp_path):
    path = _write(tmp_path, PIPE.format(a_cmd="${{inputs.nope}}", a_in="1"))
    with pytest.raises(UsageError) as err:
        _plan(path, tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "jobs.a.command: ${{inputs.nope}}: the job has no input 'nope'" in message
    assert "(inputs: x)" in message


def test_unknown_job_in_a_binding(tmp_path):
    path = _write(tmp_path, PIPE.format(
        a_cmd="hi", a_in="${{parent.jobs.zzz.outputs.out}}"))
    with pytest.raises(UsageError, match=r"jobs.a.inputs.x: \$\{\{parent.jobs.zzz."
                       r"outputs.out\}\}: no job 'zzz' in the pipeline \(jobs: a, b\)"):
        _plan(path, tmp_path)


def test_cycle_between_jobs_is_refused(tmp_path):
    path = _write(tmp_path, PIPE.format(
        a_cmd="hi", a_in="${{parent.jobs.b.outputs.out}}"))
    with pytest.raises(UsageError, match="in a cycle: a -> b -> a"):
        _plan(path, tmp_path)


def test_missing_local_input_names_the_key(tmp_path):
    path = _write(tmp_path, PIPE.format(a_cmd="hi", a_in="{type: uri_file, path: "
                                        "./missing.csv}"))
    with pytest.raises(UsageError, match=r"jobs.a.inputs.x.path: ./missing.csv: no "
                       "such file or folder"):
        _plan(path, tmp_path)


def test_optional_inputs_and_name_bindings(tmp_path):
    path = _write(tmp_path, """\
        type: command
        name: solo
        command: >-
          run $[[--opt ${{inputs.maybe}}]] --n ${{name}}
          --d ${{default_datastore}}
        inputs:
          maybe: {type: string, optional: true}
        """, "job.yml")
    file, plan = _plan(path, tmp_path)
    assert plan.render("solo", file.jobs["solo"].data["command"], "command") == (
        "run  --n solo --d workspaceblobstore")


def test_runner_flags_are_honoured_or_named_as_ignored():
    notes: list[str] = []
    args = ["--model", "m", "--error_threshold", "5", "--allowed_failed_percent=30",
            "--task_overhead_timeout", "1200", "--copy_logs_to_parent", "True"]
    assert runner_flags(args, "job.yml: task.program_arguments", notes) == {
        "error_threshold": 5, "allowed_failed_percent": 30.0}
    assert notes == ["job.yml: task.program_arguments: runner flag(s) "
                     "--task_overhead_timeout, --copy_logs_to_parent accepted and "
                     "ignored (daskscore has no such setting)"]


def test_datastore_and_dataset_paths(tmp_path):
    ws = ds.Workspace(str(tmp_path / "ws"))
    store = tmp_path / "store"
    (store / "images").mkdir(parents=True)
    ds.Datastore.register_local(ws, "mystore", str(store))
    paths = PathResolver(str(tmp_path / "ws"))
    loc = paths.resolve("azureml://datastores/mystore/paths/images/",
                        str(tmp_path), "k")
    assert loc.url.rstrip("/") == str(store / "images")
    default = paths.resolve("azureml://datastores/workspaceblobstore/paths/out/x",
                            str(tmp_path), "k")
    assert default.url.startswith(str(tmp_path / "ws"))
    assert default.url.endswith("out/x")
    ds.Dataset.File.from_files(str(store / "images")).register(ws, "imgs")
    named = paths.resolve("azureml:imgs:1", str(tmp_path), "k")
    assert named.dataset is not None and named.url.rstrip("/") == str(store / "images")
    with pytest.raises(UsageError, match="datastore 'other' is not registered"):
        paths.resolve("azureml://datastores/other/paths/x", str(tmp_path), "k")
    assert paths.resolve("abfs://c/p", str(tmp_path), "k").url == "abfs://c/p"
