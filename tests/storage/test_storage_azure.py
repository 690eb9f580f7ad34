"""daskscore.storage against a real Azurite process: credentials, listing, failures."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from azurite import free_port, issued_secrets, random_account
from netproxy import NetProxy

import daskscore as ds
from daskscore import storage
from daskscore.errors import DatasetError
from daskscore.runner.reader import Reader

WRONG_KEY = "A" * 86 + "=="
# connections to an endpoint that drops them, before the error (see
# daskscore.storage._urls._RETRY: connect_retries / read_retries)
CONNECTION_TRIES = 4


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("AZURE_STORAGE_", "AZURE_CLIENT_")):
            monkeypatch.delenv(name)


@pytest.fixture
def images(azure_container):
    """Five small blobs under images/ (two in a sub-folder) and one beside them."""
    azure_container.upload(
        {
            "images/0.png": b"zero",
            "images/1.png": b"one",
            "images/2.png": b"two",
            "images/more/3.png": b"three",
            "images/more/4.png": b"four",
            "notes.txt": b"not an image",
        }
    )
    return azure_container


def _container_sas(azurite, container: str) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        account_name=azurite.account_name,
        container_name=container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, list=True, write=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


def _read_all(url: str, storage_options: dict) -> list[bytes]:
    out = []
    for path in storage.list_files(url, storage_options):
        fs, inner = storage.url_to_fs(path, storage.resolve(url, storage_options)[1])
        out.append(fs.cat_file(inner))
    return out


EXPECTED = [b"zero", b"one", b"two", b"three", b"four"]


# -- URL forms and credentials -----------------------------------------------------


def test_abfs_and_az_urls_with_a_connection_string(images):
    for scheme in ("abfs", "az"):
        url = f"{scheme}://{images.name}/images"
        assert storage.list_files(url, images.storage_options) == [
            f"abfs://{images.name}/images/{n}"
            for n in ["0.png", "1.png", "2.png", "more/3.png", "more/4.png"]
        ]
        assert _read_all(url, images.storage_options) == EXPECTED


def test_path_style_url_with_account_key(images, azurite):
    url = f"{azurite.endpoint}/{images.name}/images/"
    assert _read_all(url, {"account_key": azurite.account_key}) == EXPECTED
    options = {"account_name": azurite.account_name, "account_key": azurite.account_key}
    assert _read_all(url, options) == EXPECTED


def test_sas_token_in_options_in_the_url_and_in_a_connection_string(images, azurite):
    sas = _container_sas(azurite, images.name)
    url = f"{azurite.endpoint}/{images.name}/images/"
    assert _read_all(url, {"sas_token": sas}) == EXPECTED
    assert _read_all(url, {"sas_token": "?" + sas}) == EXPECTED
    assert _read_all(f"{url}?{sas}", {}) == EXPECTED
    conn = f"BlobEndpoint={azurite.endpoint};SharedAccessSignature={sas}"
    assert _read_all(f"abfs://{images.name}/images", {"connection_string": conn}) == (
        EXPECTED
    )


def test_anonymous_read_of_a_public_container(images, azurite):
    client = azurite.service_client().get_container_client(images.name)
    url = f"{azurite.endpoint}/{images.name}/images/*.png"
    # the documented form: the account and anon=True (no key)
    anon = {"account_name": azurite.account_name, "anon": True}
    with pytest.raises(DatasetError, match="access denied|not found|no files"):
        storage.list_files(url, anon)  # still private
    client.set_container_access_policy(signed_identifiers={}, public_access="container")
    assert _read_all(url, anon) == EXPECTED[:3]


def test_credentials_from_the_environment(images, azurite, monkeypatch):
    url = f"abfs://{images.name}/images/*.png"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    assert _read_all(url, {}) == EXPECTED[:3]
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")

    path_style = f"{azurite.endpoint}/{images.name}/images/*.png"
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azurite.account_name)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", azurite.account_key)
    assert _read_all(path_style, {}) == EXPECTED[:3]
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_KEY")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", _container_sas(azurite, images.name))
    assert _read_all(path_style, {}) == EXPECTED[:3]


def test_explicit_key_wins_over_an_environment_that_points_elsewhere(
    images, azurite, monkeypatch
):
    dead = azurite.connection_string.replace(str(azurite.port), str(free_port()))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", dead)
    url = f"{azurite.endpoint}/{images.name}/images/*.png"
    assert _read_all(url, {"account_key": azurite.account_key}) == EXPECTED[:3]


def test_writes_and_reads_through_resolved_options_in_plain_fsspec(azure_container):
    import fsspec

    url, options = storage.resolve(
        f"{azure_container.azurite.endpoint}/{azure_container.name}/out/part.csv",
        {"account_key": azure_container.azurite.account_key},
    )
    with fsspec.open(url, "wb", **options) as f:
        f.write(b"a,b\n1,2\n")
    with fsspec.open(url, "rb", **options) as f:
        assert f.read() == b"a,b\n1,2\n"


# -- listing -----------------------------------------------------------------------


def _through(proxy: NetProxy, azurite) -> dict[str, str]:
    """Storage options that reach ``azurite`` through ``proxy``."""
    conn = azurite.connection_string.replace(
        f"127.0.0.1:{azurite.port}/", f"127.0.0.1:{proxy.port}/"
    )
    return {"connection_string": conn}


def test_listing_thousands_of_blobs_by_prefix(azure_container):
    names = [f"many/{i % 7}/{i:05d}.bin" for i in range(2100)]
    azure_container.upload({n: b"x" for n in names} | {"many.txt": b"beside"})
    url = f"{azure_container.url}/many"

    # one flat listing by prefix (a page holds 5,000 blobs): not one request per
    # folder, nor one per blob
    with NetProxy(("127.0.0.1", azure_container.azurite.port)) as proxy:
        listed = storage.list_files(url, _through(proxy, azure_container.azurite))
    assert listed == sorted(f"{azure_container.url}/{n}" for n in names)
    lists = [e for e in proxy.exchanges(method="GET") if "comp=list" in e.target]
    assert len(lists) == 1, [e.target for e in proxy.exchanges()]
    assert len(proxy.exchanges()) <= 3, [e.target for e in proxy.exchanges()]

    globbed = storage.list_files(f"{url}/3/*.bin", azure_container.storage_options)
    assert globbed == [u for u in listed if "/many/3/" in u]
    prefixed = storage.list_files(f"{url}/*/0001*", azure_container.storage_options)
    assert prefixed == [u for u in listed if u.rsplit("/", 1)[1].startswith("0001")]
    deep = storage.list_files(f"{url}/**/*.bin", azure_container.storage_options)
    assert deep == listed

    detailed = storage.list_files(url, azure_container.storage_options, detail=True)
    assert [d[0] for d in detailed] == listed
    assert {d[1] for d in detailed} == {1}
    assert all(d[2] is not None for d in detailed)


def test_single_blob_and_empty_matches(images):
    so = images.storage_options
    assert storage.list_files(f"{images.url}/notes.txt", so) == [
        f"{images.url}/notes.txt"
    ]
    with pytest.raises(DatasetError, match=r"no files match input .*/\*\.jpg'; check"):
        storage.list_files(f"{images.url}/images/*.jpg", so)
    with pytest.raises(DatasetError, match="/nothing-here' does not exist; give"):
        storage.list_files(f"{images.url}/nothing-here", so)


# -- failures: one clear line, no secret --------------------------------------------


def _assert_clear(message: str, url_part: str) -> None:
    assert "\n" not in message
    assert url_part in message
    for secret in issued_secrets():  # the keys of this session's emulators
        assert secret not in message
    assert "Traceback" not in message and "RequestId" not in message


def test_missing_container(azurite):
    url = "abfs://no-such-container/images/*.png"
    with pytest.raises(DatasetError) as info:
        storage.list_files(url, azurite.storage_options)
    message = str(info.value)
    _assert_clear(message, url)
    assert "container 'no-such-container' does not exist" in message
    assert "check the container name" in message


def test_wrong_key(images, azurite):
    conn = azurite.connection_string.replace(azurite.account_key, WRONG_KEY)
    url = f"{images.url}/images"
    with pytest.raises(DatasetError) as info:
        storage.list_files(url, {"connection_string": conn})
    message = str(info.value)
    _assert_clear(message, url)
    assert WRONG_KEY not in message
    assert "access denied (AuthorizationFailure)" in message
    assert "check the account key, SAS token" in message


def test_unreachable_endpoint_fails_fast(azurite):
    account, key = random_account()
    port = free_port()
    url = f"http://127.0.0.1:{port}/{account}/data/images/*.png"
    with pytest.raises(DatasetError) as info:
        storage.list_files(url, {"account_key": key})
    message = str(info.value)
    _assert_clear(message, url)
    assert key not in message
    assert f"cannot reach the storage endpoint 127.0.0.1:{port}" in message
    assert "is it running on that port?" in message

    # Fast means few tries: an endpoint that takes connections and drops them
    # (the proxy, in front of nothing) is tried CONNECTION_TRIES times in all,
    # not the SDK's default of a dozen tries a minute apart.
    with NetProxy(("127.0.0.1", free_port())) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/{account}/data/images/*.png"
        with pytest.raises(DatasetError):
            storage.list_files(url, {"account_key": key})
    assert len(proxy.connections) == CONNECTION_TRIES


def test_blob_deleted_after_listing(images):
    so = images.storage_options
    listed = storage.list_files(f"{images.url}/images/*.png", so)
    images.fs().rm(f"{images.name}/images/1.png")
    url, options = storage.resolve(listed[1], so)
    fs, path = storage.url_to_fs(url, options)
    with pytest.raises(FileNotFoundError) as info:
        with fs.open(path, "rb") as f:
            f.read()
    message = storage.describe_storage_error(info.value, listed[1], so)
    _assert_clear(message, listed[1])
    assert "not found: no blob at this path" in message


def test_no_secret_in_logs_messages_or_reports(images, azurite, caplog, capsys):
    """Debug logging of the Azure SDK on, every credential form, every failure."""
    sas = _container_sas(azurite, images.name)
    sig = sas.split("sig=")[1].split("&")[0]
    wrong = azurite.connection_string.replace(azurite.account_key, WRONG_KEY)
    forms = [
        images.storage_options,
        {"account_key": azurite.account_key},
        {"sas_token": sas},
        {"connection_string": wrong},
    ]
    texts = []
    with caplog.at_level(logging.DEBUG):
        for options in forms:
            url = f"{azurite.endpoint}/{images.name}/images/"
            try:
                texts.append(repr(storage.list_files(url, options)))
            except DatasetError as exc:
                texts.append(str(exc))
            texts.append(repr(storage.safe_storage_options(options)))
            resolved = storage.resolve(url, options)[1]
            texts.append(repr(storage.safe_storage_options(resolved)))
            texts.append(storage.redact(f"{url}?{sas} {options}", options))
    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    everything = "\n".join(texts)
    assert azurite.account_name in everything  # the grep looks at real output
    key = azurite.account_key
    for secret in (key, quote(key, safe=""), WRONG_KEY, sig):
        assert secret not in everything


# -- downloading -------------------------------------------------------------------


def test_download_keeps_paths_apart_and_reports_each_missing_blob(images, tmp_path):
    so = images.storage_options
    images.upload({"other/0.png": b"same base name, other folder"})
    urls = storage.list_files(f"{images.url}/images", so) + [
        f"{images.url}/other/0.png",
        f"{images.url}/images/gone.png",
    ]
    local, errors = storage.download(urls, str(tmp_path), so)
    assert local[:-1] == [
        str(tmp_path / images.name / n)
        for n in ["images/0.png", "images/1.png", "images/2.png",
                  "images/more/3.png", "images/more/4.png", "other/0.png"]
    ]
    assert [open(p, "rb").read() for p in local[:5]] == EXPECTED
    assert open(local[5], "rb").read() == b"same base name, other folder"
    assert local[-1] is None
    assert list(errors) == [urls[-1]]
    _assert_clear(errors[urls[-1]], urls[-1])
    assert "the blob does not exist" in errors[urls[-1]]
    assert not (tmp_path / images.name / "images" / "gone.png").exists()


def test_download_fetches_a_url_given_twice_once(images, tmp_path):
    url = f"{images.url}/images/0.png"
    local, errors = storage.download([url, url], str(tmp_path), images.storage_options)
    assert local == [str(tmp_path / images.name / "images" / "0.png")] * 2
    assert errors == {} and open(local[0], "rb").read() == b"zero"


def test_download_from_an_unreachable_endpoint_reports_every_file(tmp_path):
    account, key = random_account()
    url = f"http://127.0.0.1:{free_port()}/{account}/data/x.png"
    local, errors = storage.download([url], str(tmp_path), {"account_key": key})
    assert local == [None]
    assert "cannot reach the storage endpoint" in errors[url]


def test_an_existing_blob_or_folder_with_glob_characters_is_taken_as_named(
        azure_container, tmp_path):
    """B6 on blob storage: "weird[1].csv" and "br[ack]ets/" exist and are listed
    as named; a name that does not exist is still a glob."""
    # (adlfs' own writes take "[...]" in a path for an IPv6 host: the SDK uploads)
    client = azure_container.azurite.service_client().get_container_client(
        azure_container.name)
    for name, data in {
        "globnames/weird[1].csv": b"a\n1\n", "globnames/weird1.csv": b"a\n2\n",
        "br[ack]ets/x.csv": b"a\n3\n", "br[ack]ets/sub/y.csv": b"a\n4\n",
    }.items():
        client.upload_blob(name, data)
    so, url = azure_container.storage_options, azure_container.url
    assert storage.list_files(f"{url}/globnames/weird[1].csv", so) == [
        f"{url}/globnames/weird[1].csv"
    ]
    assert storage.list_files(f"{url}/br[ack]ets", so) == [
        f"{url}/br[ack]ets/sub/y.csv", f"{url}/br[ack]ets/x.csv"
    ]
    assert storage.list_files(f"{url}/globnames/weird[12].csv", so) == [
        f"{url}/globnames/weird1.csv"
    ]
    # and what is listed can be planned and read
    dataset = ds.Dataset.Tabular.from_delimited_files(f"{url}/br[ack]ets",
                                                      storage_options=so)
    specs, _ = dataset.plan("1MB")
    reader = Reader([{"storage_options": dataset.storage_options,
                      "read_options": dataset.read_options}], str(tmp_path))
    frames = [reader.read(spec) for spec in specs]
    assert [(f["a"].tolist(), p) for f, _, p in frames] == [([4], None), ([3], None)]
