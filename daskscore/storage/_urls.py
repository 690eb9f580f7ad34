"""URL forms, credentials and the filesystems behind them (see the package)."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import fsspec
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem

from ._secrets import _conn_settings, redact

_AZURE_PROTOCOLS = ("abfs", "az", "abfss")
# <account>.blob.core.windows.net and the sovereign clouds' suffixes
_AZURE_HOST = re.compile(
    r"^(?P<account>[a-z0-9]{3,24})\.(?:blob|dfs)\.(?P<suffix>core\.[a-z0-9.]+)$"
)
_DEFAULT_SUFFIX = "core.windows.net"
_ENV = {
    "connection_string": "AZURE_STORAGE_CONNECTION_STRING",
    "account_name": "AZURE_STORAGE_ACCOUNT_NAME",
    "account_key": "AZURE_STORAGE_ACCOUNT_KEY",
    "sas_token": "AZURE_STORAGE_SAS_TOKEN",
    "client_id": "AZURE_STORAGE_CLIENT_ID",
    "client_secret": "AZURE_STORAGE_CLIENT_SECRET",
    "tenant_id": "AZURE_STORAGE_TENANT_ID",
}
# The environment's secrets that :func:`resolve` copies into the options it
# returns: a job's workers and runners get them there, never need them in their
# environment (an identity's own variables, AZURE_CLIENT_SECRET..., are another
# matter: each process signs in by itself).
RESOLVED_SECRET_ENV = tuple(
    _ENV[k] for k in ("connection_string", "account_key", "sas_token", "client_secret")
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
        # taken as Azure when the account is the emulator's or the environment's,
        # the options are Azure's or the query is a SAS token, so a plain local
        # web server keeps working through fsspec.
        account, rest = segments
        azure_options = any(
            k in storage_options
            for k in ("account_key", "sas_token", "connection_string", "account_name")
        )
        if not (_known_account(account) or azure_options or sas):
            return None
        container, _, path = rest.partition("/")
        endpoint = f"{scheme}://{parts.netloc}/{account}"
        return container, path, account, endpoint, sas
    return None


def _known_account(account: str) -> bool:
    """The emulator's account, or the one the ``AZURE_STORAGE_*`` variables name."""
    known = {"devstoreaccount1"}
    if os.environ.get("AZURE_STORAGE_ACCOUNT_NAME"):
        known.add(os.environ["AZURE_STORAGE_ACCOUNT_NAME"].lower())
    if os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        known.add(_conn_account(os.environ["AZURE_STORAGE_CONNECTION_STRING"]) or "")
    return account.lower() in known


def is_azure(urlpath: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``urlpath`` is an Azure Blob Storage URL (any form listed above)."""
    return _split_azure(str(urlpath), storage_options or {}) is not None


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
        for key in (
            "account_key",
            "sas_token",
            "client_id",
            "client_secret",
            "tenant_id",
        ):
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
    options, account = _gather_credentials(account, url_sas, storage_options, urlpath)
    conn = options.get("connection_string")
    if conn:
        return _connection_string_options(options, conn, account, urlpath)
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
    return _identity_options(options, account, endpoint, urlpath)


def _gather_credentials(
    account: str | None,
    url_sas: str | None,
    storage_options: Mapping[str, Any],
    urlpath: str,
) -> tuple[dict[str, Any], str | None]:
    """The options with the URL's SAS token, else the environment's credentials.

    Also the account: the URL's, else the options' or the environment's.
    """
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
    return options, account


def _connection_string_options(
    options: dict[str, Any], conn: str, account: str | None, urlpath: str
) -> dict[str, Any]:
    """Options that sign in with a connection string (for the URL's account)."""
    conn_account = _conn_account(conn)
    if account and conn_account and conn_account != account:
        raise ValueError(
            f"{redact(urlpath, options)} is in storage account {account!r} but "
            f"the connection string is for {conn_account!r}; make them agree"
        )
    return _keep(options, connection_string=conn)


def _identity_options(
    options: dict[str, Any], account: str, endpoint: str, urlpath: str
) -> dict[str, Any]:
    """Options that sign in with an Azure identity.

    DefaultAzureCredential, a credential object or a service principal. adlfs
    builds https://<account_host> from the account and host.
    """
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
    def wrapped(
        settings: Any, request: Any, response: Any = None, error: Any = None
    ) -> bool:
        if (
            response is None
            and type(error).__name__
            in ("ClientAuthenticationError", "CredentialUnavailableError")
            and getattr(error, "response", None) is None
        ):
            return False  # no retries left: the policy raises the error as is
        return increment(settings, request, response=response, error=error)

    return wrapped


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local disk (paths can be handed to ``run()`` as is)."""
    return isinstance(fs, LocalFileSystem)
