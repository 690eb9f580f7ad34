"""The job's storage key never reaches a file daskscore writes (issue 10, B7).

The emulator serves a random account and key (tests/azurite.py), given the
documented way: ``AZURE_STORAGE_CONNECTION_STRING`` in the environment of the
process that runs the job, which its embedded workers inherit. The script prints
its whole environment in ``init()`` and ``run()``, as real scripts do, and also
prints the key itself (read from a file), in pieces, from a child process and
through its logger, and raises an error that quotes it. Every file under the
output (blob and local), the cluster's worker logs and the console are then
grepped for the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from helpers import make_files, write_script

import daskscore as ds

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

N_FILES = 8

SCRIPT = """
import os
import subprocess
import sys

import daskscore as ds

KEY = open(os.environ["KEY_FILE"]).read()


def show(where):
    print(where, "environment:", dict(os.environ), flush=True)
    print(where, "environment:", dict(os.environ), file=sys.stderr, flush=True)


def init():
    show("init")
    sys.stdout.write("key in pieces: " + KEY[:11])
    sys.stdout.flush()
    sys.stdout.write(KEY[11:] + " end\\n")
    sys.stdout.flush()
    ds.EntryScript().logger.info("logged key %s", KEY)


def run(mini_batch):
    show("run")
    names = [os.path.basename(p) for p in mini_batch]
    subprocess.run([sys.executable, "-c", "import sys; print(sys.argv[1])",
                    "child " + KEY], check=True)
    print("stderr key", KEY, file=sys.stderr, flush=True)
    if "item-0003.txt" in names:
        raise ValueError("refused with key " + KEY)
    return names
"""


def _secrets(azurite) -> list[bytes]:
    key = azurite.account_key
    return [s.encode() for s in (key, quote(key, safe=""), quote_plus(key))]


def _local_files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _blob_files(container, prefix: str) -> dict[str, bytes]:
    fs = container.fs()
    root = f"{container.name}/{prefix}"
    return {p: fs.cat_file(p) for p in sorted(fs.find(root))}


@pytest.fixture
def connection_string_env(azurite, monkeypatch):
    """The documented way: the connection string in the environment, nothing else."""
    for name in list(os.environ):
        if name.startswith(("AZURE_STORAGE_", "AZURE_CLIENT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)


@pytest.mark.parametrize("output_on", ["blob", "local"])
def test_the_account_key_is_in_no_file_the_job_writes(
    tmp_path, azurite, azure_container, connection_string_env, capfd, output_on
):
    assert azurite.account_name != "devstoreaccount1"  # a key of this run only
    key_file = tmp_path / "key.txt"
    key_file.write_text(azurite.account_key)
    script = write_script(tmp_path / "src", SCRIPT)
    paths = make_files(tmp_path / "in", N_FILES)
    azure_container.upload({f"in/{p.name}": p.read_bytes() for p in paths})
    files = ds.Dataset.File.from_files(f"{azure_container.url}/in/")
    output = (
        f"{azure_container.url}/results" if output_on == "blob" else tmp_path / "out"
    )
    config = ds.ParallelRunConfig(
        entry_script=str(script), mini_batch_size="2", error_threshold=-1,
        run_max_try=1, node_count=1, process_count_per_node=2,
        environment_variables={"KEY_FILE": str(key_file)},
    )
    step = ds.ParallelRunStep(
        name="secret-step", parallel_run_config=config, inputs=[files],
        output=str(output),
    )
    result = step.run()  # an embedded cluster: its workers inherit the environment

    # the runner still reads and writes blobs, with the credential of the options
    assert (result.status, result.succeeded_items, result.failed_items) == (
        "Completed", N_FILES - 2, 2
    )
    produced = (
        _blob_files(azure_container, "results")
        if output_on == "blob"
        else _local_files(tmp_path / "out")
    )
    captured = capfd.readouterr()
    produced |= {"console stdout": captured.out.encode(),
                 "console stderr": captured.err.encode()}
    for name, data in produced.items():
        for secret in _secrets(azurite):
            assert secret not in data, f"the account key is in {name}"
    # the grep looked at what the script printed and logged, on every worker
    names = [n for n in produced if n.endswith(("stdout.txt", "stderr.txt"))]
    assert len(names) == 4, sorted(produced)
    for name in names:
        text = produced[name]
        assert b"init environment:" in text and b"run environment:" in text, name
        assert b"KEY_FILE" in text, name
    stdout = b"".join(produced[n] for n in names if n.endswith("stdout.txt"))
    stderr = b"".join(produced[n] for n in names if n.endswith("stderr.txt"))
    assert stdout.count(b"key in pieces: *** end\n") == 2
    assert b"child ***\n" in stdout and b"stderr key ***\n" in stderr
    logs = [n for n in produced if n.endswith("entry_script.log")]
    assert len(logs) == 2 and all(b"logged key ***" in produced[n] for n in logs)
    errors = [n for n in produced if "/logs/user/error/" in n.replace(os.sep, "/")]
    assert errors and all(b"refused with key ***" in produced[n] for n in errors)
    if output_on == "local":
        assert any("/logs/sys/" in n for n in produced), sorted(produced)
