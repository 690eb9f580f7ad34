"""Workspaces, datastores and the dataset registry (daskscore/registry/).

Plain files in ``tmp_path``; the Azure datastore tests use the session's Azurite.
The secret store is redirected to ``tmp_path`` for every test.
"""

from __future__ import annotations

import json
import os
import stat

import dask.config
import pandas as pd
import pytest

import daskscore as ds
from daskscore.registry.datastore import DEFAULT_DATASTORE

SECRET_KEY = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seQ=="
SAS = "sv=2024-01-01&ss=b&srt=co&sp=rl&sig=AbCdEf0123456789sig%3D"


@pytest.fixture(autouse=True)
def secrets_dir(tmp_path):
    folder = tmp_path / "secrets"
    with dask.config.set({"daskscore.secrets-dir": str(folder)}):
        yield folder


@pytest.fixture
def ws(tmp_path):
    return ds.Workspace(tmp_path / "ws")


def all_text(folder) -> str:
    """Every file under ``folder``, concatenated (to look for leaked secrets)."""
    out = []
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
    return "\n".join(out)


# -- the workspace --------------------------------------------------------------------
def test_workspace_is_a_folder_of_readable_files(tmp_path):
    ws = ds.Workspace(tmp_path / "ws")
    meta = json.loads((tmp_path / "ws" / "workspace.json").read_text())
    assert meta["id"] == ws.id and meta["default_datastore"] == DEFAULT_DATASTORE
    assert ds.Workspace(tmp_path / "ws").id == ws.id, "reopening keeps the identity"
    assert ws.url == str(tmp_path / "ws")
    assert ws.name == "ws"


def test_default_workspace_is_dot_daskscore_in_the_current_folder(tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ds.Workspace().url == str(tmp_path / ".daskscore")


def test_missing_workspace_without_create_says_how_to_create_it(tmp_path):
    with pytest.raises(ds.WorkspaceError, match="create it with ds.Workspace"):
        ds.Workspace(tmp_path / "nope", create=False)


def test_from_config_searches_the_folder_and_its_parents(tmp_path, monkeypatch):
    ws = ds.Workspace(tmp_path / "project" / ".daskscore")
    config = ws.write_config(tmp_path / "project")
    assert json.loads(open(config).read()) == {"workspace": ".daskscore"}
    deep = tmp_path / "project" / "src" / "deeper"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert ds.Workspace.from_config().id == ws.id
    assert ds.Workspace.from_config(config).id == ws.id


def test_from_config_skips_a_foreign_config_json(tmp_path):
    ws = ds.Workspace(tmp_path / "w")
    (tmp_path / "config.json").write_text(json.dumps({"workspace": "w"}))
    inner = tmp_path / "inner"
    inner.mkdir()
    # an Azure ML config.json: not ours, keep looking upwards
    (inner / "config.json").write_text(json.dumps({"subscription_id": "x"}))
    assert ds.Workspace.from_config(inner).id == ws.id


def test_from_config_without_a_config_says_what_to_do(tmp_path):
    with pytest.raises(ds.WorkspaceError, match="write_config"):
        ds.Workspace.from_config(tmp_path)


def test_from_config_naming_a_missing_workspace(tmp_path):
    (tmp_path / "daskscore.json").write_text(json.dumps({"workspace": "gone"}))
    with pytest.raises(ds.WorkspaceError, match="daskscore.json"):
        ds.Workspace.from_config(tmp_path)


def test_workspace_on_an_fsspec_url():
    ws = ds.Workspace("memory://team/ws-url-test")
    ws2 = ds.Workspace("memory://team/ws-url-test")
    assert ws.id == ws2.id and not ws.local
    assert ws.get_default_datastore().url == "memory://team/ws-url-test/data"


# -- datastores -----------------------------------------------------------------------
def test_register_local_datastore_and_get_it(ws, tmp_path):
    images = tmp_path / "images"
    store = ds.Datastore.register_local(ws, "images", images)
    assert images.is_dir()
    assert ds.Datastore.get(ws, "images").url == str(images)
    assert set(ws.datastores) == {"images", DEFAULT_DATASTORE}
    record = json.loads((tmp_path / "ws" / "datastores" / "images.json").read_text())
    assert record["type"] == "local" and record["path"] == str(images)
    assert os.fspath(store.path("mnist/")) == os.path.join(str(images), "mnist/")
    assert repr(store.path("a")) == (
        "DataPath(datastore='images', path_on_datastore='a')")


def test_default_datastore_is_inside_the_workspace(ws, tmp_path):
    default = ws.get_default_datastore()
    assert default.name == DEFAULT_DATASTORE
    assert default.url == str(tmp_path / "ws" / "data")
    other = ds.Datastore.register_local(ws, "other", tmp_path / "o")
    other.set_as_default()
    assert ds.Workspace(tmp_path / "ws").get_default_datastore().name == "other"


def test_unknown_datastore_lists_the_registered_ones(ws, tmp_path):
    ds.Datastore.register_local(ws, "images", tmp_path / "images")
    with pytest.raises(ds.NotRegisteredError) as excinfo:
        ds.Datastore.get(ws, "imgaes")
    err = excinfo.value
    assert isinstance(err, LookupError)
    assert (err.kind, err.name) == ("datastore", "imgaes")
    assert "images" in str(err) and "register_local" in str(err)


def test_reregistering_a_datastore_needs_overwrite(ws, tmp_path):
    ds.Datastore.register_local(ws, "d", tmp_path / "a")
    # the same definition again is fine
    same = ds.Datastore.register_local(ws, "d", tmp_path / "a")
    assert same.url == str(tmp_path / "a")
    with pytest.raises(ds.WorkspaceError, match="overwrite=True"):
        ds.Datastore.register_local(ws, "d", tmp_path / "b")
    ds.Datastore.register_local(ws, "d", tmp_path / "b", overwrite=True)
    assert ds.Datastore.get(ws, "d").url == str(tmp_path / "b")


@pytest.mark.parametrize("bad", ["", "has space", "-dash", "x" * 256, None])
def test_bad_datastore_names(ws, tmp_path, bad):
    with pytest.raises(ds.ConfigError):
        ds.Datastore.register_local(ws, bad, tmp_path / "x")


def test_upload_copies_a_folder(ws, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    target = ws.get_default_datastore().upload(src, "up")
    assert sorted(ds.Dataset.File.from_files(target).to_path()) == [
        os.path.join(target.url, "a.txt"), os.path.join(target.url, "sub", "b.txt")]


# -- credentials -----------------------------------------------------------------------
@pytest.mark.parametrize("kind, value", [
    ("account_key", SECRET_KEY),
    ("sas_token", SAS),
    ("connection_string", "DefaultEndpointsProtocol=https;AccountName=acct;"
                          f"AccountKey={SECRET_KEY};EndpointSuffix=core.windows.net"),
])
def test_credentials_are_never_written_into_the_workspace(ws, tmp_path, secrets_dir,
                                                           kind, value):
    store = ds.Datastore.register_azure_blob_container(
        ws, "blob", container_name="sampledata", account_name="acct", **{kind: value})
    text = all_text(tmp_path / "ws")
    assert "blob" in text
    for secret in (value, SECRET_KEY, "AbCdEf0123456789sig"):
        assert secret not in text
    record = json.loads((tmp_path / "ws" / "datastores" / "blob.json").read_text())
    assert record["credential"] == {"type": kind, "store": "secret_store"}
    # the secret store is outside the workspace and private to the user
    (secrets_file,) = secrets_dir.iterdir()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    # and the datastore still works: its options carry the credential
    assert store.storage_options[kind] == value
    assert ds.Datastore.get(ws, "blob").path("x").storage_options[kind] == value


def test_credential_by_environment_variable(ws, tmp_path, monkeypatch):
    ds.Datastore.register_azure_blob_container(
        ws, "blob", "c", "acct", account_key_env="MY_TEST_KEY")
    record = json.loads((tmp_path / "ws" / "datastores" / "blob.json").read_text())
    assert record["credential"] == {"type": "account_key", "env": "MY_TEST_KEY"}
    store = ds.Datastore.get(ws, "blob")
    monkeypatch.delenv("MY_TEST_KEY", raising=False)
    with pytest.raises(ds.WorkspaceError, match="MY_TEST_KEY, which is not set"):
        store.storage_options  # noqa: B018
    monkeypatch.setenv("MY_TEST_KEY", SECRET_KEY)
    assert store.storage_options == {"account_name": "acct", "account_key": SECRET_KEY}


def test_anonymous_and_default_credentials(ws):
    public = ds.Datastore.register_azure_blob_container(
        ws, "mnist_datastore", container_name="sampledata", account_name="pipelinedata",
        anonymous=True, overwrite=True)
    assert public.storage_options == {"account_name": "pipelinedata", "anon": True}
    assert public.url == "https://pipelinedata.blob.core.windows.net/sampledata"
    assert str(public.path("mnist/")) == (
        "https://pipelinedata.blob.core.windows.net/sampledata/mnist/")
    default = ds.Datastore.register_azure_blob_container(ws, "d", "c", "acct")
    assert default.credential_type == "default"
    assert default.storage_options == {"account_name": "acct"}


def test_a_secret_missing_from_this_machines_store_is_explained(ws, secrets_dir):
    ds.Datastore.register_azure_blob_container(ws, "blob", "c", "acct",
                                               account_key=SECRET_KEY)
    for f in secrets_dir.iterdir():
        f.unlink()
    with pytest.raises(ds.WorkspaceError, match="secret store"):
        ds.Datastore.get(ws, "blob").storage_options  # noqa: B018


def test_only_one_credential(ws):
    with pytest.raises(ds.ConfigError, match="at most one"):
        ds.Datastore.register_azure_blob_container(
            ws, "b", "c", "acct", account_key=SECRET_KEY, anonymous=True)


def test_unregister_removes_the_secret(ws, secrets_dir):
    store = ds.Datastore.register_azure_blob_container(ws, "blob", "c", "acct",
                                                       sas_token=SAS)
    store.unregister()
    assert SAS not in all_text(secrets_dir)
    with pytest.raises(ds.NotRegisteredError):
        ds.Datastore.get(ws, "blob")


def test_azure_datastore_on_azurite(ws, tmp_path, azure_container):
    azurite = azure_container.azurite
    store = ds.Datastore.register_azure_blob_container(
        ws, "blob", container_name=azure_container.name,
        account_name=azurite.account_name, account_key=azurite.account_key,
        endpoint=azurite.endpoint)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.txt").write_text(str(i))
    store.upload(src, "files")
    dataset = ds.Dataset.File.from_files(store.path("files/"),
                                         storage_options=store.storage_options)
    registered = dataset.register(ws, "remote_files")
    again = ds.Dataset.get_by_name(ws, "remote_files")
    assert [p.rsplit("/", 1)[-1] for p in again.to_path()] == [
        "f0.txt", "f1.txt", "f2.txt"]
    assert registered.version == again.version == 1
    record = json.loads(
        (tmp_path / "ws" / "datasets" / "remote_files" / "1.json").read_text())
    assert record["sources"] == [{"datastore": "blob", "path": "files/"}]
    assert azurite.account_key not in all_text(tmp_path / "ws")


# -- datasets --------------------------------------------------------------------------
@pytest.fixture
def images(ws, tmp_path):
    folder = tmp_path / "store" / "mnist"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"img{i}.png").write_bytes(b"x")
    return ds.Datastore.register_local(ws, "mnist_datastore", tmp_path / "store")


def test_register_and_get_datasets_by_name_and_version(ws, images):
    first = ds.Dataset.File.from_files(path=images.path("mnist/")).register(
        ws, "mnist_sample_data", create_new_version=True)
    assert (first.name, first.version) == ("mnist_sample_data", 1)
    # the same definition again: no new version
    again = ds.Dataset.File.from_files(images.path("mnist/")).register(
        ws, "mnist_sample_data", create_new_version=True)
    assert again.version == 1
    second = ds.Dataset.File.from_files(images.path("mnist/img[01].png")).register(
        ws, "mnist_sample_data", create_new_version=True)
    assert second.version == 2
    assert ws.dataset_versions("mnist_sample_data") == [1, 2]
    latest = ds.Dataset.get_by_name(ws, "mnist_sample_data")
    assert latest.version == 2 and len(latest.to_path()) == 2
    first_again = ds.Dataset.get_by_name(ws, "mnist_sample_data", version=1)
    assert len(first_again.to_path()) == 4
    assert ds.Dataset.get_by_name(ws, "mnist_sample_data", "latest").version == 2
    assert set(ws.datasets) == {"mnist_sample_data"}
    named = latest.as_named_input("mnist")
    assert (named.input_name, named.name, named.version) == (
        "mnist", "mnist_sample_data", 2)


def test_a_new_definition_needs_create_new_version(ws, images):
    ds.Dataset.File.from_files(images.path("mnist/")).register(ws, "d")
    with pytest.raises(ds.WorkspaceError, match="create_new_version=True"):
        ds.Dataset.File.from_files(images.path("mnist/img0.png")).register(ws, "d")


def test_unknown_dataset_name_and_version(ws, images):
    ds.Dataset.File.from_files(images.path("mnist/")).register(ws, "digits")
    with pytest.raises(ds.NotRegisteredError, match="digits") as excinfo:
        ds.Dataset.get_by_name(ws, "digts")
    assert excinfo.value.kind == "dataset"
    with pytest.raises(ds.NotRegisteredError,
                       match=r"version 3 .*versions registered: 1"):
        ds.Dataset.get_by_name(ws, "digits", version=3)
    with pytest.raises(ds.ConfigError):
        ds.Dataset.get_by_name(ws, "digits", version="newest")


def test_registered_dataset_follows_its_datastore(ws, images, tmp_path):
    ds.Dataset.File.from_files(images.path("mnist/")).register(ws, "digits")
    moved = tmp_path / "moved"
    (moved / "mnist").mkdir(parents=True)
    (moved / "mnist" / "only.png").write_bytes(b"x")
    ds.Datastore.register_local(ws, "mnist_datastore", moved, overwrite=True)
    assert ds.Dataset.get_by_name(ws, "digits").to_path() == [
        str(moved / "mnist" / "only.png")]


def test_tabular_dataset_round_trip(ws, tmp_path):
    table = tmp_path / "t.csv"
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_csv(table, sep=";", index=False)
    ds.Dataset.Tabular.from_delimited_files(str(table), separator=";").register(ws, "t")
    back = ds.Dataset.get_by_name(ws, "t")
    assert isinstance(back, ds.TabularDataset)
    assert back.to_pandas_dataframe()["b"].tolist() == ["x", "y"]
    # a path outside every datastore is kept as an absolute path
    record = json.loads((tmp_path / "ws" / "datasets" / "t" / "1.json").read_text())
    assert record["sources"] == [{"url": str(table)}]
    assert record["read_options"] == {"header": True, "separator": ";"}


def test_datasets_that_cannot_be_registered(ws):
    import dask.dataframe as dd

    frame = dd.from_pandas(pd.DataFrame({"a": [1]}), npartitions=1)
    with pytest.raises(ds.WorkspaceError, match="Parquet"):
        ds.Dataset.Tabular.from_dask_dataframe(frame).register(ws, "frame")
    leaky = ds.Dataset.File.from_files("abfs://c/x/*.png",
                                       storage_options={"account_name": "a",
                                                        "account_key": SECRET_KEY})
    with pytest.raises(ds.WorkspaceError, match="datastore"):
        leaky.register(ws, "leaky")


def test_registered_multi_line_csv_keeps_support_multi_line(tmp_path):
    from daskscore.registry.datasets import get_dataset, register_dataset

    data = tmp_path / "data.csv"
    data.write_text('id,text\n1,"a\nb"\n2,"c"\n')
    ws = ds.Workspace(tmp_path / "ws")
    dataset = ds.Dataset.Tabular.from_delimited_files(
        str(data), support_multi_line=True)
    register_dataset(ws, dataset, "quoted")
    back = get_dataset(ws, "quoted")
    assert back.read_options.get("support_multi_line") is True
