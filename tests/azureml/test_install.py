"""``daskscore.azureml.install()``: the v1 import hook and the notebook names.

In-process checks of what the flows rely on (no cluster): which names resolve,
the one-line errors for the others, Workspace.from_config() on an Azure
config.json, datastore uploads, v1 dataset paths and partitions, the ignored
compute objects, PythonScriptStep and pipeline parameters; and that a real
azureml-core, when installed, is not shadowed.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import flow_data
import pandas as pd
import pytest

import daskscore as ds
import daskscore.azureml as v1
from daskscore.azureml import _notebook

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hook():
    assert v1.install() is True
    yield
    v1.uninstall()


@pytest.fixture
def ws(tmp_path, monkeypatch, hook):
    """A folder with an Azure ML config.json, as the current folder."""
    flow_data.azure_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    from azureml.core import Workspace

    return Workspace.from_config()


# -- the import hook ---------------------------------------------------------------
def test_v1_names_resolve_to_daskscore(hook):
    from azureml.core import Dataset, Datastore, Environment, Experiment, Workspace
    from azureml.core.compute import AmlCompute, ComputeTarget
    from azureml.core.runconfig import DEFAULT_CPU_IMAGE, DockerConfiguration
    from azureml.data import OutputFileDatasetConfig
    from azureml.pipeline.core import Pipeline, PipelineData, PipelineParameter
    from azureml.pipeline.steps import (
        ParallelRunConfig,
        ParallelRunStep,
        PythonScriptStep,
    )

    assert issubclass(Workspace, ds.Workspace) and issubclass(Experiment, ds.Experiment)
    assert issubclass(Datastore, ds.Datastore) and issubclass(Dataset, ds.Dataset)
    assert issubclass(AmlCompute, ComputeTarget)
    assert DEFAULT_CPU_IMAGE.startswith("mcr.microsoft.com/azureml/")
    names = [
        Environment,
        DockerConfiguration,
        OutputFileDatasetConfig,
        Pipeline,
        PipelineData,
        PipelineParameter,
        ParallelRunConfig,
        ParallelRunStep,
        PythonScriptStep,
    ]
    assert all(n.__module__.startswith("daskscore.azureml.") for n in names)
    assert sys.modules["azureml.core"].__daskscore__ == "daskscore.azureml.core"


def test_a_name_not_provided_fails_on_import_with_one_line(hook):
    with pytest.raises(ImportError) as caught:
        from azureml.core import Keyvault  # noqa: F401
    message = str(caught.value)
    assert message.startswith("azureml.core.Keyvault: daskscore does not provide")
    assert "docs/migrating-from-azureml.md" in message and "\n" not in message

    steps = importlib.import_module("azureml.pipeline.steps")
    with pytest.raises(
        v1.NotProvidedError,
        match=r"^azureml.pipeline.steps.HyperDriveStep: "
        "daskscore does not provide",
    ):
        steps.HyperDriveStep  # noqa: B018
    assert not hasattr(steps, "__wrapped__")  # dunder names stay AttributeErrors


def test_a_module_not_provided_fails_on_import_with_one_line(hook):
    with pytest.raises(
        ModuleNotFoundError,
        match=r"^azureml.train: daskscore does not provide this Azure "
        "ML v1 module",
    ):
        import azureml.train.automl  # noqa: F401
    with pytest.raises(ModuleNotFoundError, match="^azureml.contrib: daskscore"):
        importlib.import_module("azureml.contrib.dataset")


def test_install_twice_then_uninstall(hook):
    assert v1.install() is True and v1.installed()
    assert sum(isinstance(f, v1.V1Finder) for f in sys.meta_path) == 1
    v1.uninstall()
    assert not v1.installed() and "azureml.core" not in sys.modules
    with pytest.raises(ModuleNotFoundError, match="No module named 'azureml"):
        importlib.import_module("azureml.core")
    v1.install()


@pytest.mark.slow
def test_a_real_azureml_core_is_not_shadowed(tmp_path):
    """With azureml-core installed beside daskscore, install() leaves it alone;
    install(force=True) puts daskscore first."""
    sdk = tmp_path / "sdk"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(sdk),
            "azureml-core",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    probe = (
        "import importlib.util, sys\n"
        "import daskscore.azureml as v1\n"
        "print(v1.install())\n"
        "print(importlib.util.find_spec('azureml.core').origin)\n"
        "print(v1.install(force=True))\n"
        "import azureml.core\n"
        "print(azureml.core.__daskscore__)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(sdk)]))
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "False"
    assert lines[1] == str(sdk / "azureml" / "core" / "__init__.py")
    assert lines[2:] == ["True", "daskscore.azureml.core"]


# -- workspace and datastores ------------------------------------------------------
def test_from_config_reads_an_azure_config_json(ws, tmp_path):
    assert ws.url == str(tmp_path / ".daskscore")
    assert (ws.name, ws.resource_group, ws.location) == (
        "ws-batch",
        "rg-batch",
        "westeurope",
    )
    assert ws.subscription_id == "00000000-0000-0000-0000-000000000000"
    # the same workspace next time, from a subfolder too
    (tmp_path / "notebooks").mkdir()
    again = _notebook.Workspace.from_config(tmp_path / "notebooks")
    assert again.id == ws.id


def test_from_config_daskscore_workspace_key_and_azureml_folder(tmp_path):
    (tmp_path / ".azureml").mkdir()
    (tmp_path / ".azureml" / "config.json").write_text(
        json.dumps({"workspace_name": "w", "daskscore_workspace": "team-ws"})
    )
    ws = _notebook.Workspace.from_config(tmp_path)
    assert ws.url == str(tmp_path / "team-ws") and ws.name == "w"
    # a daskscore config wins over an Azure one
    ds.Workspace(tmp_path / "other").write_config(tmp_path)
    assert _notebook.Workspace.from_config(tmp_path).url == str(tmp_path / "other")


def test_from_config_without_any_config(tmp_path):
    with pytest.raises(ds.WorkspaceError, match="no daskscore.json or config.json"):
        _notebook.Workspace.from_config(tmp_path)


def test_built_in_datastore_names_are_the_default_datastore(ws, tmp_path):
    from azureml.core import Datastore

    default = ws.get_default_datastore()
    for name in ("workspaceblobstore", "workspacefilestore"):
        assert Datastore.get(ws, name).url == default.url
        assert ws.datastores[name].url == default.url
    assert Datastore(ws, "workspaceblobstore").url == default.url
    local = Datastore.register_local(ws, "mine", tmp_path / "mine")
    assert Datastore(ws, "mine").url == local.url == str(tmp_path / "mine")
    with pytest.raises(ds.NotRegisteredError, match="mine"):
        Datastore.get(ws, "nope")


def test_upload_files_keeps_paths_below_relative_root(ws, tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "1.txt").write_text("one")
    (src / "2.txt").write_text("two")
    store = ws.get_default_datastore()
    target = store.upload_files(
        [src / "a" / "1.txt", src / "2.txt"], relative_root=src, target_path="up"
    )
    assert Path(target.url, "a", "1.txt").read_text() == "one"
    assert Path(target.url, "2.txt").read_text() == "two"
    (src / "2.txt").write_text("changed")
    store.upload_files([src / "2.txt"], relative_root=src, target_path="up")
    assert Path(target.url, "2.txt").read_text() == "two"  # kept without overwrite
    store.upload_files(
        [src / "2.txt"], relative_root=src, target_path="up", overwrite=True
    )
    assert Path(target.url, "2.txt").read_text() == "changed"
    with pytest.raises(ds.WorkspaceError, match="not below relative_root"):
        store.upload_files([src / "2.txt"], relative_root=src / "a")
    with pytest.raises(ds.WorkspaceError, match="is not a file"):
        store.upload_files([src / "missing.txt"])


# -- datasets --------------------------------------------------------------------
def test_dataset_paths_as_datastore_pairs(ws, tmp_path):
    from azureml.core import Dataset

    store = ws.get_default_datastore()
    (tmp_path / "d").mkdir()
    flow_data.iris(tmp_path / "d")
    store.upload(tmp_path / "d" / "iris", "iris")
    one = Dataset.Tabular.from_delimited_files(
        path=(store, "iris/*.csv"), validate=False
    )
    two = Dataset.Tabular.from_delimited_files(
        path=[(store, "iris/iris_1.csv"), (store, "iris/iris_2.csv")]
    )
    assert len(one.to_pandas_dataframe()) == len(two.to_pandas_dataframe()) == 150
    assert len(one.take(7).to_pandas_dataframe()) == 7
    files = Dataset.File.from_files(path=[(store, "iris/"), (store, "iris/iris_1.csv")])
    assert [os.path.basename(p) for p in files.to_path()] == [
        "iris_1.csv",
        "iris_1.csv",
        "iris_2.csv",
    ]
    assert files.as_mount() is files and files.as_download() is files
    assert [os.path.basename(p) for p in files.take(1).to_path()] == ["iris_1.csv"]
    got = files.download(tmp_path / "down")
    assert sorted(os.path.relpath(p, tmp_path / "down") for p in got) == [
        "iris_1.csv",
        "iris_1.csv",
        "iris_2.csv",
    ]
    with pytest.raises(ds.ConfigError, match="does not provide partition_format"):
        Dataset.Tabular.from_delimited_files(
            path=(store, "iris/"), partition_format="/{x}.csv"
        )


def test_partition_format_plans_one_mini_batch_per_key_combination(tmp_path):
    counts = flow_data.audio(tmp_path)
    files = ds.Dataset.File.from_files(
        str(tmp_path / "audio" / "**" / "*.wav"),
        partition_format="/{user}/{season}/{genres}.wav",
    )
    assert files.partition_keys == ["user", "season", "genres"]
    specs, _ = files.plan(None, partition_keys=["user", "genres"])
    got = {tuple(v for _, v in s.key_values): s.items for s in specs}
    assert got == counts and [s.index for s in specs] == list(range(len(specs)))
    assert all(s.kind == "files" for s in specs)
    config = ds.ParallelRunConfig(
        entry_script=str(tmp_path / "s.py"), partition_keys=["user", "mood"]
    )
    (tmp_path / "s.py").write_text("def run(b):\n    return b\n")
    with pytest.raises(ds.ConfigError, match=r"keys of their partition_format.*'mood'"):
        ds.ParallelRunStep(
            name="by-user",
            parallel_run_config=config,
            inputs=[files],
            output=tmp_path / "out",
        )
    step = ds.ParallelRunStep(
        name="by-user",
        parallel_run_config=ds.ParallelRunConfig(
            entry_script=str(tmp_path / "s.py"), partition_keys=["user", "genres"]
        ),
        inputs=[files],
        output=tmp_path / "out",
    )
    # what --rerun-failed rebuilds the step from keeps the partition_format
    again = ds.ParallelRunStep.from_settings(step.settings())
    (plan, fingerprint), (plan_again, fingerprint_again) = step.plan(), again.plan()
    assert list(plan_again) == list(plan) and fingerprint_again == fingerprint
    assert len(plan) == len(counts)
    # as in v1, the format matches the end of each file's path
    tail = ds.Dataset.File.from_files(
        str(tmp_path / "audio"), partition_format="/{season}/*.wav"
    )
    specs, _ = tail.plan(None, partition_keys=["season"])
    assert [dict(s.key_values)["season"] for s in specs] == [
        "spring",
        "summer",
        "winter",
    ]
    odd = ds.Dataset.File.from_files(
        str(tmp_path / "audio"), partition_format="/{user}/{genres}.mp3"
    )
    with pytest.raises(ds.DatasetError, match="does not match partition_format"):
        odd.plan(None, partition_keys=["user"])
    with pytest.raises(ds.DatasetError, match="typed keys"):
        ds.Dataset.File.from_files(str(tmp_path), partition_format="/{d:yyyy/MM}/x")


def test_partition_by_writes_one_folder_per_combination(ws, tmp_path):
    sales = flow_data.sales(tmp_path)
    table = ds.Dataset.Tabular.from_delimited_files(str(tmp_path / "sales" / "*.csv"))
    store = ws.get_default_datastore()
    parts = table.partition_by(["store", "brand"], target=(store, "by"), name="by_sb")
    assert parts.partition_keys == ["store", "brand"] and parts.name == "by_sb"
    folder = Path(store.path("by").url)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.parquet")) == [
        f"{s}/{b}/part-0.parquet"
        for s in (1001, 1002, 1003)
        for b in ("dominicks", "tropicana")
    ]
    again = ws.get_dataset("by_sb")
    assert again.partition_keys == ["store", "brand"]
    got = again.to_pandas_dataframe().sort_values(["store", "brand", "week"])
    want = sales.sort_values(["store", "brand", "week"])
    assert got["quantity"].tolist() == want["quantity"].tolist()
    with pytest.raises(ds.DatasetError, match=r"\['shop'\] not among the columns"):
        table.partition_by(["shop"], target=tmp_path / "x")


# -- compute, environments, pipelines ----------------------------------------------
def test_compute_and_environment_are_accepted_and_ignored(ws):
    from azureml.core import Environment
    from azureml.core.compute import AmlCompute, ComputeTarget
    from azureml.core.conda_dependencies import CondaDependencies
    from azureml.core.runconfig import DEFAULT_CPU_IMAGE, RunConfiguration

    env = Environment(name="batch")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["pillow"])
    env.docker.base_image = DEFAULT_CPU_IMAGE
    env.python.conda_dependencies.add_pip_package("scikit-learn")
    assert env.python.conda_dependencies.pip_packages == ["pillow", "scikit-learn"]
    config = AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=4
    )
    target = ComputeTarget.create(ws, "cpu-cluster", config)
    assert target.wait_for_completion(show_output=True) is None
    assert "cpu-cluster" in ws.compute_targets
    assert type(ws.compute_targets["gpu"]) is AmlCompute
    run_config = RunConfiguration()
    run_config.environment = env
    assert run_config.environment.docker.base_image == DEFAULT_CPU_IMAGE


PASSING = """
import argparse, os
p = argparse.ArgumentParser()
p.add_argument("--out"); p.add_argument("--n", type=int)
a = p.parse_args()
with open(os.path.join(a.out, "n.txt"), "w") as f:
    f.write(str(a.n * 2))
"""


def test_python_script_step_and_pipeline_parameters(ws, tmp_path):
    from azureml.core import Experiment, ScriptRunConfig
    from azureml.data import OutputFileDatasetConfig
    from azureml.pipeline.core import Pipeline, PipelineParameter
    from azureml.pipeline.steps import PythonScriptStep

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "double.py").write_text(PASSING)
    (tmp_path / "src" / "fail.py").write_text(
        "raise SystemExit('bad input: no rows')\n"
    )
    out = OutputFileDatasetConfig(name="doubled")
    step = PythonScriptStep(
        script_name="double.py",
        source_directory=tmp_path / "src",
        arguments=["--out", out, "--n", PipelineParameter(name="n", default_value=2)],
        outputs=[out],
        compute_target="cpu",
        runconfig=None,
    )
    pipeline = Pipeline(workspace=ws, steps=[step])
    run = Experiment(ws, "script").submit(pipeline, pipeline_parameters={"n": 21})
    assert run.wait_for_completion(show_output=False) == "Completed"
    data = run.find_step_run("double")[0].get_output_data("doubled")
    local = data.download(tmp_path / "got", show_progress=False)
    assert Path(local, "n.txt").read_text() == "42"
    with pytest.raises(ds.ConfigError, match="pipeline_parameters"):
        Experiment(ws, "script").submit(pipeline, pipeline_parameters={"m": 1})

    failing = Experiment(ws, "script").submit(
        ScriptRunConfig(source_directory=str(tmp_path / "src"), script="fail.py")
    )
    assert failing.wait_for_completion(raise_on_error=False) == "Failed"
    reason = failing.find_step_run("fail")[0].get_details()["reason"]
    assert "fail.py exited with code 1: bad input: no rows" in reason


def test_v1_parallel_run_config_is_checked_when_made(hook, tmp_path):
    from azureml.pipeline.core import PipelineParameter
    from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep

    (tmp_path / "score.py").write_text("def run(b):\n    return b\n")
    with pytest.raises(ds.ConfigError, match="mini_batch_size"):
        ParallelRunConfig(
            entry_script="score.py",
            source_directory=str(tmp_path),
            mini_batch_size=PipelineParameter("size", "lots"),
        )
    with pytest.raises(ds.ConfigError, match="not_a_field"):
        ParallelRunConfig(
            entry_script="score.py", source_directory=str(tmp_path), not_a_field=1
        )
    config = ParallelRunConfig(
        entry_script="score.py",
        source_directory=str(tmp_path),
        environment=object(),
        compute_target="cpu",
        node_count=PipelineParameter("nodes", 2),
    )
    assert config.node_count.default_value == 2 and config.entry_script == "score.py"
    with pytest.raises(ds.ConfigError, match="name"):
        ParallelRunStep(name="Bad_Name", parallel_run_config=config, inputs=[])


def test_uploads_and_datasets_on_a_blob_datastore(ws, tmp_path, azure_container):
    """upload/upload_files and (datastore, path) datasets through the storage
    layer, on Azurite."""
    import dask.config
    from azureml.core import Dataset, Datastore

    azurite = azure_container.azurite
    with dask.config.set({"daskscore.secrets-dir": str(tmp_path / "secrets")}):
        store = Datastore.register_azure_blob_container(
            ws,
            "blob",
            container_name=azure_container.name,
            account_name=azurite.account_name,
            account_key=azurite.account_key,
            endpoint=azurite.endpoint,
        )
        src = tmp_path / "src"
        (src / "a").mkdir(parents=True)
        for name in ("a/1.csv", "2.csv"):
            pd.DataFrame({"x": [1, 2], "y": [name, name]}).to_csv(
                src / name, index=False
            )
        store.upload_files(
            [src / "a" / "1.csv", src / "2.csv"],
            relative_root=src,
            target_path="tables",
        )
        store.upload(src / "a", "more")
        table = Dataset.Tabular.from_delimited_files(
            path=[(store, "tables/**/*.csv"), (store, "more/")]
        )
        frame = table.to_pandas_dataframe()
        assert sorted(frame["y"]) == [
            "2.csv",
            "2.csv",
            "a/1.csv",
            "a/1.csv",
            "a/1.csv",
            "a/1.csv",
        ]
        parts = table.partition_by(["y"], target=(store, "by_y"))
        files = Dataset.File.from_files(path=(store, "by_y/"))
        assert [p.split("by_y/", 1)[1] for p in files.to_path()] == [
            "2.csv/part-0.parquet",
            "a/1.csv/part-0.parquet",
        ]
        assert len(parts.to_pandas_dataframe()) == 6
    assert azurite.account_key not in "".join(
        p.read_text(errors="replace")
        for p in (tmp_path / ".daskscore").rglob("*")
        if p.is_file() and p.suffix in (".json", ".pack", ".started")
    )


def test_other_azureml_distributions_still_import(tmp_path):
    """An installed azureml.* package that daskscore does not stand in for (here a
    stand-in for azureml-dataprep) imports as it is, beside daskscore's names."""
    package = tmp_path / "site" / "azureml" / "dataprep"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("WHO = 'the real azureml.dataprep'\n")
    probe = (
        "import daskscore.azureml as v1\n"
        "print(v1.install())\n"
        "import azureml.dataprep, azureml.core\n"
        "print(azureml.dataprep.WHO)\n"
        "print(azureml.core.__daskscore__)\n"
        "try:\n"
        "    import azureml.train\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path / "site")])
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "True",
        "the real azureml.dataprep",
        "daskscore.azureml.core",
    ]
    assert lines[3].startswith("azureml.train: daskscore does not provide")
