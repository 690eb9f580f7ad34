"""Where data lives: URLs and storage options turned into fsspec filesystems.

Anything fsspec knows works (local paths, ``file://``, ``memory://``, ...). Azure
Blob Storage goes through ``adlfs`` and accepts these URL forms::

    abfs://container/path/to/blob          az://container/path/to/blob
    abfss://container@account.dfs.core.windows.net/path/to/blob
    https://account.blob.core.windows.net/container/path/to/blob   (also .dfs.)
    http://127.0.0.1:10000/devstoreaccount1/container/path         (path-style:
                                             Azurite, or any IP/localhost endpoint)

:func:`resolve` turns each of them into ``abfs://container/path`` plus adlfs
``storage_options`` that carry the account, the endpoint and the credential, so
the pair can be handed as is to ``fsspec.open``, ``dask.dataframe.read_parquet``
or a Dask worker. The credential is the first of:

1. ``storage_options``: ``connection_string``; ``account_key``; ``sas_token``
   (also taken from a ``?...&sig=...`` query in an https URL); ``anon=True`` (a
   public container); ``credential`` (an azure-identity object); ``client_id`` +
   ``client_secret`` + ``tenant_id``; or ``anon=False`` / nothing but an account,
   which means ``DefaultAzureCredential`` (managed identity, ``az login``, ...);
2. the environment: ``AZURE_STORAGE_CONNECTION_STRING``,
   ``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_ACCOUNT_KEY`` or
   ``AZURE_STORAGE_SAS_TOKEN``, ``AZURE_STORAGE_CLIENT_ID`` / ``_SECRET`` /
   ``TENANT_ID``, ``AZURE_STORAGE_ANON``; used only when they are for the account
   the URL names (if it names one). They are copied into the returned options, so
   workers on other machines need not have them.

Secrets never leave this module in clear: :func:`redact` masks them in any text,
:func:`safe_storage_options` gives a copy fit for logs and reports, and
:func:`describe_storage_error` turns an SDK exception into one clear line.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlsplit

import fsspec
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem

from .exceptions import DatasetError

__all__ = [
    "describe_storage_error",
    "download",
    "is_azure",
    "is_local",
    "is_storage_error",
    "list_files",
    "redact",
    "resolve",
    "safe_storage_options",
    "url_to_fs",
]

MASK = "***"

_AZURE_PROTOCOLS = ("abfs", "az", "abfss")
# <account>.blob.core.windows.net and the sovereign clouds' suffixes
_AZURE_HOST = re.compile(
    r"^(?P<account>[a-z0-9]{3,24})\.(?:blob|dfs)\.(?P<suffix>core\.[a-z0-9.]+)$"
)
_DEFAULT_SUFFIX = "core.windows.net"
# The emulator's public development account; masked like any other key.
_DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)
_ENV = {
    "connection_string": "AZURE_STORAGE_CONNECTION_STRING",
    "account_name": "AZURE_STORAGE_ACCOUNT_NAME",
    "account_key": "AZURE_STORAGE_ACCOUNT_KEY",
    "sas_token": "AZURE_STORAGE_SAS_TOKEN",
    "client_id": "AZURE_STORAGE_CLIENT_ID",
    "client_secret": "AZURE_STORAGE_CLIENT_SECRET",
    "tenant_id": "AZURE_STORAGE_TENANT_ID",
}
_SECRET_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
)
# Options that say how to authenticate; any of them given explicitly means the
# environment's credentials are not consulted.
_CREDENTIAL_KEYS = (
    "connection_string",
    "account_key",
    "sas_token",
    "credential",
    "client_id",
    "client_secret",
    "tenant_id",
    "anon",
)
_SECRET_KEY_NAME = re.compile(
    r"(key|secret|token|password|passwd|credential|signature|sas|connection_string"
    r"|auth)",
    re.IGNORECASE,
)
_SECRET_PATTERNS = (
    # connection-string parts
    re.compile(
        r"\b((?:AccountKey|SharedAccessSignature|SharedAccessKey|ClientSecret"
        r"|Password)=)([^;\s'\"]+)",
        re.IGNORECASE,
    ),
    # a SAS signature in a URL or token, raw or URL-encoded
    re.compile(r"(\bsig(?:=|%3D))([^&;\s'\"]+)", re.IGNORECASE),
    # request headers an SDK error might echo
    re.compile(r"(\bAuthorization['\"]?\s*[:=]\s*['\"]?)([^'\"\n]+)", re.IGNORECASE),
    # a bearer token anywhere, and any JSON Web Token (an identity's access token)
    re.compile(r"(\bBearer\s+)([A-Za-z0-9._~+/=-]+)", re.IGNORECASE),
    re.compile(r"()(\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"),
)
# The retry policy applied to every Azure client we create. The SDK's default
# waits 15 s, 18 s and 24 s between tries, which turns a refused connection into
# a minute of silence. Dropped reads and throttling keep three tries.
_RETRY = {
    "initial_backoff": 1,
    "increment_base": 2,
    "random_jitter_range": 1,
    "total_retries": 3,
    "connect_retries": 1,
    "read_retries": 3,
    "status_retries": 3,
}
_GLOB_CHARS = ("*", "?", "[")
# How azure-identity says a credential is not set up here (vs. failed to sign in).
_UNAVAILABLE = re.compile(
    r"unavailable|not (?:be )?found|not installed|not configured", re.IGNORECASE
)


# -- URLs ----------------------------------------------------------------------


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split_azure(
    urlpath: str, storage_options: Mapping[str, Any]
) -> tuple[str, str, str | None, str | None, str | None] | None:
    """Parse an Azure Blob URL, or return None for any other URL.

    Returns ``(container, blob_path, account, endpoint, sas_token)``: the account
    the URL names (or None), an explicit blob endpoint for path-style URLs (or
    None), and a SAS token found in the URL's query (or None).
    """
    if "://" not in urlpath:
        return None
    parts = urlsplit(urlpath)
    scheme = parts.scheme.lower()
    query = parts.query
    sas = query if "sig=" in query else None
    if scheme in _AZURE_PROTOCOLS:
        netloc = parts.netloc
        account = None
        if "@" in netloc:
            container, host = netloc.split("@", 1)
            match = _AZURE_HOST.match(host.lower())
            if not match:
                return None
            account = match.group("account")
        else:
            container = netloc
        path = parts.path.lstrip("/")
        if query and not sas:
            path = f"{path}?{query}"  # e.g. ?versionid=, which adlfs understands
        return container, path, account, None, sas
    if scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    segments = parts.path.lstrip("/").split("/", 1)
    match = _AZURE_HOST.match(host)
    if match:
        container = segments[0]
        path = segments[1] if len(segments) > 1 else ""
        account = match.group("account")
        endpoint = None
        if match.group("suffix") != _DEFAULT_SUFFIX:
            endpoint = f"https://{account}.blob.{match.group('suffix')}"
        return container, path, account, endpoint, sas
    if _is_ip_or_localhost(host) and len(segments) == 2:
        # Path-style endpoint http://host:port/<account>/<container>/<path>; only
        # taken as Azure when the account is the emulator's or the options are
        # Azure's, so a plain local web server keeps working through fsspec.
        account, rest = segments
        azure_options = any(
            k in storage_options
            for k in ("account_key", "sas_token", "connection_string", "account_name")
        )
        if account != "devstoreaccount1" and not azure_options:
            return None
        container, _, path = rest.partition("/")
        endpoint = f"{scheme}://{parts.netloc}/{account}"
        return container, path, account, endpoint, sas
    return None


def is_azure(urlpath: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``urlpath`` is an Azure Blob Storage URL (any form listed above)."""
    return _split_azure(str(urlpath), storage_options or {}) is not None


def _conn_settings(connection_string: str) -> dict[str, str]:
    settings = {}
    for item in connection_string.strip().rstrip(";").split(";"):
        key, sep, value = item.partition("=")
        if sep:
            settings[key.strip().lower()] = value.strip()
    return settings


def _conn_account(connection_string: str) -> str | None:
    """The account a connection string is for, when it says."""
    settings = _conn_settings(connection_string)
    if settings.get("usedevelopmentstorage", "").lower() == "true":
        return "devstoreaccount1"
    if "accountname" in settings:
        return settings["accountname"].lower()
    endpoint = settings.get("blobendpoint")
    if endpoint:
        parts = urlsplit(endpoint)
        match = _AZURE_HOST.match((parts.hostname or "").lower())
        if match:
            return match.group("account")
        segment = parts.path.strip("/").split("/")[0]
        return segment.lower() or None
    return None


def _connection_string(endpoint: str, account: str, options: dict[str, Any]) -> str:
    """A connection string for a key, a SAS token or anonymous access."""
    text = f"BlobEndpoint={endpoint};"
    if options.get("account_key"):
        text += f"AccountName={account};AccountKey={options['account_key']};"
    elif options.get("sas_token"):
        text += f"SharedAccessSignature={str(options['sas_token']).lstrip('?')};"
    return text


def _env_credentials(account: str | None) -> dict[str, Any]:
    """The ``AZURE_STORAGE_*`` credentials, when they are for ``account``."""
    env = {k: os.environ[v] for k, v in _ENV.items() if os.environ.get(v)}
    out: dict[str, Any] = {}
    conn = env.get("connection_string")
    if conn and (account is None or _conn_account(conn) in (None, account)):
        return {"connection_string": conn}
    env_account = env.get("account_name", "").lower() or None
    if account is None or env_account in (None, account):
        for key in ("account_key", "sas_token", "client_id", "client_secret",
                    "tenant_id"):
            if key in env:
                out[key] = env[key]
        if account is None and env_account:
            out["account_name"] = env_account
    anon = os.environ.get("AZURE_STORAGE_ANON")
    if anon is not None and not out:
        out["anon"] = anon.lower() not in ("false", "0", "f", "")
    return out


def _azure_options(
    container: str,
    account: str | None,
    endpoint: str | None,
    url_sas: str | None,
    storage_options: Mapping[str, Any],
    urlpath: str,
) -> dict[str, Any]:
    options = dict(storage_options)
    given = options.get("account_name")
    if account and given and str(given).lower() != account:
        raise ValueError(
            f"{redact(urlpath, options)} is in storage account {account!r} but "
            f"storage_options give account_name={given!r}; make them agree"
        )
    if account is None and given:
        account = str(given).lower()
    if url_sas and not options.get("sas_token"):
        options["sas_token"] = url_sas
    explicit = {k for k in _CREDENTIAL_KEYS if options.get(k) is not None}
    if not explicit:
        options.update(_env_credentials(account))
        if account is None and options.get("account_name"):
            account = str(options["account_name"]).lower()

    conn = options.get("connection_string")
    if conn:
        conn_account = _conn_account(conn)
        if account and conn_account and conn_account != account:
            raise ValueError(
                f"{redact(urlpath, options)} is in storage account {account!r} but "
                f"the connection string is for {conn_account!r}; make them agree"
            )
        return _keep(options, connection_string=conn)
    if account is None:
        raise ValueError(
            f"{redact(urlpath, options)}: no storage account given; pass "
            "storage_options={'connection_string': ...} or {'account_name': ..., "
            "'account_key' | 'sas_token' | 'anon': ...}, or set "
            "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_NAME"
        )
    if endpoint is None and options.get("account_host"):
        # adlfs' own option, and what an identity's resolved options carry: keep
        # it, or resolving them again would send requests to the public cloud.
        endpoint = f"https://{str(options['account_host']).strip('/')}"
    endpoint = endpoint or f"https://{account}.blob.{_DEFAULT_SUFFIX}"
    if options.get("account_key") or options.get("sas_token") or options.get("anon"):
        # A connection string is the one form adlfs never overrides from the
        # environment, and the only one that reaches http endpoints (Azurite).
        return _keep(
            options, connection_string=_connection_string(endpoint, account, options)
        )
    # An identity: DefaultAzureCredential, a credential object or a service
    # principal. adlfs builds https://<account_host> from the account and host.
    if endpoint.startswith("http://"):
        raise ValueError(
            f"{redact(urlpath, options)}: identity-based credentials need an https "
            "endpoint; use account_key, sas_token or connection_string with "
            f"{endpoint}"
        )
    if os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        raise ValueError(
            f"{redact(urlpath, options)}: storage_options ask for an Azure identity "
            "but AZURE_STORAGE_CONNECTION_STRING is set, and adlfs would use it "
            "instead; unset it or pass the credential explicitly"
        )
    out = _keep(options, account_name=account)
    if endpoint != f"https://{account}.blob.{_DEFAULT_SUFFIX}":
        out["account_host"] = endpoint.removeprefix("https://")
    for key in ("credential", "client_id", "client_secret", "tenant_id"):
        if options.get(key) is not None:
            out[key] = options[key]
    out["anon"] = False
    return out


def _keep(options: Mapping[str, Any], **credential: Any) -> dict[str, Any]:
    """``options`` without any account/credential key, plus ``credential``."""
    out = {
        k: v
        for k, v in options.items()
        if k not in _CREDENTIAL_KEYS and k not in ("account_name", "account_host")
    }
    out.update(credential)
    return out


def resolve(
    urlpath: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """Canonical URL and self-contained storage options for ``urlpath``.

    Azure URLs become ``abfs://container/path`` with adlfs options that name the
    account, endpoint and credential (taken from ``storage_options``, then from
    the environment). Any other URL is returned as given, with a copy of
    ``storage_options``. Resolving a resolved pair returns it unchanged.

    Parameters
    ----------
    urlpath
        A path or URL, possibly with a glob.
    storage_options
        Options for the filesystem (see the module docstring for Azure).

    Returns
    -------
    (url, storage_options)

    Raises
    ------
    ValueError
        No account can be found, or the URL and the options name different
        accounts. The message carries no secret.
    """
    text = os.fspath(urlpath)
    options = dict(storage_options or {})
    split = _split_azure(text, options)
    if split is None:
        return text, options
    container, path, account, endpoint, url_sas = split
    resolved = _azure_options(container, account, endpoint, url_sas, options, text)
    url = f"abfs://{container}/{path}" if path else f"abfs://{container}"
    return url, resolved


def url_to_fs(
    urlpath: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem and the path inside it for ``urlpath``.

    Azure URLs of every supported form are resolved first (see :func:`resolve`);
    the filesystem instance is cached by fsspec, so calling this per file is cheap.
    """
    url, options = resolve(urlpath, storage_options)
    if not url.startswith("abfs://"):
        return fsspec.core.url_to_fs(url, **options)
    fs = fsspec.filesystem("abfs", **options)
    _apply_retry_policy(fs)
    return fs, fs._strip_protocol(url)


def _apply_retry_policy(fs: Any) -> None:
    if getattr(fs, "_daskscore_retry", False):
        return
    policy = getattr(getattr(fs.service_client, "_config", None), "retry_policy", None)
    if policy is not None:
        for name, value in _RETRY.items():
            if hasattr(policy, name):
                setattr(policy, name, value)
        if callable(getattr(policy, "increment", None)):
            policy.increment = _sign_in_not_retried(policy.increment)
    fs._daskscore_retry = True


def _sign_in_not_retried(increment: Any) -> Any:
    """The retry policy's ``increment``, giving up at once when no token came.

    The storage SDK retries a credential that could not get a token like a dropped
    connection: three more sign-ins, about 17 s, before the error shows. The
    identity service's answer does not change in that time, and azure-identity
    already retries its own transient failures (throttling, 5xx).
    """

    @functools.wraps(increment)
    def wrapped(settings: Any, request: Any, response: Any = None,
                error: Any = None) -> bool:
        if (
            response is None
            and type(error).__name__ in ("ClientAuthenticationError",
                                         "CredentialUnavailableError")
            and getattr(error, "response", None) is None
        ):
            return False  # no retries left: the policy raises the error as is
        return increment(settings, request, response=response, error=error)

    return wrapped


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local disk (paths can be handed to ``run()`` as is)."""
    return isinstance(fs, LocalFileSystem)


# -- listing -------------------------------------------------------------------


def _has_glob(path: str) -> bool:
    return any(c in path for c in _GLOB_CHARS)


def _is_blob_store(fs: fsspec.AbstractFileSystem) -> bool:
    return hasattr(fs, "service_client") and hasattr(fs, "split_path")


@functools.lru_cache(maxsize=4096)
def _http_date(text: str) -> Any:
    """``Last-Modified`` as a datetime; blobs written together share the string."""
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(text)


def _blob_entry(blob: Any) -> tuple[str, dict[str, Any]] | None:
    """``(name, info)`` from one ``<Blob>`` element of a List Blobs page."""
    node = blob.find("Name")
    name = node.text or ""
    if node.get("Encoded") == "true":
        name = unquote(name)
    found = blob.find("Metadata")
    metadata = {
        child.tag.lower(): (child.text or "").lower()
        for child in (found if found is not None else ())
    }
    if (
        name.endswith("/")
        or metadata.get("hdi_isfolder") == "true"  # ADLS Gen2 directories
        or metadata.get("is_directory") == "true"  # adlfs' own folder markers
    ):
        return None
    props = blob.find("Properties")
    size = props.findtext("Content-Length") if props is not None else None
    modified = props.findtext("Last-Modified") if props is not None else None
    return name, {
        "type": "file",
        "size": int(size) if size else None,
        "last_modified": _http_date(modified) if modified else None,
        "etag": props.findtext("Etag") if props is not None else None,
    }


def _list_blobs(fs: Any, container: str, prefix: str) -> dict[str, dict]:
    """Every blob whose name starts with ``prefix``: one flat listing, 5,000 a page.

    The SDK's ``list_blobs`` turns each blob into a full ``BlobProperties`` through
    its generic XML deserializer, about half a millisecond per blob, which makes a
    100,000-blob folder a minute of CPU. This reads the page XML directly, as the
    SDK's own ``list_blob_names`` does, keeping name, size, time and etag. Where the
    SDK's internals differ from what this expects, ``fs.find`` does the same work.
    """
    try:
        from azure.core.async_paging import AsyncItemPaged
        from azure.storage.blob._list_blobs_helper import IgnoreListBlobsDeserializer
        from azure.storage.blob.aio._list_blobs_helper import BlobNamesPaged
    except ImportError:  # pragma: no cover - another SDK layout
        return _find_blobs(fs, container, prefix)

    class _Page(BlobNamesPaged):
        async def _extract_data_cb(self, get_next_return):
            token, _ = await super()._extract_data_cb(get_next_return)
            blobs = self._response.find("Blobs")
            entries = (_blob_entry(b) for b in (blobs if blobs is not None else ()))
            self.current_page = [e for e in entries if e is not None]
            return token, self.current_page

    async def run() -> dict[str, dict]:
        async with fs.service_client.get_container_client(container) as client:
            generated = client._build_generated_client()
            generated.container._deserialize = IgnoreListBlobsDeserializer()
            pages = AsyncItemPaged(
                functools.partial(
                    generated.container.list_blob_flat_segment, include=["metadata"]
                ),
                prefix=prefix or None,
                results_per_page=5000,
                container=container,
                page_iterator_class=_Page,
            )
            out = {}
            async for name, info in pages:
                full = f"{container}/{name}"
                out[full] = {**info, "name": full}
            return out

    try:
        return fsspec.asyn.sync(fs.loop, run)
    except (AttributeError, TypeError):  # pragma: no cover - another SDK layout
        return _find_blobs(fs, container, prefix)


def _find_blobs(fs: Any, container: str, prefix: str) -> dict[str, dict]:
    root, _, literal = f"{container}/{prefix}".rpartition("/")
    return fs.find(root, prefix=literal, detail=True)


def _find_remote(fs: Any, path: str) -> dict[str, dict]:
    """Files under ``path`` on blob storage: a glob, a folder or one blob."""
    container, _, key = path.partition("/")
    if _has_glob(container):
        raise ValueError(f"a glob in the container name is not supported: {path}")
    if _has_glob(key):
        first = min(key.index(c) for c in _GLOB_CHARS if c in key)
        regex = re.compile(fsspec.utils.glob_translate(path))
        found = _list_blobs(fs, container, key[:first])
        return {p: info for p, info in found.items() if regex.match(p)}
    key = key.strip("/")
    found = _list_blobs(fs, container, f"{key}/" if key else "")
    if found or not key:
        return found
    info = fs.info(path)  # one blob, or FileNotFoundError
    return {path: info} if info.get("type") == "file" else {}


def list_files(
    urlpath: str | os.PathLike,
    storage_options: Mapping[str, Any] | None = None,
    *,
    detail: bool = False,
) -> list[str] | list[tuple[str, int | None, Any]]:
    """List the files under ``urlpath``, sorted.

    A glob (``abfs://c/images/*.png``, ``data/**/*.csv``), a folder (searched
    recursively, by one flat prefix listing on blob storage rather than a walk
    per folder) or a single file.

    Parameters
    ----------
    urlpath
        Path or URL.
    storage_options
        Filesystem options (see :func:`resolve`).
    detail
        Return ``(url, size, last_modified)`` tuples instead of URLs.

    Returns
    -------
    Full URLs with protocol (``abfs://container/...``) for remote files, absolute
    paths for local ones; open them with the options :func:`resolve` returns.

    Raises
    ------
    DatasetError
        Nothing matches, or the storage cannot be listed; the message says which
        URL and what to check, without secrets.
    """
    text = os.fspath(urlpath)
    try:
        url, options = resolve(text, storage_options)
        fs, path = url_to_fs(url, options)
    except ValueError as exc:
        raise DatasetError(f"cannot list input: {exc}") from exc
    local = is_local(fs)
    try:
        if _is_blob_store(fs):
            found = _find_remote(fs, path)
        elif _has_glob(path):
            found = fs.glob(path, detail=True)
        else:
            info = fs.info(path)
            if info.get("type") == "directory":
                found = fs.find(path, detail=True)
            else:
                found = {path: info}
    except FileNotFoundError:
        found = {}
    except Exception as exc:  # the user's storage boundary: say what and where
        raise DatasetError(
            "cannot list input " + describe_storage_error(exc, text, storage_options)
        ) from exc
    entries = [
        (
            p if local else fs.unstrip_protocol(p),
            info.get("size"),
            info.get("mtime") or info.get("last_modified"),
        )
        for p, info in found.items()
        if info.get("type", "file") == "file"
    ]
    if not entries:
        raise DatasetError(_nothing_found(fs, path, text, storage_options, local))
    entries.sort(key=lambda e: e[0])
    return entries if detail else [e[0] for e in entries]


def _nothing_found(
    fs: Any, path: str, text: str, storage_options: Mapping[str, Any] | None,
    local: bool,
) -> str:
    shown = redact(text, storage_options)
    if local:
        where = os.path.abspath(text)
        looked = f" (looked in {where})" if where != text else ""
    else:
        looked = ""
    if _is_blob_store(fs):
        container = path.split("/", 1)[0]
        try:
            exists = fs.exists(container)
        except Exception as exc:  # an error here is the better explanation
            return "cannot list input " + describe_storage_error(
                exc, text, storage_options
            )
        if not exists:
            return (
                f"input {shown!r}: container {container!r} does not exist in this "
                "storage account; check the container name and the account "
                "(storage_options / AZURE_STORAGE_*)"
            )
    if _has_glob(path):
        return f"no files match input {shown!r}{looked}; check the path or glob"
    return (
        f"input {shown!r} does not exist{looked}; give an existing file, a folder "
        "or a glob such as 'data/*.csv'"
    )


# -- downloading ---------------------------------------------------------------


def _local_name(dest_dir: str, path: str) -> str:
    """Where blob ``container/a/b.png`` lands under ``dest_dir``: same relative path.

    Keeping the whole path (not only the base name) keeps two blobs with the same
    name in different folders apart; ``..`` and empty parts are dropped so that
    nothing lands outside ``dest_dir``.
    """
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    return os.path.join(dest_dir, *parts)


def download(
    urls: list[str],
    dest_dir: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    concurrency: int = 16,
) -> tuple[list[str | None], dict[str, str]]:
    """Download remote files into ``dest_dir``, several at a time.

    Parameters
    ----------
    urls
        Remote URLs (e.g. from :func:`list_files`); all on the same filesystem.
    dest_dir
        Local folder; each file keeps its remote path below it, so its base name
        is unchanged.
    storage_options
        Filesystem options (see :func:`resolve`).
    concurrency
        How many downloads run at once.

    Returns
    -------
    (local_paths, errors)
        ``local_paths[i]`` is where ``urls[i]`` was written, or None when it could
        not be read; ``errors`` maps each such URL to one clear line (see
        :func:`describe_storage_error`). A failed file leaves nothing behind.
        Transient network errors are retried by the Azure SDK first.
    """
    import asyncio

    if not urls:
        return [], {}
    fs, _ = url_to_fs(urls[0], resolve(urls[0], storage_options)[1])
    targets = []
    for url in dict.fromkeys(urls):  # a URL given twice is fetched once
        path = url_to_fs(url, resolve(url, storage_options)[1])[1]
        targets.append((url, path, _local_name(dest_dir, path)))
    errors: dict[str, str] = {}

    def failed(url: str, local: str, exc: BaseException) -> None:
        errors[url] = describe_storage_error(exc, url, storage_options)
        try:
            os.remove(local)
        except OSError:
            pass

    if getattr(fs, "async_impl", False):
        async def fetch_all() -> list[BaseException | None]:
            gate = asyncio.Semaphore(concurrency)

            async def fetch(path: str, local: str) -> None:
                async with gate:
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    await fs._get_file(path, local)

            return await asyncio.gather(
                *(fetch(path, local) for _, path, local in targets),
                return_exceptions=True,
            )

        outcomes = fsspec.asyn.sync(fs.loop, fetch_all)
    else:
        outcomes = []
        for _, path, local in targets:
            try:
                os.makedirs(os.path.dirname(local), exist_ok=True)
                fs.get_file(path, local)
                outcomes.append(None)
            except Exception as exc:  # noqa: BLE001 - reported per file below
                outcomes.append(exc)
    local_of: dict[str, str | None] = {}
    for (url, _, local), outcome in zip(targets, outcomes):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome  # KeyboardInterrupt, CancelledError: not a file's fault
            failed(url, local, outcome)
            local_of[url] = None
        else:
            local_of[url] = local
    return [local_of[url] for url in urls], errors


# -- secrets -------------------------------------------------------------------


def _secret_values(storage_options: Mapping[str, Any] | None) -> set[str]:
    """Every secret string in ``storage_options`` and the environment."""
    values: set[str] = {_DEV_ACCOUNT_KEY}
    candidates: list[str] = [os.environ[k] for k in _SECRET_ENV if os.environ.get(k)]

    def walk(options: Any) -> None:
        if isinstance(options, Mapping):
            for key, value in options.items():
                if isinstance(value, Mapping | list | tuple):
                    walk(value)
                elif isinstance(value, str) and _SECRET_KEY_NAME.search(str(key)):
                    candidates.append(value)

    walk(storage_options or {})
    for value in candidates:
        if "=" in value and ";" in value or value.lower().startswith(
            ("accountkey=", "sharedaccesssignature=")
        ):
            settings = _conn_settings(value)
            for part in ("accountkey", "sharedaccesssignature", "sharedaccesskey"):
                if settings.get(part):
                    values.add(settings[part])
        else:
            values.add(value.lstrip("?"))
        for sig in parse_qs(value.lstrip("?")).get("sig", []):
            values.add(sig)
    out = set()
    for value in values:
        if len(value) < 6:  # too short to mask without mangling ordinary text
            continue
        out.update({value, quote(value, safe=""), quote_plus(value), unquote(value)})
    return {v for v in out if len(v) >= 6}


def redact(text: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """``text`` with every secret replaced by ``***``.

    Masks the secret values of ``storage_options`` and of the ``AZURE_STORAGE_*``
    environment (raw and URL-encoded), plus anything shaped like a secret:
    ``AccountKey=``/``SharedAccessSignature=`` parts of connection strings, SAS
    ``sig=`` parameters and ``Authorization`` headers.
    """
    text = str(text)
    for value in sorted(_secret_values(storage_options), key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def safe_storage_options(
    storage_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A copy of ``storage_options`` fit for logs and reports.

    Secret values (keys, SAS tokens, client secrets, credential objects) become
    ``"***"``; a connection string keeps its endpoints and account name but its
    key or signature is masked; nested options are handled the same way.
    """
    def clean(options: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in options.items():
            if isinstance(value, Mapping):
                out[key] = clean(value)
            elif str(key).lower() == "connection_string" and isinstance(value, str):
                out[key] = redact(value, storage_options)
            elif _SECRET_KEY_NAME.search(str(key)) and value is not None and not (
                isinstance(value, bool)
            ):
                out[key] = MASK
            elif isinstance(value, str):
                out[key] = redact(value, storage_options)
            else:
                out[key] = value
        return out

    return clean(storage_options or {})


# -- errors --------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    if code:
        return str(getattr(code, "value", code))  # StorageErrorCode is an enum
    match = re.search(r"ErrorCode:(\w+)", str(exc))
    return match.group(1) if match else ""


def describe_storage_error(
    exc: BaseException, url: str, storage_options: Mapping[str, Any] | None = None
) -> str:
    """One line for a storage failure: which URL, what happened, what to check.

    Understands adlfs and Azure SDK exceptions (missing container or blob, a key
    or SAS token that is refused, an unreachable endpoint, a missing identity)
    and falls back to the first line of the error for anything else. The line
    never contains a secret.

    Parameters
    ----------
    exc
        The exception raised by fsspec/adlfs/the Azure SDK.
    url
        The URL being accessed, as the user gave it.
    storage_options
        The options used, so that their secrets are masked too.
    """
    shown = redact(url, storage_options)
    try:
        resolved_url, resolved = resolve(url, storage_options)
        container = resolved_url.split("/")[2]
    except (ValueError, IndexError):
        resolved, container = {}, ""
    # an Azure identity signs in: no key, SAS token or connection string
    identity = resolved.get("anon") is False and not resolved.get("connection_string")
    what, check = _classify(exc, container, identity)
    return redact(f"{shown}: {what}; {check}", storage_options).replace("\n", " ")


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the storage or of the way to it.

    True for the Azure SDK's and aiohttp's errors and for ``OSError`` (refused
    or dropped connections, missing or forbidden paths), also as the cause of
    another exception: failures of the user's storage, to be reported with
    :func:`describe_storage_error` rather than as a bug of daskscore.
    """
    for e in _chain(exc):
        package = type(e).__module__.split(".", 1)[0]
        if isinstance(e, OSError) or package in ("azure", "aiohttp", "adlfs"):
            return True
    return False


def _classify(
    exc: BaseException, container: str, identity: bool = False
) -> tuple[str, str]:
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    codes = {_error_code(e) for e in chain} - {""}
    status = next(
        (getattr(e, "status_code", None) for e in chain
         if getattr(e, "status_code", None)), None
    )
    where = f"container {container!r}" if container else "the container"
    if "ContainerNotFound" in codes:
        return (
            f"{where} does not exist",
            "check the container name and the storage account, or create it",
        )
    if "BlobNotFound" in codes:
        return (
            "the blob does not exist (deleted or renamed?)",
            "check the path, or list the input again",
        )
    if (
        codes & {"AuthenticationFailed", "AuthorizationFailure",
                 "AuthorizationPermissionMismatch", "InvalidAuthenticationInfo",
                 "AuthorizationResourceTypeMismatch", "AuthorizationServiceMismatch"}
        or status in (401, 403)
    ):
        code = sorted(codes)[0] if codes else f"HTTP {status}"
        if identity:
            return (
                f"access denied ({code}{_auth_detail(chain)}): the storage refused "
                "the Azure identity's token",
                "check that the identity has a data role on this storage account "
                "(Storage Blob Data Reader to read, Storage Blob Data Contributor to "
                "write) and belongs to its tenant, and that the token is for "
                "https://storage.azure.com",
            )
        return (
            f"access denied ({code})",
            "check the account key, SAS token (expiry, permissions) or connection "
            "string in storage_options / AZURE_STORAGE_*, and that it belongs to "
            "this account",
        )
    if "CredentialUnavailableError" in names or "ClientAuthenticationError" in names:
        return (
            f"no Azure identity could sign in (DefaultAzureCredential"
            f"{_identity_failure(chain)})",
            "sign in with `az login`, set AZURE_CLIENT_ID/AZURE_TENANT_ID/"
            "AZURE_CLIENT_SECRET, or run on Azure with a managed identity assigned "
            "(AZURE_CLIENT_ID picks a user-assigned one); or give account_key, "
            "sas_token or connection_string",
        )
    if names & {"IncompleteReadError", "ClientPayloadError", "ContentLengthError"}:
        # The SDK re-reads a response cut mid-body (3 tries, 1 s apart) before
        # raising this, so the connection kept dropping.
        got = next(
            (m for e in chain if (m := re.search(r"received (\d+) of (\d+) bytes",
                                                 str(e)))),
            None,
        )
        shown = f" (received {int(got[1]):,} of {int(got[2]):,} bytes)" if got else ""
        return (
            f"the connection dropped while the blob was being read{shown}, on "
            "every retry",
            "check the network and any proxy or firewall between the workers and "
            "the storage account; rerun_failed=True scores the failed mini-batches "
            "again",
        )
    for e in chain:
        if isinstance(e, ConnectionError) or type(e).__name__ in (
            "ServiceRequestError", "ClientConnectorError", "ClientConnectionError",
            "ServerDisconnectedError", "ServiceResponseError", "gaierror",
        ):
            endpoint = _endpoint_in(chain)
            return (
                f"cannot reach the storage endpoint{endpoint} "
                f"({_first_line(e)[:160]})",
                "check the account name or endpoint, the network and proxy settings "
                "(for Azurite: is it running on that port?)",
            )
    if "ResourceNotFoundError" in names or any(
        isinstance(e, FileNotFoundError) for e in chain
    ):
        return (
            "not found: no blob at this path (or its container does not exist)",
            "check the container name and the path; a blob deleted after the "
            "input was listed also ends here",
        )
    if any(isinstance(e, ValueError) and "connect to account" in str(e)
           for e in chain):
        return (
            "the storage credentials are malformed",
            "check the connection string, account key or SAS token format",
        )
    return (
        f"{type(exc).__name__}: {_first_line(exc)[:300]}",
        "check the URL and storage_options",
    )


def _auth_detail(chain: list[BaseException]) -> str:
    """``": <why>"`` from the storage's AuthenticationErrorDetail, if it gave one."""
    for e in chain:
        match = re.search(r"authenticationerrordetail:\s*([^\n]+)", str(e), re.I)
        if match:
            return f": {match.group(1).strip()[:200]}"
    return ""


def _identity_failure(chain: list[BaseException]) -> str:
    """``"; <Credential>: <why>"`` for the credential that tried and failed.

    DefaultAzureCredential goes past the credentials that are unavailable here
    and stops at the first that fails otherwise, which it lists last.
    """
    for e in chain:
        tried = re.findall(r"^\t(\w+Credential): (.*)$", str(e), re.MULTILINE)
        if tried and not _UNAVAILABLE.search(tried[-1][1]):
            name, why = tried[-1]
            return f"; {name}: {why.strip()[:200]}"
    return ""


def _endpoint_in(chain: list[BaseException]) -> str:
    for e in chain:
        match = re.search(r"host ([\w.\-]+:\d+)", str(e))
        if match:
            return f" {match.group(1)}"
    return ""
