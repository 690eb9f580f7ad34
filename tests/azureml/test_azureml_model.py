"""``azureml.core.Model`` (v1 signatures) over a real workspace folder."""

from __future__ import annotations

import os

import pytest

import daskscore as ds
from daskscore.azureml.model import Model
from daskscore.errors import NotRegisteredError, WorkspaceError


@pytest.fixture
def ws(tmp_path):
    workspace = ds.Workspace(tmp_path / "ws")
    for store, stage in (("1001", "prod"), ("1002", "dev"), ("1001", "dev")):
        path = tmp_path / f"m-{store}-{stage}.pkl"
        path.write_bytes(f"{store}{stage}".encode())
        Model.register(workspace, path, f"model_{store}", tags={"Store": store,
                                                                "stage": stage},
                       model_framework="sklearn")
    folder = tmp_path / "saved"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"pb")
    (folder / "variables" / "v.index").write_bytes(b"v")
    Model.register(workspace, folder, "tf_model")
    return workspace


def test_list_by_name_tags_and_latest(ws):
    assert [m.id for m in Model.list(ws, name="model_1001")] == [
        "model_1001:1", "model_1001:2"]
    assert [m.id for m in Model.list(ws, tags=[["Store", "1001"]])] == [
        "model_1001:1", "model_1001:2"]
    assert [m.id for m in Model.list(ws, tags=[["stage", "dev"]], latest=True)] == [
        "model_1001:2", "model_1002:1"]
    assert [m.id for m in Model.list(ws, tags=["stage"], latest=True)] == [
        "model_1001:2", "model_1002:1"]
    assert Model.list(ws, tags=[["Store", "9999"]]) == []
    assert all(isinstance(m, Model) for m in Model.list(ws))
    assert Model.list(ws, name="model_1001")[0].properties == {
        "model_framework": "sklearn"}
    with pytest.raises(WorkspaceError, match=r"\[key, value\] pairs"):
        Model.list(ws, tags=[["a", "b", "c"]])


def test_constructor_by_name_version_id_and_tags(ws):
    assert Model(ws, name="model_1001").version == 2
    assert Model(ws, name="model_1001", version=1).tags == {"Store": "1001",
                                                          "stage": "prod"}
    assert Model(ws, id="model_1001:1").version == 1
    by_tag = Model(ws, name="model_1001", tags=[["stage", "prod"]])
    assert (by_tag.name, by_tag.version) == ("model_1001", 1)
    with pytest.raises(NotRegisteredError):
        Model(ws, name="model_1001", tags=[["stage", "test"]])
    with pytest.raises(NotRegisteredError):
        Model(ws, name="nothing")


def test_download_a_file_and_a_folder(ws, tmp_path):
    target = tmp_path / "dl"
    path = Model(ws, name="model_1002").download(target_dir=str(target))
    assert open(path, "rb").read() == b"1002dev"
    with pytest.raises(WorkspaceError, match="exist_ok=True"):
        Model(ws, name="model_1002").download(target_dir=str(target))
    assert Model(ws, name="model_1002").download(str(target), exist_ok=True) == path
    folder = Model(ws, name="tf_model").download(target_dir=str(target))
    assert sorted(os.listdir(folder)) == ["saved_model.pb", "variables"]


def test_get_model_path_is_the_file_or_the_folder(ws):
    assert os.path.isfile(Model.get_model_path("model_1002", _workspace=ws))
    folder = Model.get_model_path("tf_model", _workspace=ws)
    assert os.path.isdir(folder) and os.path.isfile(
        os.path.join(folder, "saved_model.pb"))
