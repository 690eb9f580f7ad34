"""Signing in to blob storage with an Azure identity, for real, against Azurite.

No account key, SAS token or connection string anywhere: only
``DefaultAzureCredential`` (``anon=False``, or nothing but the account). Azurite
runs with HTTPS and ``--oauth basic``, so it accepts bearer tokens and checks
their issuer, audience and expiry (not their signature, and no role assignments).

The token comes from a small HTTP endpoint in this module that speaks the App
Service managed-identity protocol (``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER``).
It stands in for Azure's identity service (Microsoft Entra ID), not for the storage
daskscore integrates with: azure-identity's own ``DefaultAzureCredential`` ->
``ManagedIdentityCredential`` code asks it for a token for
``https://storage.azure.com``, and the storage SDK, through adlfs, sends that token
to Azurite over HTTPS, from the client process and from every Dask worker.

The processes that talk to the emulator are all started here, with the identity
variables and ``SSL_CERT_FILE`` (the test CA) in their environment: aiohttp, the
SDK's async transport, builds its certificate store once, when it is imported,
from the default verify paths that ``SSL_CERT_FILE`` names (``requests``, the sync
transport, reads ``REQUESTS_CA_BUNDLE`` instead). This pytest process may have
imported aiohttp long before, so it only sets up blobs (with the key, through the
sync SDK) and reads back what the others produced.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azurite import ACCOUNT_NAME, Azurite, start_azurite
from certs import issue, make_ca
from cluster_procs import (
    TAG_VAR,
    DaskCluster,
    ProcessTracker,
    cli,
    make_files,
    start_cluster,
    write_script,
)

pytest_plugins = ["cluster_procs"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Entra ID's issuer form; Azurite accepts tokens from https://sts.windows.net/...
TENANT = "72f988bf-0000-4000-8000-2d7cd011db47"
ISSUER = f"https://sts.windows.net/{TENANT}/"
STORAGE_AUDIENCE = "https://storage.azure.com"
N_FILES = 7

SCORE_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    return [f"{os.path.basename(p)} {open(p).read().strip()}" for p in mini_batch]
"""

# Lists and downloads with daskscore.storage in a fresh process; the argument is
# {"dest": folder, "workspace": folder, "forms": {name: [url, options]}}, where a
# url "datastore:<container>/<path>" means a path on a datastore registered with
# no credential. SDK debug logging is on, so the token grep sees every log line.
CLIENT_SCRIPT = """
import json, logging, os, sys

import daskscore as ds
from daskscore import storage
from daskscore.errors import DatasetError

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
job = json.loads(sys.argv[1])
out = {}
for name, (url, options) in job["forms"].items():
    if url.startswith("datastore:"):
        container, _, path = url[len("datastore:"):].partition("/")
        store = ds.Datastore.register_azure_blob_container(
            ds.Workspace(job["workspace"]), "blobs", container, "devstoreaccount1",
            endpoint=job["endpoint"], overwrite=True)
        url, options = store.path(path).url, store.path(path).storage_options
    try:
        resolved = storage.resolve(url, options)[1]
        listed = storage.list_files(url, options)
        local, errors = storage.download(
            listed, os.path.join(job["dest"], name), resolved)
        out[name] = {"listed": listed, "errors": errors,
                     "read": [open(p).read() if p else None for p in local]}
    except DatasetError as exc:
        out[name] = {"error": str(exc)}
print(json.dumps(out))
"""


# -- the identity service's stand-in -------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(audience: str) -> str:
    """A token shaped like Entra ID's; Azurite's basic mode does not check the
    signature, so the last part is random bytes."""
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": ISSUER,
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "tid": TENANT,
        "oid": str(uuid.uuid4()),
        "sub": "daskscore-test-identity",
        "jti": uuid.uuid4().hex,
    }
    header = {"alg": "RS256", "typ": "JWT", "kid": "test"}
    return ".".join(
        [
            _b64(json.dumps(header).encode()),
            _b64(json.dumps(claims).encode()),
            _b64(os.urandom(64)),
        ]
    )


class _TokenHandler(BaseHTTPRequestHandler):
    """``GET /<behaviour>?api-version=2019-08-01&resource=...`` as App Service does.

    ``/ok`` gives a token for the resource asked; ``/wrong-audience`` one for
    another audience; ``/refuse`` the error an App Service without an identity
    gives. A request without the right ``X-IDENTITY-HEADER`` is refused.
    """

    server: TokenService

    def do_GET(self) -> None:  # http.server calls it by this name
        url = urlsplit(self.path)
        behaviour = url.path.strip("/")
        resource = parse_qs(url.query).get("resource", [""])[0]
        self.server.requests.append((behaviour, resource))
        if self.headers.get("X-IDENTITY-HEADER") != self.server.secret:
            self._reply(
                401,
                {
                    "error": "unauthorized",
                    "error_description": "X-IDENTITY-HEADER is wrong",
                },
            )
        elif behaviour == "refuse":
            self._reply(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "No managed identity is assigned to this app.",
                },
            )
        else:
            audience = resource if behaviour == "ok" else "https://vault.azure.net"
            token = _jwt(audience)
            self.server.issued.append(token)
            self._reply(
                200,
                {
                    "access_token": token,
                    "expires_on": str(int(time.time()) + 3600),
                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": "00000000-0000-4000-8000-000000000001",
                },
            )

    def _reply(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # http.server writes every request to stderr otherwise


class TokenService(ThreadingHTTPServer):
    """The managed-identity endpoint, in a thread of this process."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.secret = uuid.uuid4().hex
        self.issued: list[str] = []
        self.requests: list[tuple[str, str]] = []

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{behaviour}"


# -- fixtures ------------------------------------------------------------------------


class _Tracker(ProcessTracker):
    """A ProcessTracker whose processes get ``base`` as their whole environment."""

    def __init__(self, log_dir: Path, base: dict[str, str]) -> None:
        super().__init__(log_dir)
        self.base = base

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.base, TAG_VAR: self.tag, **(extra or {})}


@dataclass
class OAuthSetup:
    """The HTTPS+OAuth emulator, the token endpoint and a cluster that uses them."""

    azurite: Azurite
    tokens: TokenService
    tracker: _Tracker
    cluster: DaskCluster
    folder: Path
    container: str

    def url(self, path: str) -> str:
        return f"{self.azurite.endpoint}/{self.container}/{path}"

    def blobs(self, prefix: str) -> dict[str, bytes]:
        """Every blob below ``prefix``, read with the key (test setup only)."""
        client = self.azurite.service_client().get_container_client(self.container)
        with client:
            return {
                b.name: client.download_blob(b.name).readall()
                for b in client.list_blobs(name_starts_with=prefix)
            }

    def client(
        self, forms: dict[str, list], name: str, identity: str = "ok"
    ) -> tuple[dict[str, Any], str, str]:
        """Run CLIENT_SCRIPT in a fresh process; (its result, stdout, stderr)."""
        job = {
            "dest": str(self.folder / "downloads" / name),
            "workspace": str(self.folder / "ws"),
            "endpoint": self.azurite.endpoint,
            "forms": forms,
        }
        cmd = [sys.executable, "-W", "error", "-c", CLIENT_SCRIPT, json.dumps(job)]
        proc = self.tracker.run(
            cmd, timeout=120, env={"IDENTITY_ENDPOINT": self.tokens.url(identity)}
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.splitlines()[-1]), proc.stdout, proc.stderr


def _identity_env(folder: Path, ca: str, tokens: TokenService) -> dict[str, str]:
    """This process's environment without any Azure setting, plus the identity."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))
    }
    env.update(
        {
            "IDENTITY_ENDPOINT": tokens.url("ok"),
            "IDENTITY_HEADER": tokens.secret,
            "SSL_CERT_FILE": ca,
            "REQUESTS_CA_BUNDLE": ca,
            "DASK_DASKSCORE__SECRETS_DIR": str(folder / "secrets"),
        }
    )
    return env


@pytest.fixture(scope="module")
def oauth(tmp_path_factory) -> Iterator[OAuthSetup]:
    folder = tmp_path_factory.mktemp("identity")
    ca_key, ca_cert, ca = make_ca(folder, "identity-test-ca")
    tls = {"ca": ca, **issue(folder, "azurite", ca_key, ca_cert)}
    tokens = TokenService()
    thread = threading.Thread(target=tokens.serve_forever, daemon=True)
    thread.start()
    tracker = _Tracker(folder / "cluster-logs", _identity_env(folder, ca, tokens))
    azurite = cluster = None
    try:
        # the emulator's account name (path-style URLs need no account_name for
        # it), with a random key: the tests sign in with tokens only
        azurite = start_azurite(tls=tls, oauth="basic", account_name=ACCOUNT_NAME)
        with azurite.service_client() as service:
            client = service.get_container_client("identity")
            client.create_container()
            for path in make_files(folder / "in", N_FILES):
                client.upload_blob(f"in/{path.name}", path.read_bytes())
            client.upload_blob("in/more/item-0099.txt", b"99\n")
        cluster = start_cluster(tracker, folder, {"id": 2})
        yield OAuthSetup(azurite, tokens, tracker, cluster, folder, "identity")
    finally:
        left = cluster.stop() if cluster is not None else tracker.stop_all()
        if azurite is not None:
            azurite.stop()
        tokens.shutdown()
        tokens.server_close()
        thread.join(timeout=10)
        assert not left, f"processes left running: {left}"


def _assert_no_token(oauth: OAuthSetup, texts: dict[str, str | bytes]) -> None:
    """No token the service issued (nor its claims part) is in any of ``texts``."""
    assert oauth.tokens.issued, "no token was issued: the grep would prove nothing"
    secrets = [oauth.tokens.secret]
    for token in oauth.tokens.issued:
        secrets += [token, token.split(".")[1]]
    for name, text in texts.items():
        data = text if isinstance(text, bytes) else text.encode()
        for secret in secrets:
            assert secret.encode() not in data, f"a token or secret is in {name}"


def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


EXPECTED = [f"{i}\n" for i in range(N_FILES)] + ["99\n"]


# -- (a) listing and downloading with nothing but an identity ------------------------


def test_list_and_download_with_only_an_identity(oauth):
    """Every way to ask for the identity reaches the HTTPS emulator with a token."""
    before = len(oauth.tokens.issued)
    endpoint = oauth.azurite.endpoint
    forms = {
        "anon-false": [oauth.url("in/"), {"anon": False}],
        "nothing": [oauth.url("in/"), {}],
        "account": [oauth.url("in/*.txt"), {"account_name": ACCOUNT_NAME}],
        "abfs+account_host": [
            f"abfs://{oauth.container}/in/",
            {
                "account_name": ACCOUNT_NAME,
                "account_host": endpoint.removeprefix("https://"),
            },
        ],
        "datastore": [f"datastore:{oauth.container}/in/", None],
    }
    result, out, err = oauth.client(forms, "a")
    for name in forms:
        assert "error" not in result[name], (name, result[name])
        assert result[name]["errors"] == {}, name
    names = [f"item-{i:04d}.txt" for i in range(N_FILES)]
    expected_urls = [f"abfs://{oauth.container}/in/{n}" for n in names]
    assert result["nothing"]["listed"] == [
        *expected_urls,
        f"abfs://{oauth.container}/in/more/item-0099.txt",
    ]
    assert result["nothing"]["read"] == EXPECTED
    assert result["anon-false"] == result["nothing"] == result["datastore"]
    assert result["abfs+account_host"] == result["nothing"]
    assert result["account"]["listed"] == expected_urls
    # one process, one credential per filesystem: a token was really fetched
    assert len(oauth.tokens.issued) > before
    assert set(oauth.tokens.requests[before:]) == {("ok", STORAGE_AUDIENCE)}
    _assert_no_token(
        oauth,
        {"stdout": out, "stderr": err}
        | _files_under(oauth.folder / "downloads" / "a")
        | _files_under(oauth.folder / "ws"),
    )


def test_the_emulator_refuses_a_request_without_a_token(oauth):
    """The container is private: without the token nothing is listed (so the
    identity tests above really signed in)."""
    result, _, _ = oauth.client({"public": [oauth.url("in/"), {"anon": True}]}, "anon")
    assert "access denied" in result["public"]["error"], result


# -- (b) a whole job, inputs and output on the emulator, through the identity --------


def test_file_dataset_job_with_only_an_identity_on_a_multi_process_cluster(oauth):
    """The CLI lists the input on the client; two worker processes download the
    mini-batches and commit the output; no process has a key; no token shows in
    anything the job wrote, printed or logged."""
    folder = oauth.folder / "job"
    script = write_script(folder / "src", SCORE_SCRIPT)
    job_file = folder / "job.yaml"
    job_file.write_text(
        json.dumps(
            {  # YAML is a superset of JSON
                "input": [oauth.url("in/")],
                "storage_options": {"anon": False},  # explicit; the output has none
                "output": oauth.url("results/"),
            }
        )
    )
    before = len(oauth.tokens.issued)
    proc = cli(
        oauth.tracker,
        "run",
        str(job_file),
        "--entry-script",
        str(script),
        "--mini-batch-size",
        "2",
        "--scheduler",
        oauth.cluster.address,
        "--logging-level",
        "DEBUG",
        "--no-progress",
        timeout=180,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr[-3000:])
    assert f"Completed: {N_FILES + 1} of {N_FILES + 1} items succeeded" in proc.stdout

    produced = oauth.blobs("results/")
    lines = produced["results/parallel_run_step.txt"].decode().splitlines()
    assert lines == [f"item-{i:04d}.txt {i}" for i in range(N_FILES)] + [
        "item-0099.txt 99"
    ]
    assert {
        "results/logs/job_report.json",
        "results/logs/processed_mini-batches.csv",
    } <= set(produced)
    report = json.loads(produced["results/logs/job_report.json"])
    assert report["status"] == "Completed"
    # the client and the worker processes each fetched their own tokens
    assert len(oauth.tokens.issued) - before >= 2
    _assert_no_token(
        oauth,
        {"stdout": proc.stdout, "stderr": proc.stderr}
        | produced
        | _files_under(oauth.folder),  # cluster logs, worker space, downloads...
    )


# -- (c) an identity that cannot sign in: one line that says what to do ---------------


def _one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("daskscore: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("identity", ["refuse", "wrong-audience"])
def test_an_identity_that_cannot_sign_in_is_one_clear_line(oauth, identity):
    folder = oauth.folder / f"fail-{identity}"
    script = write_script(folder / "src", SCORE_SCRIPT)
    url = oauth.url("in/")
    before = len(oauth.tokens.requests)
    proc = cli(
        oauth.tracker,
        "run",
        "--entry-script",
        str(script),
        "--input",
        url,
        "--output",
        str(folder / "out"),
        "--scheduler",
        oauth.cluster.address,
        "--no-progress",
        env={"IDENTITY_ENDPOINT": oauth.tokens.url(identity)},
        timeout=120,
    )
    assert proc.returncode != 0
    line = _one_error_line(proc)
    assert f"/{oauth.container}/in/" in line
    asked = oauth.tokens.requests[before:]
    if identity == "refuse":
        # once: the storage SDK would sign in again three times, 17 s in all
        assert asked == [("refuse", STORAGE_AUDIENCE)]
        assert "no Azure identity could sign in" in line
        assert "No managed identity is assigned to this app." in line
        assert "ManagedIdentityCredential" in line
        assert "az login" in line and "managed identity" in line
    else:  # a token, but Azurite refuses it, as Azure would
        assert asked and set(asked) == {("wrong-audience", STORAGE_AUDIENCE)}
        assert "access denied (AuthenticationFailed: Invalid token audience.)" in line
        assert "the storage refused the Azure identity's token" in line
        assert "Storage Blob Data Reader" in line and "account key" not in line
    assert oauth.azurite.account_key not in line
    if identity == "wrong-audience":  # a token was issued: it must not show
        _assert_no_token(oauth, {"stdout": proc.stdout, "stderr": proc.stderr})
