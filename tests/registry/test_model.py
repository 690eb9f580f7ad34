"""Registered models (daskscore/model.py): versions, lookups, get_model_path.

The registry tests are plain files; the job tests run real worker processes
(``shared_client``) whose ``init()`` calls ``Model.get_model_path``.
"""

from __future__ import annotations

import json
import os

import dask.config
import pytest
from helpers import make_files, read_lines, write_script

import daskscore as ds
from daskscore.registry import model as model_module

pytest_plugins = ["helpers"]


@pytest.fixture
def ws(tmp_path):
    return ds.Workspace(tmp_path / "ws")


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "models"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "w.bin").write_bytes(b"weights-1")
    return folder


def test_register_stores_a_versioned_copy(ws, tmp_path, model_dir):
    model = ds.Model.register(workspace=ws, model_path=str(model_dir) + "/",
                              model_name="mnist", tags={"data": "mnist"},
                              description="Mnist trained tensorflow model")
    assert (model.name, model.version, model.id) == ("mnist", 1, "mnist:1")
    assert model.path == str(tmp_path / "ws" / "models" / "mnist" / "1" / "models")
    assert (tmp_path / "ws" / "models" / "mnist" / "1" / "models" / "variables" /
            "w.bin").read_bytes() == b"weights-1"
    record = json.loads((tmp_path / "ws" / "models" / "mnist" / "1.json").read_text())
    assert record["tags"] == {"data": "mnist"}
    assert record["description"] == "Mnist trained tensorflow model"
    # the registered copy does not change with the original
    (model_dir / "variables" / "w.bin").write_bytes(b"weights-2")
    assert (tmp_path / "ws" / "models" / "mnist" / "1" / "models" / "variables" /
            "w.bin").read_bytes() == b"weights-1"


def test_versions_latest_and_specific(ws, model_dir):
    assert ds.Model.register(ws, model_dir, "mnist").version == 1
    # the same content again: the same version
    assert ds.Model.register(ws, model_dir, "mnist").version == 1
    (model_dir / "variables" / "w.bin").write_bytes(b"weights-2")
    assert ds.Model.register(ws, model_dir, "mnist").version == 2
    # new metadata on the same files is a new version too
    assert ds.Model.register(ws, model_dir, "mnist", tags={"t": "1"}).version == 3
    assert ds.Model(ws, "mnist").version == 3
    assert ds.Model(ws, "mnist", version=1).version == 1
    assert [m.version for m in ds.Model.list(ws, "mnist")] == [1, 2, 3]
    assert [m.id for m in ds.Model.list(ws, latest=True)] == ["mnist:3"]
    assert set(ws.models) == {"mnist"}
    with open(os.path.join(ds.Model(ws, "mnist", 1).path, "variables", "w.bin"),
              "rb") as f:
        assert f.read() == b"weights-1"


def test_a_single_file_model(ws, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"pickle")
    model = ds.Model.register(ws, path, "clf")
    assert model.path.endswith(os.path.join("clf", "1", "model.pkl"))
    assert ds.Model.get_model_path("clf", workspace=ws) == model.path
    copy = model.download(tmp_path / "dl")
    assert open(copy, "rb").read() == b"pickle"
    with pytest.raises(ds.WorkspaceError, match="exist_ok"):
        model.download(tmp_path / "dl")


def test_unknown_model_name_and_version(ws, model_dir):
    ds.Model.register(ws, model_dir, "mnist")
    with pytest.raises(ds.NotRegisteredError) as excinfo:
        ds.Model(ws, "minst")
    assert excinfo.value.kind == "model" and "mnist" in str(excinfo.value)
    with pytest.raises(ds.NotRegisteredError,
                       match=r"version 2 .*versions registered: 1"):
        ds.Model(ws, "mnist", version=2)
    with pytest.raises(ds.WorkspaceError, match="does not exist"):
        ds.Model.register(ws, model_dir / "missing", "other")


def test_get_model_path_outside_a_job_uses_the_config(ws, tmp_path, model_dir,
                                                      monkeypatch):
    model = ds.Model.register(ws, model_dir, "mnist")
    ws.write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(model_module.MODELS_ENV, raising=False)
    assert ds.Model.get_model_path("mnist") == model.path
    with pytest.raises(ds.NotRegisteredError):
        ds.Model.get_model_path("nope")


def test_get_model_path_in_a_job_reads_the_steps_models(tmp_path, monkeypatch):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    monkeypatch.setenv(model_module.MODELS_ENV, json.dumps([
        {"name": "mnist", "version": 1, "path": str(tmp_path / "v1")},
        {"name": "mnist", "version": 2, "path": str(tmp_path / "v2")},
    ]))
    assert ds.Model.get_model_path("mnist") == str(tmp_path / "v2")
    assert ds.Model.get_model_path("mnist", version=1) == str(tmp_path / "v1")
    with pytest.raises(ds.NotRegisteredError, match="ParallelRunStep\\(models="):
        ds.Model.get_model_path("other")


def test_a_remote_model_is_downloaded_once(tmp_path, monkeypatch, model_dir):
    ws = ds.Workspace("memory://models-test/ws")
    model = ds.Model.register(ws, model_dir, "mnist")
    assert model.path == "memory://models-test/ws/models/mnist/1/models"
    monkeypatch.setattr(model_module, "_LOCAL_COPIES", {})
    calls = []
    real = model_module._copy_to_local
    monkeypatch.setattr(model_module, "_copy_to_local",
                        lambda *a: calls.append(a) or real(*a))
    monkeypatch.setenv(model_module.MODELS_ENV, json.dumps([
        {"name": "mnist", "version": 1, "path": model.path}]))
    with dask.config.set({"daskscore.model-cache": str(tmp_path / "cache")}):
        local = ds.Model.get_model_path("mnist")
        assert local.startswith(str(tmp_path / "cache"))
        w_bin = os.path.join(local, "variables", "w.bin")
        assert open(w_bin, "rb").read() == b"weights-1"
        assert ds.Model.get_model_path("mnist") == local
        # another process on this machine finds the finished download on disk
        monkeypatch.setattr(model_module, "_LOCAL_COPIES", {})
        assert ds.Model.get_model_path("mnist") == local
    assert len(calls) == 1


# -- in a job -----------------------------------------------------------------------
def model_step(script, tmp_path, models, **config) -> ds.ParallelRunStep:
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="1", **config)
    return ds.ParallelRunStep(
        name="model-step", parallel_run_config=cfg,
        inputs=[ds.Dataset.File.from_files(str(tmp_path / "in"))],
        output=str(tmp_path / "out"), models=models)


SCRIPT = """
    import os
    import daskscore as ds

    def init():
        global weights, where
        where = ds.Model.get_model_path("mnist")
        with open(os.path.join(where, "variables", "w.bin")) as f:
            weights = f.read()

    def run(mini_batch):
        return [f"{os.path.basename(p)} {weights} {os.getpid()} {where}"
                for p in mini_batch]
"""


def test_models_reach_init_in_every_worker(ws, tmp_path, model_dir, shared_client):
    ds.Model.register(ws, model_dir, "mnist")
    (model_dir / "variables" / "w.bin").write_bytes(b"weights-2")
    latest = ds.Model.register(ws, model_dir, "mnist")
    script = write_script(tmp_path / "src", SCRIPT)
    make_files(tmp_path / "in", 8)
    step = model_step(script, tmp_path, [ds.Model(ws, "mnist", version=1)])
    result = step.run(client=shared_client)
    assert result.status == "Completed", result.reason
    lines = [line.split() for line in read_lines(result.output_file)]
    assert {weights for _, weights, _, _ in lines} == {"weights-1"}, \
        "the step's model version, not the latest"
    assert {where for *_, where in lines} == {ds.Model(ws, "mnist", 1).path}
    assert latest.version == 2


def test_remote_models_are_downloaded_by_the_workers(tmp_path, model_dir,
                                                     azure_container, shared_client):
    azurite = azure_container.azurite
    ws = ds.Workspace(f"{azure_container.url}/ws", azurite.storage_options)
    model = ds.Model.register(ws, model_dir, "mnist")
    assert model.path.startswith("abfs://")
    script = write_script(tmp_path / "src", SCRIPT)
    make_files(tmp_path / "in", 6)
    cache = tmp_path / "cache"
    step = model_step(script, tmp_path, [model],
                      environment_variables={model_module.CACHE_ENV: str(cache)})
    result = step.run(client=shared_client)
    assert result.status == "Completed", result.reason
    lines = [line.split() for line in read_lines(result.output_file)]
    assert {weights for _, weights, _, _ in lines} == {"weights-1"}
    wheres = {where for *_, where in lines}
    assert len(wheres) == 1 and wheres.pop().startswith(str(cache))
    # one finished download for the machine, no partial ones left behind
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1
    assert [p for p in cache.iterdir() if p.name.startswith(".")] == []
