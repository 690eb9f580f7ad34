"""A v2 parallel job reading an MLTable from Azure Blob Storage (Azurite) through
an ``azureml://datastores/<name>/paths/...`` path or an ``abfs://``/``az://`` URL,
its collected file written back there, the credential in no output."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from examples_data import iris
from test_v2_cli import cli_env

import daskscore as ds

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("form", ["datastore", "abfs", "az"])
def test_mltable_on_blob_storage(tmp_path, azure_container, form):
    folder = iris(tmp_path)
    azure_container.upload({
        "tables/iris/MLTable": (folder / "data" / "MLTable").read_bytes(),
        "tables/iris/iris.csv": (folder / "data" / "iris.csv").read_bytes()})
    ws = ds.Workspace(str(tmp_path / ".daskscore"))
    azurite = azure_container.azurite
    ds.Datastore.register_azure_blob_container(
        ws, "blobstore", container_name=azure_container.name,
        account_name=azurite.account_name, endpoint=azurite.endpoint,
        connection_string_env="V2_TEST_BLOB")
    job = yaml.safe_load((folder / "job.yml").read_text())
    env = cli_env()
    if form == "datastore":
        job["inputs"]["iris_table"]["path"] = (
            "azureml://datastores/blobstore/paths/tables/iris")
        job["outputs"]["scores"]["path"] = (
            "azureml://datastores/blobstore/paths/results/${{name}}/scores.csv")
        env["V2_TEST_BLOB"] = azurite.connection_string
    else:  # a URL; the credential from the environment
        url = f"{form}://{azure_container.name}"
        job["inputs"]["iris_table"]["path"] = f"{url}/tables/iris"
        job["outputs"]["scores"]["path"] = f"{url}/results/${{{{name}}}}/scores.csv"
        env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    (folder / "job.yml").write_text(yaml.safe_dump(job, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "daskscore.cli", "run",
                           "iris/job.yml",
                           "--no-progress"], cwd=tmp_path, env=env,
                          capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = azure_container.fs().cat_file(
        f"{azure_container.name}/results/iris-batch-scoring/scores.csv").decode()
    table = pd.read_csv(folder / "data" / "iris.csv")
    with open(folder / "model" / "iris.pkl", "rb") as f:
        model = pickle.load(f)
    expected = model.predict(table[["sepal_length", "sepal_width", "petal_length",
                                    "petal_width"]])
    assert data.splitlines() == [f"{i} {p}" for i, p in zip(table["id"], expected)]
    for text in (proc.stdout, proc.stderr):
        assert azurite.account_key not in text
