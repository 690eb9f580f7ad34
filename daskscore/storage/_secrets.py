"""Secrets masked in any text, and storage errors as one clear line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, unquote

MASK = "***"
# The emulator's public development account; masked like any other key.
_DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)
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
    values: set[str] = {_DEV_ACCOUNT_KEY}
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
