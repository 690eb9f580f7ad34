"""Azurite, the Azure Storage emulator, for the test suite.

``make test`` installs the pinned ``azurite`` npm package into ``tests/node_modules``
(see ``tests/package.json``). :func:`start_azurite` runs ``azurite-blob`` on a free
127.0.0.1 port with its own data folder and returns an :class:`Azurite` handle;
:meth:`Azurite.stop` kills it by pid. ``conftest.py`` wraps this in a
session-scoped fixture (``azurite``) and a fresh-container-per-test fixture
(``azure_container``); tests that must kill the emulator mid-job start their own.
``start_azurite(tls=..., oauth="basic")`` serves HTTPS and accepts bearer tokens
(``test_azure_identity.py``).

Every emulator serves one storage account with a random name and a random key
(``AZURITE_ACCOUNTS=name:key``), not the emulator's public development account:
daskscore masks only the secrets a job was given, so a test that greps for the
key proves that the job's own key was masked. An emulator restarted on the same
data folder serves the same account (kept in the folder).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AZURITE_BIN",
    "ISSUED_KEYS",
    "AzureContainer",
    "Azurite",
    "free_port",
    "issued_secrets",
    "random_account",
    "start_azurite",
]

# The documented, public development-storage account of the emulator. No emulator
# of the suite serves its key (see the module docstring); the name is still
# served, with a random key, where a test needs it (``account_name=``).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_BIN = Path(__file__).parent / "node_modules" / ".bin" / "azurite-blob"

_ACCOUNT_FILE = "test-account.json"
# every key an emulator of this test session was given: what the greps look for
ISSUED_KEYS: list[str] = []


def issued_secrets() -> list[str]:
    """Every key of this session's emulators, raw and URL-encoded."""
    out = []
    for key in ISSUED_KEYS:
        out += [key, quote(key, safe=""), quote_plus(key)]
    return out


def random_account() -> tuple[str, str]:
    """A fresh storage account name (3-24 lowercase letters and digits) and key."""
    name = "acct" + secrets.token_hex(8)
    return name, base64.b64encode(secrets.token_bytes(64)).decode()


def _account_for(location: Path, keep: bool, name: str | None) -> tuple[str, str]:
    """The account of a kept data folder, or a new random one (kept there)."""
    path = location / _ACCOUNT_FILE
    if keep and path.exists():
        saved = json.loads(path.read_text())
        if name is None or saved["name"] == name:
            return saved["name"], saved["key"]
    new_name, key = random_account()
    account = (name or new_name, key)
    path.write_text(json.dumps({"name": account[0], "key": account[1]}))
    return account


_LISTENING = re.compile(r"successfully listens on (https?://[0-9.]+:(\d+))")


@dataclass
class Azurite:
    """A running ``azurite-blob`` process and how to reach it.

    Attributes
    ----------
    pid
        Process id of the emulator (node).
    port
        The 127.0.0.1 port it listens on.
    location
        Its data folder (removed by :meth:`stop`).
    scheme
        ``http``, or ``https`` when started with ``tls``.
    ca_file
        With https: the CA that signed its certificate, which clients must trust.
    """

    pid: int
    port: int
    location: Path
    _proc: subprocess.Popen = field(repr=False)
    _log: Any = field(repr=False)
    _keep: bool = field(default=False, repr=False)
    account_name: str = ACCOUNT_NAME
    account_key: str = field(default=ACCOUNT_KEY, repr=False)
    scheme: str = "http"
    ca_file: str | None = None

    @property
    def endpoint(self) -> str:
        """The blob endpoint, path-style: ``http://127.0.0.1:PORT/<account>``."""
        return f"{self.scheme}://127.0.0.1:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        """A connection string with the account key, for the Azure SDK and adlfs."""
        return (
            f"DefaultEndpointsProtocol={self.scheme};"
            f"AccountName={self.account_name};AccountKey={self.account_key};"
            f"BlobEndpoint={self.endpoint};"
        )

    @property
    def storage_options(self) -> dict[str, str]:
        """``storage_options`` for daskscore/adlfs: the connection string."""
        return {"connection_string": self.connection_string}

    def service_client(self) -> Any:
        """A synchronous ``azure.storage.blob.BlobServiceClient`` for test setup."""
        from azure.storage.blob import BlobServiceClient

        if self.ca_file:
            return BlobServiceClient.from_connection_string(
                self.connection_string, connection_verify=self.ca_file
            )
        return BlobServiceClient.from_connection_string(self.connection_string)

    def log_text(self) -> str:
        """What the emulator printed so far (for failure messages)."""
        try:
            return (self.location / "azurite.log").read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        """Whether the emulator process is still running."""
        return self._proc.poll() is None

    def stop(self) -> None:
        """Stop the emulator by pid and remove its data folder (unless given).

        SIGTERM first; Azurite then closes its server but keeps running while
        clients hold keep-alive connections, so once it reports "closed" (or after
        a few seconds) it is killed with SIGKILL.
        """
        if self._proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + 5
                while self._proc.poll() is None and time.monotonic() < deadline:
                    if "successfully closed" in self.log_text():
                        break
                    time.sleep(0.05)
                if self._proc.poll() is None:
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait(timeout=10)
        self._log.close()
        if not self._keep:
            shutil.rmtree(self.location, ignore_errors=True)


def _answers(url: str, ca_file: str | None = None) -> bool:
    """Whether an HTTP server answers at ``url`` (any status code counts)."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context):
            return True
    except urllib.error.HTTPError:
        return True  # 4xx without credentials: it is up
    except OSError:
        return False


def start_azurite(
    timeout_s: float = 60.0,
    in_memory: bool = False,
    location: Path | None = None,
    port: int = 0,
    tls: dict[str, str] | None = None,
    oauth: str | None = None,
    debug: Path | None = None,
    account_name: str | None = None,
) -> Azurite:
    """Start ``azurite-blob`` on a free 127.0.0.1 port and wait until it answers.

    Parameters
    ----------
    timeout_s
        How long to wait for the emulator to answer before giving up.
    in_memory
        Keep blobs in memory instead of the data folder (for benchmarks).
    location
        A data folder to use (and keep) instead of a fresh temporary one, so that
        blobs survive a restart (benchmarks, restart tests).
    port
        The port to listen on; 0 (the default) lets the emulator pick a free one,
        which is read from its output, so two test sessions never race for a port.
    tls
        ``{"cert": ..., "key": ..., "ca": ...}`` PEM paths: serve HTTPS with this
        certificate (for 127.0.0.1); ``ca`` is what this module's clients trust.
    oauth
        ``"basic"``: accept OAuth bearer tokens (needs ``tls``). Azurite then
        checks a token's issuer, audience and expiry, not its signature.
    debug
        A file for the emulator's debug log: one entry per request with its
        method, URL and headers and the operation it was (``BlockBlob_StageBlock``,
        ``BlockBlob_CommitBlockList``, ...), to check how a client talks to it.
    account_name
        Serve this account name (with a random key) instead of a random name;
        the key is random either way (the one of a kept data folder on restart).

    Raises
    ------
    RuntimeError
        The emulator is not installed, exited, or did not answer in time; the
        message says what to do and includes its output.
    """
    if not AZURITE_BIN.exists():
        raise RuntimeError(
            f"Azurite is not installed ({AZURITE_BIN} is missing); run "
            "`make tests/node_modules/.installed` (or `npm ci --prefix tests`)"
        )
    keep = location is not None
    if location is None:
        location = Path(tempfile.mkdtemp(prefix="daskscore-azurite-"))
    location.mkdir(parents=True, exist_ok=True)
    name, key = _account_for(location, keep, account_name)
    if key not in ISSUED_KEYS:
        ISSUED_KEYS.append(key)
    log = open(location / "azurite.log", "w+b")  # closed in stop()
    args = [
        str(AZURITE_BIN),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
    ]
    if tls:
        args += ["--cert", str(tls["cert"]), "--key", str(tls["key"])]
    if oauth:
        args += ["--oauth", oauth]
    if debug is not None:
        args += ["--debug", str(debug)]
    # The data folder holds the log either way; blobs go there unless in memory.
    args += ["--inMemoryPersistence"] if in_memory else ["--location", str(location)]
    proc = subprocess.Popen(
        args,
        env={**os.environ, "AZURITE_ACCOUNTS": f"{name}:{key}"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in pytest must not hit it before stop()
    )
    azurite = Azurite(
        pid=proc.pid, port=0, location=location, _proc=proc, _log=log, _keep=keep,
        scheme="https" if tls else "http", ca_file=(tls or {}).get("ca"),
        account_name=name, account_key=key,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = _LISTENING.search(azurite.log_text())
            if match:
                azurite.port = int(match.group(2))
                if _answers(f"{azurite.endpoint}?comp=list", azurite.ca_file):
                    return azurite
            if proc.poll() is not None:
                raise RuntimeError(
                    f"azurite-blob exited with code {proc.returncode}:\n"
                    + azurite.log_text()
                )
            time.sleep(0.05)
        raise RuntimeError(
            f"azurite-blob did not answer within {timeout_s:.0f}s:\n"
            + azurite.log_text()
        )
    except BaseException:
        azurite.stop()
        raise


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on right now (for 'unreachable' tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AzureContainer:
    """A fresh, empty blob container on a running :class:`Azurite`.

    Attributes
    ----------
    name
        The container name.
    url
        ``abfs://<name>``; join paths with ``f"{container.url}/images/*.png"``.
    storage_options
        Options that reach it (a connection string with the account key).
    """

    name: str
    azurite: Azurite
    url: str = ""
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.url = f"abfs://{self.name}"
        self.storage_options = self.azurite.storage_options

    def fs(self) -> Any:
        """An adlfs filesystem on the emulator's account (for test setup)."""
        import adlfs

        return adlfs.AzureBlobFileSystem(
            connection_string=self.azurite.connection_string
        )

    def upload(self, files: dict[str, bytes]) -> None:
        """Upload ``{relative path: bytes}`` into the container, concurrently."""
        self.fs().pipe({f"{self.name}/{k}": v for k, v in files.items()})
