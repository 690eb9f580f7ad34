"""Azure ML v1 notebook flows with one added line, run as scripts on local data.

Each flow in ``flows/`` is a v1 sample notebook written out as a plain script
whose only daskscore line is ``import daskscore.azureml;
daskscore.azureml.install()``. It runs as a subprocess in its own folder (an
Azure ML ``config.json`` there, the daskscore workspace made beside it), on one
shared multi-process Dask cluster that it finds through
``DASK_SCHEDULER_ADDRESS``, and prints one ``RESULT {json}`` line this test
checks against the data it made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import distributed
import flow_data
import pandas as pd
import pytest

import daskscore as ds
from daskscore.engine.cluster import start_embedded_cluster

FLOWS = Path(__file__).parent / "flows"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared():
    """Two single-threaded worker processes for every flow of the module."""
    spec = start_embedded_cluster(2, None)
    client = distributed.Client(spec, set_as_default=False)
    client.wait_for_workers(2, timeout=120)
    yield client
    client.close()
    spec.close()


@pytest.fixture(scope="module")
def cluster(shared):
    """The shared cluster's scheduler address (what the flows connect to)."""
    return shared.scheduler.address


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The samples' data, made once: images, tables, audio-like files, models."""
    folder = tmp_path_factory.mktemp("flow-data")
    return {
        "folder": folder,
        "digits": flow_data.digits(folder),
        "iris": flow_data.iris(folder),
        "audio": flow_data.audio(folder),
        "sales": flow_data.sales(folder),
        "many_models": flow_data.many_models(folder),
        "scoring": flow_data.scoring_table(folder),
    }


def run_flow(name: str, cwd: Path, data: dict, scheduler: str) -> dict:
    """Run ``flows/<name>_notebook.py`` in ``cwd``; its RESULT line."""
    if not (cwd / "config.json").exists():
        cwd.mkdir(parents=True, exist_ok=True)
        flow_data.azure_config(cwd)
    env = dict(os.environ)
    env.update(
        FLOW_DATA=str(data["folder"]),
        FLOW_SCRIPTS=str(FLOWS / "scripts"),
        DASK_SCHEDULER_ADDRESS=scheduler,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    done = subprocess.run(
        [sys.executable, str(FLOWS / f"{name}_notebook.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, done.stdout[-3000:]
    result = json.loads(lines[0][len("RESULT ") :])
    result["stdout"], result["stderr"] = done.stdout, done.stderr
    return result


def test_image_inference_on_a_file_dataset(tmp_path, data, cluster):
    got = run_flow("mnist", tmp_path, data, cluster)
    # every image scored once, by the pickled classifier, in the collected file
    assert got["predictions"] == data["digits"]
    # the reference layout of a step output on its datastore, downloaded as such
    assert got["path_on_datastore"] == f"azureml/{got['step_run_id']}/inferences"
    assert got["result_file"] == os.path.join(
        "mnist_results",
        "azureml",
        got["step_run_id"],
        "inferences",
        "mnist_outputs.txt",
    )
    # Workspace.from_config() read the Azure config.json, the workspace is beside it
    assert "ws-batch\nrg-batch\nwesteurope\n" in got["stdout"]
    assert (tmp_path / ".daskscore" / "workspace.json").is_file()
    assert (tmp_path / ".daskscore" / "datasets" / "mnist_sample_data").is_dir()
    # compute and environment objects said they are ignored, once each
    for what in (
        "Environment",
        "CondaDependencies",
        "ComputeTarget",
        "ParallelRunConfig(environment=...)",
        "ParallelRunConfig(compute_target=...)",
    ):
        line = (
            f"daskscore.azureml: {what} is accepted and ignored: daskscore runs "
            "on the current Dask cluster"
        )
        assert got["stderr"].count(line) == 1, (what, got["stderr"])
    assert f"running on the Dask cluster at {cluster}" in got["stderr"]


def test_iris_on_a_tabular_dataset(tmp_path, data, cluster):
    got = run_flow("iris", tmp_path, data, cluster)
    # every row once, in input order (two CSV files), with the model's variety
    assert got["rows"] == 150
    assert got["varieties"] == data["iris"]["variety"].tolist()
    assert (
        tmp_path / ".daskscore" / "data" / "iris_data" / "iris" / "iris_2.csv"
    ).is_file()


def test_partition_per_folder(tmp_path, data, cluster):
    got = run_flow("partition_folder", tmp_path, data, cluster)
    assert got["keys"] == ["user", "season", "genres"]
    # one mini-batch per (user, genres), its files from every season
    counts = {
        tuple(line.split(",")[:2]): int(line.split(",")[2]) for line in got["lines"]
    }
    assert counts == data["audio"]
    assert len(got["lines"]) == len(data["audio"])
    # OutputFileDatasetConfig(destination=(datastore, "partition/{run-id}"))
    assert got["path_on_datastore"] == f"partition/{got['step_run_id']}"


def test_partition_per_column(tmp_path, data, cluster):
    got = run_flow("partition_column", tmp_path, data, cluster)
    sales = data["sales"]
    assert got["keys"] == ["store", "brand"]
    # partition_by() wrote one folder per (store, brand)
    expected_folders = sorted(
        {f"{s}/{b}" for s, b in zip(sales["store"], sales["brand"])}
    )
    assert got["folders"] == expected_folders
    expected = sales.groupby(["store", "brand"])["quantity"].agg(["size", "sum"])
    summary = {
        (r["store"], r["brand"]): (r["rows"], r["quantity"]) for r in got["summary"]
    }
    assert summary == {
        k: (int(v["size"]), int(v["sum"])) for k, v in expected.iterrows()
    }


def test_tutorial_batch_scoring_with_pipeline_parameters(tmp_path, data, cluster):
    got = run_flow("tutorial", tmp_path, data, cluster)
    frame = data["scoring"]
    expected = dict(zip(frame["id"], frame["expected"].astype(int)))
    first, second = got["first"], got["second"]
    # defaults: both files, 1KB mini-batches, label column "label"
    assert first["rows"] == expected
    assert first["mini_batches"] > 2
    assert any("label column: label" in log for log in first["logs"])
    # overridden at submission: one file, 64KB mini-batches, "predicted"
    assert second["rows"] == {k: v for k, v in expected.items() if k < "row-030"}
    assert second["mini_batches"] == 1
    assert any("label column: predicted" in log for log in second["logs"])
    assert first["step_run_id"] != second["step_run_id"]
    assert first["status"] == second["status"] == "Completed"


def test_many_models_training_then_forecasting(tmp_path, data, cluster):
    trained = run_flow("mm_training", tmp_path, data, cluster)
    models = data["many_models"]
    assert trained["trained"] == sorted(
        f"{name},{len(f)}" for name, f in models.items()
    )
    assert trained["models"] == sorted(f"{name}.pkl" for name in models)
    # Run.get_context().log_row in every runner process, read back per step as
    # one table (column -> values)
    table = trained["metrics"]["trained"]
    assert trained["run_metrics"]["trained"] == table
    pairs = zip(table["model"], table["rows"], strict=True)
    assert sorted(f"{m},{r}" for m, r in pairs) == trained["trained"]

    got = run_flow("mm_forecasting", tmp_path, data, cluster)
    # the pipeline found the forecasting step the copy step reads from
    assert got["steps"] == ["many-models-forecasting", "copy_predictions"]
    assert got["path_on_datastore"] == f"oj_predictions/{got['step_run_id']}"
    frame = pd.DataFrame(got["predictions"])
    # horizon=3 given at submission (default 4), for every model, in input order
    assert list(frame["model"]) == [m for m in sorted(models) for _ in range(3)]
    assert list(frame["week"]) == [21, 22, 23] * len(models)
    for name, history in models.items():
        forecast = frame[frame["model"] == name]["forecast"].to_numpy()
        slope = (history["quantity"].iloc[-1] - history["quantity"].iloc[0]) / 19
        assert abs((forecast[1] - forecast[0]) - slope) < 0.5


@pytest.mark.parametrize(
    "script, kind",
    [
        ("digit_identification.py", "mnist"),
        ("iris_score.py", "iris"),
        ("batch_scoring.py", "scoring"),
    ],
)
def test_the_entry_scripts_run_unchanged_under_the_daskscore_api(
    tmp_path, data, shared, script, kind
):
    """The flows' entry scripts, as they are, in a plain ds.ParallelRunStep."""
    folder = data["folder"]
    if kind == "mnist":
        inputs = ds.Dataset.File.from_files(str(folder / "mnist"))
        arguments = ["--model", str(folder / "digits.pkl")]
        output_file = "out.txt"
    elif kind == "iris":
        inputs = ds.Dataset.Tabular.from_delimited_files(str(folder / "iris" / "*.csv"))
        arguments = ["--model", str(folder / "iris.pkl")]
        output_file = "out.parquet"
    else:
        inputs = ds.Dataset.Tabular.from_delimited_files(
            str(folder / "score" / "*.csv")
        )
        arguments = ["--model_name", str(folder / "scorer.pkl"), "--label", "label"]
        output_file = "out.parquet"
    config = ds.ParallelRunConfig(
        entry_script=script,
        source_directory=str(FLOWS / "scripts"),
        mini_batch_size="4" if kind == "mnist" else "1KB",
        append_row_file_name=output_file,
        error_threshold=0,
    )
    step = ds.ParallelRunStep(
        name=f"unchanged-{kind}",
        parallel_run_config=config,
        inputs=[inputs],
        output=tmp_path / "out",
        arguments=arguments,
    )
    result = step.run(client=shared)
    assert result.status == "Completed", result.reason
    if kind == "mnist":
        lines = Path(result.output_file).read_text().splitlines()
        got = {n: int(v) for n, v in (line.split(": ") for line in lines)}
        assert got == data["digits"]
    elif kind == "iris":
        got = pd.read_parquet(result.output_file)
        assert got["variety"].tolist() == data["iris"]["variety"].tolist()
        assert list(got.columns[:4]) == list(data["iris"].columns[:4])
    else:
        got = pd.read_parquet(result.output_file)
        frame = data["scoring"]
        # predictions joined on each mini-batch's index line up with their ids
        assert got["id"].tolist() == frame["id"].tolist()
        assert got["label"].tolist() == frame["expected"].tolist()


@pytest.mark.parametrize("kind", ["folder", "column"])
def test_the_partitioned_entry_scripts_run_unchanged_under_the_daskscore_api(
    tmp_path, data, shared, kind
):
    """The partition-per-folder and partition-per-column entry scripts, as they
    are, in a plain ds.ParallelRunStep with ``partition_keys``."""
    folder = data["folder"]
    if kind == "folder":
        inputs = ds.Dataset.File.from_files(
            str(folder / "audio" / "**" / "*.wav"),
            partition_format="/{user}/{season}/{genres}.wav",
        )
        script, keys, output_file = "audio_partition.py", ["user", "genres"], "out.txt"
    else:
        inputs = ds.Dataset.Tabular.from_delimited_files(
            str(folder / "sales" / "*.csv")
        )
        script, keys = "sales_partition.py", ["store", "brand"]
        output_file = "out.parquet"
    config = ds.ParallelRunConfig(
        entry_script=script,
        source_directory=str(FLOWS / "scripts"),
        partition_keys=keys,
        append_row_file_name=output_file,
        error_threshold=-1,
    )
    step = ds.ParallelRunStep(
        name=f"unchanged-{kind}", parallel_run_config=config, inputs=[inputs],
        output=tmp_path / "out",
    )
    result = step.run(client=shared)
    assert result.status == "Completed", result.reason
    if kind == "folder":
        lines = Path(result.output_file).read_text().splitlines()
        counts = {tuple(line.split(",")[:2]): int(line.split(",")[2]) for line in lines}
        assert counts == data["audio"] and len(lines) == len(data["audio"])
    else:
        got = pd.read_parquet(result.output_file)
        expected = data["sales"].groupby(["store", "brand"])["quantity"].agg(
            ["size", "sum"]
        )
        assert {
            (r.store, r.brand): (r.rows, r.quantity) for r in got.itertuples()
        } == {k: (int(v["size"]), int(v["sum"])) for k, v in expected.iterrows()}


def test_image_inference_with_a_tf1_graph_and_a_registered_model(
    tmp_path, data, cluster
):
    """The MNIST flow with its TensorFlow 1 entry script (tf.compat.v1): the model
    registered in the workspace, handed to the step, found by the script with
    Model.get_model_path."""
    got = run_flow("mnist_tf1", tmp_path, data, cluster)
    assert got["model"] == ["mnist-tf1", 1, {"framework": "tf1"}]
    # the same classifier as the pickled one, as a TF1 graph: the same labels
    assert got["predictions"] == data["digits"]
