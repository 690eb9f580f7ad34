"""A v1 script's run and models with the output and the workspace on blob storage.

A real Azurite emulator and the session's multi-process cluster: the workers
reach the run folder and the workspace only through the job (their storage
options travel in the runner's setup, never in its environment), as on a cluster
without a shared disk.
"""

from __future__ import annotations

import pickle

import pytest
from azurite import issued_secrets
from helpers import write_script

import daskscore as ds
from daskscore.output.runlog import read_events, run_summary

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(300)

TRAIN = """
    import os
    import pickle

    from azureml.core import Model, Run


    def init():
        os.makedirs("outputs", exist_ok=True)


    def run(mini_batch):
        run = Run.get_context()
        ws = run.experiment.workspace
        for path in mini_batch:
            name = os.path.splitext(os.path.basename(path))[0]
            with open(os.path.join("outputs", name + ".pkl"), "wb") as f:
                pickle.dump({"trained_on": name}, f)
            run.log("trained", name)
            run.upload_file("outputs/" + name + ".pkl",
                            os.path.join("outputs", name + ".pkl"))
            run.register_model(model_name="model-" + name,
                               model_path="outputs/" + name + ".pkl",
                               tags={"source": name})
        return [m.name for m in Model.list(ws, tags=["source"])]
"""


def test_run_history_and_models_on_blob_storage(tmp_path, azure_container,
                                                shared_client):
    options = azure_container.storage_options
    ws = ds.Workspace(f"{azure_container.url}/ws", options)
    ds.Model.register(ws, _pickle(tmp_path / "seed.pkl"), "seed")
    files = tmp_path / "files"
    files.mkdir()
    for name in ("a", "b", "c"):
        (files / f"{name}.txt").write_text(name)
    script = write_script(tmp_path / "src", TRAIN)
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="1",
                               error_threshold=0)
    output = f"{azure_container.url}/out"
    step = ds.ParallelRunStep(name="blob-train", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(files))],
                              output=output, storage_options=options,
                              models=[ds.Model(ws, "seed")])
    result = step.run(client=shared_client)

    assert result.status == "Completed", result.reason
    models = {m.name: m for m in ds.Model.list(ws, latest=True)}
    assert set(models) == {"seed", "model-a", "model-b", "model-c"}
    path = models["model-b"].download(str(tmp_path / "dl"))
    with open(path, "rb") as f:
        assert pickle.load(f) == {"trained_on": "b"}
    runs = run_summary(read_events(f"{output}/logs/run", options))
    (step_run,) = runs.values()
    assert sorted(step_run["metrics"]["trained"]) == ["a", "b", "c"]
    assert sorted(step_run["files"]) == ["outputs/a.pkl", "outputs/b.pkl",
                                         "outputs/c.pkl"]
    # no credential of the emulator in what the run left on the storage
    fs = azure_container.fs()
    blobs = b"".join(fs.cat_file(p) for p in fs.find(f"{azure_container.name}/out")
                     if p.endswith((".jsonl", ".log", ".txt", ".json")))
    assert blobs
    for secret in issued_secrets():
        assert secret.encode() not in blobs


def _pickle(path):
    with open(path, "wb") as f:
        pickle.dump("seed", f)
    return path
