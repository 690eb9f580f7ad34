"""Secrets masked in any text, and storage errors as one clear line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, unquote

MASK = "***"
_SECRET_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
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


def _conn_settings(connection_string: str) -> dict[str, str]:
    settings = {}
    for item in connection_string.strip().rstrip(";").split(";"):
        key, sep, value = item.partition("=")
        if sep:
            settings[key.strip().lower()] = value.strip()
    return settings


# -- secrets -------------------------------------------------------------------


def _secret_values(storage_options: Mapping[str, Any] | None) -> set[str]:
    """Every secret string in ``storage_options`` and the environment."""
    values: set[str] = set()
    candidates: list[str] = [os.environ[k] for k in _SECRET_ENV if os.environ.get(k)]

    def walk(options: Any) -> None:
        if isinstance(options, list | tuple):
            for item in options:
                walk(item)
        elif isinstance(options, Mapping):
            for key, value in options.items():
                if isinstance(value, Mapping | list | tuple):
                    walk(value)
                elif isinstance(value, str) and _SECRET_KEY_NAME.search(str(key)):
                    candidates.append(value)

    walk(storage_options or {})
    for value in candidates:
        if (
            "=" in value
            and ";" in value
            or value.lower().startswith(("accountkey=", "sharedaccesssignature="))
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
    values = sorted(_secret_values(storage_options), key=len, reverse=True)
    return _mask(str(text), values)


def _mask(text: str, values: list[str]) -> str:
    """``text`` with ``values`` (longest first) and secret-shaped parts masked."""
    for value in values:
        text = text.replace(value, MASK)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class StreamRedactor:
    """Masks secrets in a byte stream that arrives in arbitrary chunks.

    For what a process prints (a runner's stdout and stderr): :meth:`feed` each
    chunk as it is read and write what it returns; :meth:`flush` at the end of
    the stream. Text is masked a whole line (ended by ``\\n`` or ``\\r``) at a
    time, as :func:`redact` does (the secret values of ``storage_options`` and of
    the ``AZURE_STORAGE_*`` environment, and anything shaped like a secret), so a
    secret split across chunks is still found. A line longer than ``max_line``
    bytes is let out in pieces, keeping back a tail as long as the longest secret
    value. Bytes that are not UTF-8 pass through unchanged.
    """

    def __init__(
        self, storage_options: Mapping[str, Any] | None = None, max_line: int = 65536
    ) -> None:
        self._values = sorted(_secret_values(storage_options), key=len, reverse=True)
        # a tail this long may be the start of a secret: never cut inside it
        self._hold = max([256, *(len(v.encode()) for v in self._values)])
        self._max_line = max(max_line, 2 * self._hold)
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """What can be written of the stream so far, masked."""
        self._pending += data
        cut = max(self._pending.rfind(b"\n"), self._pending.rfind(b"\r")) + 1
        if cut == 0:
            if len(self._pending) <= self._max_line:
                return b""
            # mask whole values first: what is left of one can only be the start
            # of a secret at the very end, inside the tail kept back
            self._pending = self._masked(self._pending, patterns=False)
            cut = len(self._pending) - self._hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return self._masked(out)

    def flush(self) -> bytes:
        """The rest of the stream (a last line without its line end), masked."""
        out, self._pending = self._pending, b""
        return self._masked(out) if out else b""

    def _masked(self, data: bytes, patterns: bool = True) -> bytes:
        text = data.decode("utf-8", "surrogateescape")
        if patterns:
            text = _mask(text, self._values)
        else:
            for value in self._values:
                text = text.replace(value, MASK)
        return text.encode("utf-8", "surrogateescape")


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
            elif (
                _SECRET_KEY_NAME.search(str(key))
                and value is not None
                and not (isinstance(value, bool))
            ):
                out[key] = MASK
            elif isinstance(value, str):
                out[key] = redact(value, storage_options)
            else:
                out[key] = value
        return out

    return clean(storage_options or {})


# -- errors --------------------------------------------------------------------
