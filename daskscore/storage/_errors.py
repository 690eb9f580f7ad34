"""Storage failures as one clear line: which URL, what happened, what to check."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping
from typing import Any

from ._secrets import redact
from ._urls import resolve

# How azure-identity says a credential is not set up here (vs. failed to sign in).
_UNAVAILABLE = re.compile(
    r"unavailable|not (?:be )?found|not installed|not configured", re.IGNORECASE
)
# a full disk (ENOSPC) or an exhausted quota (EDQUOT)
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DISK_FULL_TEXT = re.compile(r"no space left on device|errno 28\b|disk quota", re.I)
# What a classifier of one error family gives: (what, check), or None.
_Description = tuple[str, str] | None
_DENIED_CODES = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "InvalidAuthenticationInfo",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
}
_CONNECTION_ERRORS = (
    "ServiceRequestError",
    "ClientConnectorError",
    "ClientConnectionError",
    "ServerDisconnectedError",
    "ServiceResponseError",
    "gaierror",
)


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


class DiskFullError(OSError):
    """A local disk ran out of space while daskscore wrote ``what`` in ``folder``.

    ``needed`` and ``free`` (bytes) are what the write needed and what was free
    when it failed, when known.
    """

    def __init__(
        self,
        folder: str,
        what: str = "",
        needed: int | None = None,
        free: int | None = None,
        code: int | None = None,
    ) -> None:
        code = code if code in _DISK_FULL_ERRNOS else errno.ENOSPC
        super().__init__(code, os.strerror(code), folder)
        self.folder = folder
        self.what = what
        self.needed = needed
        self.free = free


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk: ENOSPC, EDQUOT."""
    return _full_disk_in(_chain(exc)) is not None


def _full_disk_in(chain: list[BaseException]) -> BaseException | None:
    for e in chain:
        if isinstance(e, OSError) and (
            e.errno in _DISK_FULL_ERRNOS or _DISK_FULL_TEXT.search(str(e))
        ):
            return e
    return None


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
    """``(what happened, what to check)`` for a storage failure.

    The error families are tried in order; the first that recognises the chain
    of exceptions describes it.
    """
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    codes = {_error_code(e) for e in chain} - {""}
    status = next(
        (
            getattr(e, "status_code", None)
            for e in chain
            if getattr(e, "status_code", None)
        ),
        None,
    )
    return (
        _disk_full(chain)
        or _missing_by_code(codes, container)
        or _access_denied(chain, codes, status, identity)
        or _no_identity(chain, names)
        or _dropped_read(chain, names)
        or _unreachable(chain)
        or _not_found(chain, names)
        or _malformed_credentials(chain)
        or (
            f"{type(exc).__name__}: {_first_line(exc)[:300]}",
            "check the URL and storage_options",
        )
    )


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _disk_full(chain: list[BaseException]) -> _Description:
    """A local disk (or quota) that ran out of space."""
    e = _full_disk_in(chain)
    if e is None:
        return None
    code = e.errno if e.errno in _DISK_FULL_ERRNOS else errno.ENOSPC
    full = next((x for x in chain if isinstance(x, DiskFullError)), None)
    folder = full.folder if full else os.path.dirname(str(e.filename or ""))
    what = f"the disk is full (OSError errno {code}, {os.strerror(code)})"
    if folder:
        what += f" in {folder}"
    if full and full.needed is not None:
        what += f": {full.what or 'the write'} needs about {_megabytes(full.needed)}"
        if full.free is not None:
            what += f", {_megabytes(full.free)} free"
    return (
        what,
        "free space on that disk (temporary files of this attempt were removed) "
        "or give another output folder",
    )


def _missing_by_code(codes: set[str], container: str) -> _Description:
    """A container or blob the storage says does not exist."""
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
    return None


def _access_denied(
    chain: list[BaseException], codes: set[str], status: Any, identity: bool
) -> _Description:
    """A key, SAS token, connection string or identity the storage refused."""
    if not (codes & _DENIED_CODES or status in (401, 403)):
        return None
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


def _no_identity(chain: list[BaseException], names: set[str]) -> _Description:
    """No Azure identity could sign in."""
    if "CredentialUnavailableError" in names or "ClientAuthenticationError" in names:
        return (
            f"no Azure identity could sign in (DefaultAzureCredential"
            f"{_identity_failure(chain)})",
            "sign in with `az login`, set AZURE_CLIENT_ID/AZURE_TENANT_ID/"
            "AZURE_CLIENT_SECRET, or run on Azure with a managed identity assigned "
            "(AZURE_CLIENT_ID picks a user-assigned one); or give account_key, "
            "sas_token or connection_string",
        )
    return None


def _dropped_read(chain: list[BaseException], names: set[str]) -> _Description:
    """A response cut mid-body on every retry."""
    if not names & {"IncompleteReadError", "ClientPayloadError", "ContentLengthError"}:
        return None
    # The SDK re-reads a response cut mid-body (3 tries, 1 s apart) before
    # raising this, so the connection kept dropping.
    got = next(
        (
            m
            for e in chain
            if (m := re.search(r"received (\d+) of (\d+) bytes", str(e)))
        ),
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


def _unreachable(chain: list[BaseException]) -> _Description:
    """An endpoint that cannot be reached (refused, dropped, unknown host)."""
    for e in chain:
        if isinstance(e, ConnectionError) or type(e).__name__ in _CONNECTION_ERRORS:
            endpoint = _endpoint_in(chain)
            return (
                f"cannot reach the storage endpoint{endpoint} ({_first_line(e)[:160]})",
                "check the account name or endpoint, the network and proxy settings "
                "(for Azurite: is it running on that port?)",
            )
    return None


def _not_found(chain: list[BaseException], names: set[str]) -> _Description:
    """A path with nothing there, without the storage's error code."""
    if "ResourceNotFoundError" in names or any(
        isinstance(e, FileNotFoundError) for e in chain
    ):
        return (
            "not found: no blob at this path (or its container does not exist)",
            "check the container name and the path; a blob deleted after the "
            "input was listed also ends here",
        )
    return None


def _malformed_credentials(chain: list[BaseException]) -> _Description:
    """Credentials the Azure SDK cannot parse."""
    if any(isinstance(e, ValueError) and "connect to account" in str(e) for e in chain):
        return (
            "the storage credentials are malformed",
            "check the connection string, account key or SAS token format",
        )
    return None


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
