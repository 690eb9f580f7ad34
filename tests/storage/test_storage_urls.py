"""daskscore.storage without a server: URL forms, credentials, secrets, messages."""

from __future__ import annotations

import os

import pytest
from azurite import ACCOUNT_KEY

from daskscore import storage
from daskscore.errors import DatasetError

KEY = "c2VjcmV0LWtleS0xMjM0NTY3ODkwLXNlY3JldC1rZXk+/Q=="
SIG = "Zm9vYmFy%2Bc2lnbmF0dXJl%3D"
SAS = f"sv=2023-11-03&ss=b&srt=co&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig={SIG}"


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch):
    """Whatever the developer's shell has, these tests see no AZURE_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith(("AZURE_STORAGE_", "AZURE_CLIENT_")):
            monkeypatch.delenv(name)


# -- URL forms -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "abfs://data/images/*.png",
        "az://data/images/*.png",
        "abfss://data@acct.dfs.core.windows.net/images/*.png",
        "https://acct.blob.core.windows.net/data/images/*.png",
        "https://acct.dfs.core.windows.net/data/images/*.png",
    ],
)
def test_every_azure_url_form_resolves_to_abfs_with_the_account(url):
    options = {"account_key": KEY}
    if url.startswith(("abfs://", "az://")):
        options["account_name"] = "acct"
    resolved, out = storage.resolve(url, options)
    assert resolved == "abfs://data/images/*.png"
    assert out == {
        "connection_string": "BlobEndpoint=https://acct.blob.core.windows.net;"
        f"AccountName=acct;AccountKey={KEY};"
    }
    assert storage.is_azure(url, options)


def test_path_style_url_keeps_its_endpoint_for_azurite():
    url = "http://127.0.0.1:10000/devstoreaccount1/data/table/"
    resolved, out = storage.resolve(url, {"account_key": ACCOUNT_KEY})
    assert resolved == "abfs://data/table/"
    assert out["connection_string"] == (
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
        f"AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
    )


def test_sovereign_cloud_host_keeps_its_suffix():
    url = "https://acct.blob.core.chinacloudapi.cn/data/x.csv"
    _, out = storage.resolve(url, {"sas_token": "?" + SAS})
    assert out == {
        "connection_string": "BlobEndpoint=https://acct.blob.core.chinacloudapi.cn;"
        f"SharedAccessSignature={SAS};"
    }


def test_sas_token_in_the_url_query_is_used_and_dropped_from_the_path():
    url = f"https://acct.blob.core.windows.net/data/x.csv?{SAS}"
    resolved, out = storage.resolve(url)
    assert resolved == "abfs://data/x.csv"
    assert f"SharedAccessSignature={SAS};" in out["connection_string"]


def test_anonymous_access_is_an_endpoint_without_credential():
    _, out = storage.resolve("https://acct.blob.core.windows.net/pub/x", {"anon": True})
    assert out == {"connection_string": "BlobEndpoint=https://acct.blob.core.windows.net;"}


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("https://acct.blob.core.windows.net/data/x", {}),
        ("abfs://data/x", {"account_name": "acct"}),
        ("abfs://data/x", {"account_name": "acct", "anon": False}),
    ],
)
def test_an_account_without_key_means_azure_identity(url, options):
    _, out = storage.resolve(url, options)
    assert out == {"account_name": "acct", "anon": False}
    fs, path = storage.url_to_fs(url, options)
    from azure.identity.aio import DefaultAzureCredential

    assert isinstance(fs.credential, DefaultAzureCredential)
    assert path == "data/x"


def test_identity_refuses_a_plain_http_endpoint():
    with pytest.raises(ValueError, match="need an https endpoint"):
        storage.resolve("http://127.0.0.1:1/devstoreaccount1/c/x", {"anon": False})


def test_identity_keeps_a_custom_https_endpoint_when_resolved_again():
    """The engine resolves once on the client and the workers resolve the result
    again: ``account_host`` used to be dropped then, sending the identity's
    requests to <account>.blob.core.windows.net instead of the endpoint given."""
    url = "https://127.0.0.1:10000/devstoreaccount1/data/x"
    once = storage.resolve(url, {"anon": False})
    assert once == ("abfs://data/x", {
        "account_name": "devstoreaccount1",
        "account_host": "127.0.0.1:10000/devstoreaccount1",
        "anon": False,
    })
    assert storage.resolve(*once) == once
    fs, _ = storage.url_to_fs(*once)
    assert fs.service_client.url == "https://127.0.0.1:10000/devstoreaccount1/"
    # adlfs' own account_host, given with a key: the key goes to that endpoint
    _, out = storage.resolve("abfs://data/x", {
        "account_name": "acct", "account_key": KEY,
        "account_host": "acct.privatelink.blob.core.windows.net"})
    assert out == {"connection_string": "BlobEndpoint=https://acct.privatelink.blob"
                   f".core.windows.net;AccountName=acct;AccountKey={KEY};"}


def test_other_adlfs_options_pass_through():
    _, out = storage.resolve(
        "abfs://data/x", {"connection_string": "UseDevelopmentStorage=true",
                          "blocksize": 1 << 20, "max_concurrency": 4}
    )
    assert out == {"connection_string": "UseDevelopmentStorage=true",
                   "blocksize": 1 << 20, "max_concurrency": 4}


def test_resolving_twice_changes_nothing():
    for url, options in [
        ("https://acct.blob.core.windows.net/data/x", {"account_key": KEY}),
        ("https://acct.blob.core.windows.net/data/x", {}),
        ("http://127.0.0.1:10000/devstoreaccount1/data/x", {"sas_token": SAS}),
    ]:
        once = storage.resolve(url, options)
        assert storage.resolve(*once) == once


@pytest.mark.parametrize(
    "url",
    ["/tmp/data/*.csv", "relative/x.parquet", "memory://bucket/x",
     "http://localhost:8000/files/x.csv", "https://example.com/x.csv",
     "file:///tmp/x"],
)
def test_other_urls_are_left_to_fsspec(url):
    assert storage.resolve(url, {"a": 1}) == (url, {"a": 1})
    assert not storage.is_azure(url)


def test_local_paths_give_the_local_filesystem(tmp_path):
    fs, path = storage.url_to_fs(str(tmp_path / "x.csv"))
    assert storage.is_local(fs)
    assert path == str(tmp_path / "x.csv")


def test_no_account_anywhere_says_what_to_give():
    with pytest.raises(ValueError, match="no storage account given.*AZURE_STORAGE_"):
        storage.resolve("abfs://data/x")


def test_url_and_options_naming_different_accounts_is_an_error():
    with pytest.raises(ValueError, match="'acct' but storage_options give"):
        storage.resolve("https://acct.blob.core.windows.net/c/x",
                        {"account_name": "other", "account_key": KEY})
    with pytest.raises(ValueError, match="connection string is for 'other'") as info:
        storage.resolve(
            "https://acct.blob.core.windows.net/c/x",
            {"connection_string": f"AccountName=other;AccountKey={KEY}"},
        )
    assert KEY not in str(info.value)


# -- credentials from the environment --------------------------------------------


def test_environment_connection_string(monkeypatch):
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    assert storage.resolve("az://c/x") == ("abfs://c/x", {"connection_string": conn})


def test_environment_account_and_key_or_sas(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    _, out = storage.resolve("abfs://c/x")
    assert f"AccountName=acct;AccountKey={KEY};" in out["connection_string"]
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_KEY")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", SAS)
    _, out = storage.resolve("abfs://c/x")
    assert f"SharedAccessSignature={SAS};" in out["connection_string"]


def test_explicit_options_win_over_the_environment(monkeypatch):
    conn = "AccountName=env;AccountKey=x"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "envkey-should-not-be-used")
    _, out = storage.resolve("abfs://c/x", {"account_name": "acct", "sas_token": SAS})
    assert out == {
        "connection_string": "BlobEndpoint=https://acct.blob.core.windows.net;"
        f"SharedAccessSignature={SAS};"
    }


def test_environment_credentials_for_another_account_are_not_used(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "other")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    _, out = storage.resolve("https://acct.blob.core.windows.net/c/x")
    assert out == {"account_name": "acct", "anon": False}
    conn = "AccountName=other;AccountKey=x"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    with pytest.raises(ValueError, match="AZURE_STORAGE_CONNECTION_STRING is set"):
        storage.resolve("https://acct.blob.core.windows.net/c/x")


# -- secrets ---------------------------------------------------------------------


def test_redact_masks_option_values_raw_and_url_encoded():
    from urllib.parse import quote

    text = f"key {KEY} quoted {quote(KEY, safe='')} sas ?{SAS} end"
    out = storage.redact(text, {"account_key": KEY, "sas_token": SAS})
    assert KEY not in out and quote(KEY, safe="") not in out
    assert SIG not in out and "Zm9vYmFy" not in out
    assert out.startswith("key *** quoted *** sas ")


def test_redact_masks_secret_shapes_without_being_told():
    text = (
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"
        f" https://acct.blob.core.windows.net/c/x?{SAS}"
        f" BlobEndpoint=x;SharedAccessSignature={SAS}"
        " headers={'Authorization': 'SharedKey acct:abcdefgh'}"
    )
    out = storage.redact(text)
    for secret in (KEY, SIG, "abcdefgh"):
        assert secret not in out
    assert "AccountName=acct;AccountKey=***;" in out
    assert "sig=***" in out


def test_redact_masks_bearer_tokens_and_jwts():
    jwt = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJodHRwczovL3N0b3JhZ2UifQ.c2lnbmF0dXJl"
    text = (f"token {jwt} expired; sent Bearer abc.def-ghi/jkl= and "
            f'{{"access_token": "{jwt}"}}')
    out = storage.redact(text)
    assert "eyJ" not in out and "abc.def-ghi" not in out
    assert "Bearer ***" in out
    assert out.startswith("token *** expired")


def test_redact_masks_the_environment_secrets(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    assert storage.redact(f"boom {KEY}") == "boom ***"


def test_the_emulator_key_is_masked_only_when_it_is_the_job_key():
    """No key is masked by magic: a test with the public key proves nothing."""
    assert storage.redact(f"x {ACCOUNT_KEY} y") == f"x {ACCOUNT_KEY} y"
    assert storage.redact(f"x {ACCOUNT_KEY} y", {"account_key": ACCOUNT_KEY}) == (
        "x *** y"
    )


def _streamed(redactor, data: bytes, sizes) -> bytes:
    """``data`` fed to ``redactor`` in pieces of the given sizes (cycled)."""
    out, i, n = b"", 0, 0
    while i < len(data):
        size = sizes[n % len(sizes)]
        out += redactor.feed(data[i:i + size])
        i, n = i + size, n + 1
    return out + redactor.flush()


@pytest.mark.parametrize("sizes", [[1], [2, 3], [7], [64], [10_000]])
def test_stream_redactor_masks_secrets_split_across_chunks(sizes):
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"
    data = (
        f"env {{'AZURE_STORAGE_CONNECTION_STRING': '{conn}'}}\n"
        f"raw {KEY} twice {KEY}\rprogress {KEY[:10]}"
        f"\nsas ?{SAS}\nlast line without end {KEY}"
    ).encode()
    out = _streamed(storage.StreamRedactor({"connection_string": conn}), data, sizes)
    assert KEY.encode() not in out and KEY[:20].encode() not in out
    assert SIG.encode() not in out
    assert out == (
        "env {'AZURE_STORAGE_CONNECTION_STRING': "
        "'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;'}\n"
        "raw *** twice ***\r"
        f"progress {KEY[:10]}\nsas ?{SAS.replace(SIG, '***')}\n"
        "last line without end ***"
    ).encode()


def test_stream_redactor_lets_a_long_line_out_in_pieces_without_the_key():
    """A line with no end is not held forever, and no piece ends inside the key."""
    redactor = storage.StreamRedactor({"account_key": KEY}, max_line=1000)
    data = (("x" * 997 + KEY) * 40).encode()
    pieces = [redactor.feed(data[i:i + 333]) for i in range(0, len(data), 333)]
    assert sum(map(len, pieces[:-1])) > 20_000  # let out long before the end
    out = b"".join(pieces) + redactor.flush()
    assert KEY[:8].encode() not in out
    assert out == (("x" * 997 + "***") * 40).encode()


def test_stream_redactor_passes_other_bytes_through():
    data = "héllo wörld\n".encode() + b"\xff\xfe binary \x00\n" + "€".encode()
    redactor = storage.StreamRedactor({"account_key": KEY})
    assert _streamed(redactor, data, [1]) == data


def test_stream_redactor_masks_the_environment_secrets(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", SAS)
    redactor = storage.StreamRedactor()
    assert _streamed(redactor, f"a {SAS} b\n".encode(), [5]) == b"a *** b\n"


def test_safe_storage_options_masks_secrets_and_keeps_the_rest():
    options = {
        "account_name": "acct",
        "account_key": KEY,
        "sas_token": SAS,
        "client_id": "1234-app",
        "client_secret": "hunter2-secret",
        "credential": object(),
        "anon": False,
        "connection_string": f"AccountName=acct;AccountKey={KEY};EndpointSuffix=x",
        "blocksize": 1024,
        "nested": {"token": "abcdef123456"},
    }
    safe = storage.safe_storage_options(options)
    assert safe == {
        "account_name": "acct",
        "account_key": "***",
        "sas_token": "***",
        "client_id": "1234-app",
        "client_secret": "***",
        "credential": "***",
        "anon": False,
        "connection_string": "AccountName=acct;AccountKey=***;EndpointSuffix=x",
        "blocksize": 1024,
        "nested": {"token": "***"},
    }
    assert options["account_key"] == KEY  # a copy; the original is untouched


def test_safe_storage_options_of_nothing():
    assert storage.safe_storage_options(None) == {}


# -- error messages ----------------------------------------------------------------


def test_identity_failure_message_says_how_to_sign_in():
    from azure.identity import CredentialUnavailableError

    exc = CredentialUnavailableError("DefaultAzureCredential failed to get a token")
    line = storage.describe_storage_error(
        exc, "https://acct.blob.core.windows.net/data/x"
    )
    url = "https://acct.blob.core.windows.net/data/x"
    assert line.startswith(f"{url}: no Azure identity")
    assert "az login" in line


def test_identity_failure_names_the_credential_that_tried_and_failed():
    """DefaultAzureCredential's message lists every credential it tried, the one
    that failed (rather than being unavailable here) last; only that one is
    worth a user's attention. Its format, as azure-identity writes it:"""
    from azure.core.exceptions import ClientAuthenticationError

    header = ("DefaultAzureCredential failed to retrieve a token from the included "
              "credentials.\nAttempted credentials:\n\tEnvironmentCredential: "
              "EnvironmentCredential authentication unavailable. Environment "
              "variables are not fully configured.\n")
    failed = ClientAuthenticationError(header + (
        "\tManagedIdentityCredential: Unexpected response \"{'error': "
        "'invalid_request'}\"\nContent: {\"error\": \"invalid_request\"}\n"
        "To mitigate this issue, please refer to the troubleshooting guidelines"))
    url = "https://acct.blob.core.windows.net/data/x"
    line = storage.describe_storage_error(failed, url)
    assert line.startswith(
        f"{url}: no Azure identity could sign in (DefaultAzureCredential; "
        "ManagedIdentityCredential: Unexpected response \"{'error': "
        "'invalid_request'}\"); sign in with `az login`")
    assert "managed identity" in line and "\n" not in line
    nothing = ClientAuthenticationError(header + (
        "\tAzureCliCredential: Azure CLI not found on path\n"
        "\tAzureDeveloperCliCredential: Azure Developer CLI could not be found."))
    line = storage.describe_storage_error(nothing, url)
    assert "(DefaultAzureCredential); sign in with `az login`" in line


def test_unknown_errors_keep_their_first_line_and_lose_their_secrets():
    exc = RuntimeError(f"weird failure AccountKey={KEY}\nsecond line")
    line = storage.describe_storage_error(exc, f"abfs://c/x?{SAS}", {"sas_token": SAS})
    assert "\n" not in line
    assert "weird failure AccountKey=***" in line
    assert KEY not in line and SIG not in line


def test_listing_a_missing_local_path_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r"no files match input 'nothing/\*.png' "
                       rf"\(looked in {tmp_path}/nothing/\*.png\)"):
        storage.list_files("nothing/*.png")
    with pytest.raises(DatasetError, match=r"input '.*/missing.csv' does not exist; "
                       "give an existing file, a folder or a glob"):
        storage.list_files(str(tmp_path / "missing.csv"))


def test_listing_local_files_gives_sorted_absolute_paths(tmp_path, monkeypatch):
    for name in ["b/2.png", "a/1.png", "a/0.png", "c.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert storage.list_files(".") == [
        str(tmp_path / n) for n in ["a/0.png", "a/1.png", "b/2.png", "c.txt"]
    ]
    assert storage.list_files("a/*.png") == [
        str(tmp_path / "a/0.png"), str(tmp_path / "a/1.png")
    ]
    assert storage.list_files("c.txt") == [str(tmp_path / "c.txt")]
    [(path, size, mtime)] = storage.list_files("c.txt", detail=True)
    assert (path, size) == (str(tmp_path / "c.txt"), 1) and mtime


def test_listing_skips_hidden_and_private_files_only_when_asked(tmp_path):
    for name in ["a.csv", ".a.csv.crc", "_SUCCESS", "sub/b.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    root = str(tmp_path)
    names = [os.path.relpath(p, root) for p in storage.list_files(root)]
    assert names == [".a.csv.crc", "_SUCCESS", "a.csv", "sub/b.csv"]
    names = [os.path.relpath(p, root)
             for p in storage.list_files(root, skip_hidden=True)]
    assert names == ["_SUCCESS", "a.csv", "sub/b.csv"]
    names = [os.path.relpath(p, root) for p in storage.list_files(
        root, skip_hidden=True, skip_private=True)]
    assert names == ["a.csv", "sub/b.csv"]
    # a file named explicitly is always listed
    assert storage.list_files(str(tmp_path / "_SUCCESS"), skip_private=True) == [
        str(tmp_path / "_SUCCESS")
    ]
    # a list is taken as given, a missing entry kept without a size
    listed = storage.list_files([str(tmp_path / "zz.csv"), str(tmp_path / "a.csv")],
                                detail=True)
    assert [(p, size) for p, size, _ in listed] == [
        (str(tmp_path / "a.csv"), 1), (str(tmp_path / "zz.csv"), None)
    ]
    with pytest.raises(DatasetError, match="no files match input"):
        storage.list_files(str(tmp_path / "sub" / "*.txt"))


def test_an_existing_path_with_glob_characters_is_taken_as_named(tmp_path):
    """B6: "weird[1].csv" and the folder "br[ack]ets" exist: they are listed as
    named, not as globs (which match nothing); a glob still globs."""
    (tmp_path / "globnames").mkdir()
    weird = tmp_path / "globnames" / "weird[1].csv"
    weird.write_text("a\n1\n")
    (tmp_path / "globnames" / "weird1.csv").write_text("a\n2\n")
    folder = tmp_path / "br[ack]ets"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.csv").write_text("a\n3\n")
    (folder / "sub" / "y.csv").write_text("a\n4\n")

    assert storage.list_inputs(str(weird), None, skip_private=True) == [
        (str(weird), 4, pytest.approx(weird.stat().st_mtime))
    ]
    assert storage.list_files(str(folder)) == [
        str(folder / "sub" / "y.csv"), str(folder / "x.csv")
    ]
    # a path that does not exist is still a glob: [1] is the character 1
    assert storage.list_files(str(tmp_path / "globnames" / "weird[12].csv")) == [
        str(tmp_path / "globnames" / "weird1.csv")
    ]
    with pytest.raises(DatasetError, match="no files match"):
        storage.list_files(str(tmp_path / "globnames" / "weird[3].csv"))


def test_checksum_files_are_left_out_of_table_listings(tmp_path):
    for name in ["part-0.csv", "part-0.csv.crc", "_committed_123", "_started_123"]:
        (tmp_path / name).write_bytes(b"x")
    names = [os.path.basename(p) for p in storage.list_files(
        str(tmp_path), skip_hidden=True, skip_private=True)]
    assert names == ["part-0.csv"]
    assert len(storage.list_files(str(tmp_path))) == 4  # files: all of them


@pytest.fixture
def daskscore_log(caplog):
    """Records of the "daskscore" logger (the CLI may have stopped it propagating)."""
    import logging

    logger = logging.getLogger("daskscore")
    old = logger.propagate
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="daskscore"):
        yield caplog
    logger.propagate = old


def test_broken_and_looping_links_in_a_folder_are_said_in_one_info_line(
        tmp_path, daskscore_log):
    data = tmp_path / "in"
    data.mkdir()
    (data / "good.csv").write_text("a\n1\n")
    (data / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    (data / "loop-a.csv").symlink_to(data / "loop-b.csv")
    (data / "loop-b.csv").symlink_to(data / "loop-a.csv")

    assert storage.list_files(str(data)) == [str(data / "good.csv")]

    lines = [r for r in daskscore_log.records if r.name == "daskscore"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelname == "INFO"
    text = lines[0].getMessage()
    assert "skipped 3 entries" in text
    for name in ("dangling.csv", "loop-a.csv", "loop-b.csv"):
        assert str(data / name) in text
    assert str(data / "good.csv") not in text
def test_a_path_style_url_of_another_account_is_azure_when_something_says_so(
    monkeypatch,
):
    """Not only the emulator's devstoreaccount1: the environment's account, a SAS
    query or Azure options make ``http://IP:PORT/<account>/...`` an Azure URL; a
    plain web server's URL stays plain."""
    url = "http://127.0.0.1:10000/acct/data/x"
    assert not storage.is_azure(url)
    assert storage.is_azure(url, {"account_key": KEY})
    assert storage.is_azure(f"{url}?{SAS}")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    assert storage.is_azure(url)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME")
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"BlobEndpoint=http://127.0.0.1:10000/acct;AccountName=acct;AccountKey={KEY};",
    )
    assert storage.is_azure(url)
    assert not storage.is_azure("http://127.0.0.1:10000/other/data/x")
