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

The package: ``_urls`` (URL forms, credentials, filesystems), ``_listing``
(listing and downloading), ``_secrets`` (masking secrets), ``_errors`` (storage
failures as one line).
"""

from ._errors import (
    DiskFullError,
    describe_storage_error,
    is_disk_full,
    is_storage_error,
)
from ._listing import (
    FileRun,
    changed_after,
    download,
    files_clock,
    list_file_runs,
    list_files,
    list_inputs,
    local_folder,
)
from ._own import leaving_out, without_own_files
from ._secrets import MASK, StreamRedactor, redact, safe_storage_options
from ._urls import RESOLVED_SECRET_ENV, is_azure, is_local, resolve, url_to_fs

__all__ = [
    "MASK",
    "DiskFullError",
    "FileRun",
    "changed_after",
    "RESOLVED_SECRET_ENV",
    "StreamRedactor",
    "describe_storage_error",
    "download",
    "files_clock",
    "is_azure",
    "is_disk_full",
    "is_local",
    "is_storage_error",
    "leaving_out",
    "list_file_runs",
    "list_files",
    "list_inputs",
    "local_folder",
    "redact",
    "resolve",
    "safe_storage_options",
    "url_to_fs",
    "without_own_files",
]
