"""Tables on blob storage, an output emulator that dies mid-job, streamed uploads.

Real Azurite processes and a real multi-process Dask cluster:

- CSV and JSON-lines inputs split into byte ranges give the same collected bytes
  and counts from ``abfs://``, ``az://`` and path-style URLs (http, and https
  through ``daskscore run``) as from local files; multi-line CSV is read whole;
- when the emulator holding the output (and the logs) dies mid-job, the user gets
  one clear line naming the output URL (Python API and ``daskscore run``), nothing
  keeps writing afterwards, and running the step again once it is back completes
  with every row exactly once, keeping what was committed;
- the collected file is uploaded block by block (Azurite's debug log shows the
  Put Block requests and the closing Put Block List) and the per-mini-batch parts
  straight to their final blob names, and the account key never shows up in
  anything a failed run left behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest
from azurite import AzureContainer, issued_secrets, start_azurite
from helpers import make_files, make_step, write_script

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(300)

def _assert_no_secret(texts: dict[str, bytes | str]) -> None:
    """No key of any emulator of this session (random keys) is in ``texts``."""
    assert texts, "the grep must look at something"
    secrets = issued_secrets()
    assert secrets, "no emulator was started: the grep would prove nothing"
    for name, text in texts.items():
        data = text if isinstance(text, bytes) else text.encode()
        for secret in secrets:
            assert secret.encode() not in data, f"the account key is in {name}"


def _blob_tree(fs, root: str) -> dict[str, bytes]:
    """Every blob below ``container/prefix``, by path relative to it."""
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in sorted(fs.find(root))}


def _tries(rows: bytes | str) -> list[dict[str, str]]:
    text = rows.decode() if isinstance(rows, bytes) else rows
    return list(csv.DictReader(io.StringIO(text)))


# -- CSV and JSON lines read from blob storage by byte range ----------------------

# The columns must be the input's (a lost header shows), and a mini-batch must come
# from one file; batch_rows makes the mini-batch boundaries part of the output.
TABLE_SCRIPT = """
COLUMNS = ["id", "src", "x", "text"]

def init():
    pass

def run(mini_batch):
    if list(mini_batch.columns) != COLUMNS:
        raise ValueError(f"unexpected columns {list(mini_batch.columns)}")
    if mini_batch["src"].nunique() != 1:
        raise ValueError("a mini-batch spans two files")
    out = mini_batch[["id", "src", "text"]].copy()
    out["batch_rows"] = len(mini_batch)
    return out
"""


def _frame(src: str, start: int, n: int, newlines: bool = False) -> pd.DataFrame:
    ids = range(start, start + n)
    if newlines:  # quoted fields with line ends, commas and quotes inside
        text = [f'line one of {i}\nline two, "q{i % 5}"\r\nthree' for i in ids]
    else:
        text = [f'row {i}, quoted "{i % 7}" and é' for i in ids]
    return pd.DataFrame(
        {"id": ids, "src": src, "x": [i * 0.25 for i in ids], "text": text}
    )


def _remote_step(script: Path, dataset, output: str, options: dict, **config):
    cfg = ds.ParallelRunConfig(entry_script=str(script), **config)
    return ds.ParallelRunStep(
        name="azure-table",
        parallel_run_config=cfg,
        inputs=[dataset],
        output=output,
        storage_options=options,
    )


def _check_same_job(
    local,
    local_out: Path,
    remote,
    produced: dict[str, bytes],
    name: str,
    frames: list[pd.DataFrame],
) -> None:
    """Same collected bytes, counts and mini-batches; every row once, in order."""
    expected = pd.concat(frames, ignore_index=True)
    n = len(expected)
    assert (local.status, remote.status) == ("Completed", "Completed"), remote.reason
    for result in (local, remote):
        assert (result.total_items, result.succeeded_items, result.failed_items) == (
            n,
            n,
            0,
        )
    assert remote.mini_batches == local.mini_batches
    assert produced[name] == (local_out / name).read_bytes()
    got = remote.to_dask_dataframe().compute().reset_index(drop=True)
    assert got["id"].tolist() == expected["id"].tolist()
    assert got["text"].tolist() == expected["text"].tolist()
    local_tries = _tries(
        (local_out / "logs" / "processed_mini-batches.csv").read_bytes()
    )
    remote_tries = _tries(produced["logs/processed_mini-batches.csv"])
    assert [(r["mini_batch_id"], r["items"], r["status"]) for r in remote_tries] == [
        (r["mini_batch_id"], r["items"], "RUN_DONE") for r in local_tries
    ]


def test_csv_byte_ranges_from_blob_storage_in_every_url_form(
    tmp_path, azure_container, shared_client
):
    """Split CSV files (and one with quoted line ends) read from abfs, az, path-style.

    The quoted line ends sit in a file smaller than a mini-batch: the engine reads
    it whole. A bigger such file needs ``support_multi_line=True`` (see
    test_multi_line_csv_from_blob_storage_is_read_whole).
    """
    script = write_script(tmp_path / "src", TABLE_SCRIPT)
    frames = [
        _frame("a", 0, 1500),
        _frame("b", 1500, 700),
        _frame("c", 2200, 30, newlines=True),
    ]
    table = tmp_path / "table"
    table.mkdir()
    for frame, name in zip(frames, ("a.csv", "b.csv", "c.csv")):
        frame.to_csv(table / name, index=False)
    azure_container.upload(
        {f"table/{p.name}": p.read_bytes() for p in sorted(table.iterdir())}
    )
    config = {"mini_batch_size": "8KB", "append_row_file_name": "rows.csv"}
    local_out = tmp_path / "out-local"
    local = make_step(
        script,
        ds.Dataset.Tabular.from_delimited_files(str(table / "*.csv")),
        local_out,
        **config,
    ).run(client=shared_client)
    assert local.mini_batches > 10  # a and b are split into many byte ranges

    azurite = azure_container.azurite
    name = azure_container.name
    forms = {
        "abfs": (f"abfs://{name}", azure_container.storage_options),
        "az": (f"az://{name}", azure_container.storage_options),
        "path-style": (
            f"{azurite.endpoint}/{name}", {"account_key": azurite.account_key}
        ),
    }
    fs = azure_container.fs()
    for form, (base, options) in forms.items():
        dataset = ds.Dataset.Tabular.from_delimited_files(
            f"{base}/table/*.csv", storage_options=options
        )
        remote = _remote_step(
            script, dataset, f"{base}/out-{form}/", options, **config
        ).run(client=shared_client)
        assert remote.output_file == f"abfs://{name}/out-{form}/rows.csv", form
        produced = _blob_tree(fs, f"{name}/out-{form}")
        _check_same_job(local, local_out, remote, produced, "rows.csv", frames)


def test_json_lines_byte_ranges_from_blob_storage(
    tmp_path, azure_container, shared_client
):
    """JSON lines split into byte ranges, escaped line ends in strings; Parquet out."""
    script = write_script(tmp_path / "src", TABLE_SCRIPT)
    frames = [_frame("a", 0, 900, newlines=True), _frame("b", 900, 100)]
    table = tmp_path / "table"
    table.mkdir()
    for frame, name in zip(frames, ("a.jsonl", "b.jsonl")):
        frame.to_json(table / name, orient="records", lines=True)
    azure_container.upload(
        {f"table/{p.name}": p.read_bytes() for p in sorted(table.iterdir())}
    )
    config = {"mini_batch_size": "10KB", "append_row_file_name": "rows.parquet"}
    local_out = tmp_path / "out-local"
    local = make_step(
        script,
        ds.Dataset.Tabular.from_json_lines_files(str(table / "*.jsonl")),
        local_out,
        **config,
    ).run(client=shared_client)
    assert local.mini_batches > 4  # a is split into several byte ranges

    options = azure_container.storage_options
    dataset = ds.Dataset.Tabular.from_json_lines_files(
        f"{azure_container.url}/table/*.jsonl", storage_options=options
    )
    remote = _remote_step(
        script, dataset, f"{azure_container.url}/out/", options, **config
    ).run(client=shared_client)
    produced = _blob_tree(azure_container.fs(), f"{azure_container.name}/out")
    _check_same_job(local, local_out, remote, produced, "rows.parquet", frames)


def test_cli_csv_job_on_an_https_path_style_endpoint(tmp_path, shared_client):
    """``daskscore run`` with ``https://127.0.0.1:PORT/<account>/...`` input
    and output (a private endpoint by IP, over TLS): same bytes as a local run.

    The CLI's processes trust the test CA through ``SSL_CERT_FILE``; this pytest
    process sets up and reads back the blobs with the synchronous SDK.
    """
    from certs import issue, make_ca
    from cluster_procs import ProcessTracker, cli

    script = write_script(tmp_path / "src", TABLE_SCRIPT)
    frames = [_frame("a", 0, 1500), _frame("c", 1500, 30, newlines=True)]
    table = tmp_path / "table"
    table.mkdir()
    for frame, name in zip(frames, ("a.csv", "c.csv")):
        frame.to_csv(table / name, index=False)
    config = {"mini_batch_size": "8KB", "append_row_file_name": "rows.csv"}
    local_out = tmp_path / "out-local"
    local = make_step(
        script,
        ds.Dataset.Tabular.from_delimited_files(str(table / "*.csv")),
        local_out,
        **config,
    ).run(client=shared_client)

    ca_key, ca_cert, ca = make_ca(tmp_path, "outputs-test-ca")
    emulator = start_azurite(
        tls={"ca": ca, **issue(tmp_path, "azurite", ca_key, ca_cert)}
    )
    tracker = ProcessTracker(tmp_path / "procs")
    try:
        assert emulator.endpoint.startswith("https://127.0.0.1:")
        with emulator.service_client() as service:
            container = service.get_container_client("tables")
            container.create_container()
            for path in sorted(table.iterdir()):
                container.upload_blob(f"table/{path.name}", path.read_bytes())
            base = f"{emulator.endpoint}/tables"
            options = {"account_key": emulator.account_key}
            job = tmp_path / "job.yaml"
            job.write_text(
                json.dumps(  # YAML is a superset of JSON
                    {
                        "entry_script": str(script),
                        "input": [f"{base}/table/*.csv"],
                        "output": f"{base}/out/",
                        "process_count_per_node": 2,
                        "storage_options": options,
                        "output_storage_options": options,
                        **config,
                    }
                )
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
            env.update({"SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca})
            done = cli(tracker, "run", str(job), "--no-progress", env=env)
            assert done.returncode == 0, done.stderr[-3000:]
            n = sum(len(f) for f in frames)
            assert f"Completed: {n} of {n} items succeeded" in done.stdout
            produced = {
                blob.name: container.download_blob(blob.name).readall()
                for blob in container.list_blobs(name_starts_with="out/")
            }
        assert produced["out/rows.csv"] == (local_out / "rows.csv").read_bytes()
        remote_tries = _tries(produced["out/logs/processed_mini-batches.csv"])
        assert len(remote_tries) == local.mini_batches > 5
        assert {r["status"] for r in remote_tries} == {"RUN_DONE"}
        _assert_no_secret(produced | {"stdout": done.stdout, "stderr": done.stderr})
    finally:
        left = tracker.stop_all()
        emulator.stop()
    assert left == []


def test_multi_line_csv_from_blob_storage_is_read_whole(
    tmp_path, azure_container, shared_client
):
    """``support_multi_line=True``: quoted line breaks in files bigger than a
    mini-batch; each file is one mini-batch, read whole, same bytes as local.

    (Without it, planning sees the quoted line breaks and reads such a file
    whole too, with a warning; ranges cut inside quoted values fail as
    READ_ERROR: ``test_step_tabular.py``.)
    """
    script = write_script(tmp_path / "src", TABLE_SCRIPT)
    frames = [_frame("a", 0, 600, newlines=True), _frame("b", 600, 300, newlines=True)]
    table = tmp_path / "table"
    table.mkdir()
    for frame, name in zip(frames, ("a.csv", "b.csv")):
        frame.to_csv(table / name, index=False)
    assert (table / "a.csv").stat().st_size > 4 * 4096  # several mini-batches
    azure_container.upload(
        {f"table/{p.name}": p.read_bytes() for p in sorted(table.iterdir())}
    )
    config = {"mini_batch_size": "4KB", "append_row_file_name": "rows.csv"}
    local_out = tmp_path / "out-local"
    local = make_step(
        script,
        ds.Dataset.Tabular.from_delimited_files(
            str(table / "*.csv"), support_multi_line=True
        ),
        local_out,
        **config,
    ).run(client=shared_client)
    dataset = ds.Dataset.Tabular.from_delimited_files(
        f"{azure_container.url}/table/*.csv",
        storage_options=azure_container.storage_options,
        support_multi_line=True,
    )
    remote = _remote_step(
        script,
        dataset,
        f"{azure_container.url}/out/",
        azure_container.storage_options,
        **config,
    ).run(client=shared_client)
    assert remote.mini_batches == 2
    produced = _blob_tree(azure_container.fs(), f"{azure_container.name}/out")
    _check_same_job(local, local_out, remote, produced, "rows.csv", frames)


# -- the emulator holding the output dies mid-job ----------------------------------

# kill_emulator() stops the output's Azurite once, from inside the job. SIGTERM
# first, so that it saves what it acknowledged (Azurite keeps its blob index in
# memory and writes it every 5 s; Azure loses no acknowledged write), then SIGKILL
# once it says so: from then on every request is refused, like a crashed service.
KILL_PRELUDE = """
import os
import signal
import time

def kill_emulator():
    try:
        os.close(os.open(KILLED, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # another process (or an earlier run) killed it
        return
    pid = int(open(PID_FILE).read())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(EMULATOR_LOG, errors="replace") as f:
            if "successfully closed" in f.read():
                break
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
"""


def _killer_script(tmp_path: Path, emulator, body: str) -> Path:
    pid_file = tmp_path / "azurite.pid"
    pid_file.write_text(str(emulator.pid))
    settings = (
        f"PID_FILE = {str(pid_file)!r}\n"
        f"KILLED = {str(tmp_path / 'killed')!r}\n"
        f"EMULATOR_LOG = {str(emulator.location / 'azurite.log')!r}\n"
    )
    return write_script(
        tmp_path / "src", settings + KILL_PRELUDE + textwrap.dedent(body)
    )


def _records(fs, root: str) -> dict[str, bytes]:
    """The committed records (``NNNNNNNNN.json``) of an output on blob storage."""
    paths = fs.find(f"{root}/.daskscore/records")
    return {p.rsplit("/", 1)[-1]: fs.cat_file(p) for p in paths if p.endswith(".json")}


@pytest.mark.slow
def test_output_emulator_killed_mid_job_then_resume(
    tmp_path, shared_client, caplog, capfd
):
    """Output on an Azurite that dies while mini-batch 3 runs; resume once it is back.

    The job ends at once with one line naming the output URL, and leaves nothing
    running that could write into the output later. Running the same step again
    (resume: the failed run recorded no failure, it could not write) keeps every
    committed mini-batch as it was and scores the others: every item once.
    """
    data = tmp_path / "azurite-data"
    emulator = start_azurite(location=data)
    port = emulator.port
    try:
        emulator.service_client().create_container("jobs")
        script = _killer_script(
            tmp_path,
            emulator,
            """
            def init():
                pass

            def run(mini_batch):
                names = [os.path.basename(p) for p in mini_batch]
                if "item-0006.txt" in names:
                    kill_emulator()
                return names
        """,
        )
        paths = make_files(tmp_path / "in", 12)
        cfg = ds.ParallelRunConfig(
            entry_script=str(script),
            mini_batch_size="2",
            error_threshold=-1,
            run_max_try=1,
        )
        step = ds.ParallelRunStep(
            name="killed-output",
            parallel_run_config=cfg,
            inputs=[ds.Dataset.File.from_files(str(tmp_path / "in"))],
            output="abfs://jobs/results/",
            storage_options=emulator.storage_options,
        )
        with pytest.raises(ds.JobError) as info:
            step.run(client=shared_client)
        message = str(info.value)
        assert not emulator.alive()
        assert "\n" not in message and "Traceback" not in message
        assert "abfs://jobs/results/" in message
        assert f"cannot reach the storage endpoint 127.0.0.1:{port}" in message
        assert "daskscore bug" not in message

        # nothing of the failed run is left to write into the output later
        def plugins(dask_worker=None):  # local: pickled by value for the workers
            return sorted(n for n in dask_worker.plugins if "killed-output" in n)

        assert shared_client.run(plugins) == dict.fromkeys(
            shared_client.scheduler_info()["workers"], []
        )
        assert not any(shared_client.processing().values())

        emulator.stop()
        emulator = start_azurite(location=data, port=port)
        fs = AzureContainer(name="jobs", azurite=emulator).fs()
        committed = _records(fs, "jobs/results")
        # the worker that ran mini-batch 3 had committed the one before it, so the
        # resume below has something to keep (resumed_mini_batches == 0 proves
        # nothing)
        assert committed, "nothing was committed before the emulator died"
        assert "000000003.json" not in committed  # its part could not be written
        assert not any(
            json.loads(r).get("failed_mini_batch") for r in committed.values()
        )

        second = step.run(client=shared_client)
        assert (second.status, second.succeeded_items, second.failed_items) == (
            "Completed",
            12,
            0,
        )
        assert second.resumed_mini_batches == len(committed)
        produced = _blob_tree(fs, "jobs/results")
        assert produced["parallel_run_step.txt"].decode().split() == [
            p.name for p in paths
        ]
        after = _records(fs, "jobs/results")
        assert sorted(after) == [f"{i:09d}.json" for i in range(6)]
        for name, record in committed.items():  # kept, not scored again
            assert after[name] == record
        captured = capfd.readouterr()
        _assert_no_secret(
            produced
            | {
                "error": message,
                "stdout": captured.out,
                "stderr": captured.err,
                "logs": caplog.text,
            }
        )
    finally:
        emulator.stop()


@pytest.mark.slow
def test_cli_when_the_output_emulator_dies_before_the_logs_are_written(tmp_path):
    """``daskscore run``: every mini-batch is committed, then the emulator dies.

    The script's ``shutdown()`` kills it, so the job cannot write the collected
    file nor ``logs/`` (they are on the dead emulator): the user still gets one
    ``daskscore: error:`` line naming the output URL and exit code 1, no
    traceback, no secret. Once the emulator is back, the same command resumes:
    nothing is scored again and the collected file and the logs are written.
    """
    from cluster_procs import ProcessTracker, cli

    data = tmp_path / "azurite-data"
    emulator = start_azurite(location=data)
    port = emulator.port
    tracker = ProcessTracker(tmp_path / "procs")
    try:
        emulator.service_client().create_container("jobs")
        _killer_script(
            tmp_path,
            emulator,
            """
            def init():
                pass

            def run(mini_batch):
                return [os.path.basename(p) for p in mini_batch]

            def shutdown():
                kill_emulator()
        """,
        )
        paths = make_files(tmp_path / "in", 9)
        job = tmp_path / "job.yaml"
        job.write_text(
            textwrap.dedent("""
            entry_script: src/score.py
            input: [in/]
            output: abfs://jobs/results/
            mini_batch_size: "3"
            process_count_per_node: 2
        """)
        )
        env = {"AZURE_STORAGE_CONNECTION_STRING": emulator.connection_string}
        args = ("run", str(job), "--no-progress")
        first = cli(tracker, *args, env=env, cwd=str(tmp_path))
        assert not emulator.alive()
        assert first.returncode == 1, first.stderr
        assert "Traceback" not in first.stderr
        [line] = [x for x in first.stderr.splitlines() if "abfs://" in x]
        assert line.startswith(
            "daskscore: error: cannot write the collected output and the logs to "
            "abfs://jobs/results/: cannot reach the storage endpoint "
            f"127.0.0.1:{port}"
        ), first.stderr
        assert line.endswith("run the same step again to resume")

        emulator.stop()
        emulator = start_azurite(location=data, port=port)
        second = cli(tracker, *args, env=env, cwd=str(tmp_path))
        assert second.returncode == 0, second.stderr
        assert "Completed: 9 of 9 items succeeded" in second.stdout
        produced = _blob_tree(emulator_fs(emulator), "jobs/results")
        assert produced["parallel_run_step.txt"].decode().split() == [
            p.name for p in paths
        ]
        report = json.loads(produced["logs/job_report.json"])
        assert report["resumed_mini_batches"] == report["mini_batches"] == 3
        assert report["tries"] == 3  # the first run's, kept
        _assert_no_secret(
            produced
            | {
                "first stdout": first.stdout,
                "first stderr": first.stderr,
                "second stdout": second.stdout,
                "second stderr": second.stderr,
            }
        )
    finally:
        left = tracker.stop_all()
        emulator.stop()
    assert left == []


def emulator_fs(emulator, container: str = "jobs"):
    """An adlfs filesystem on ``emulator`` (for reading what a job left)."""
    return AzureContainer(name=container, azurite=emulator).fs()


# -- the collected file and the parts are streamed to blob storage ---------------

N_PARTS = 8
LINE_BYTES = 1024
PART_LINES = 5120  # 5 MiB a part, 40 MiB collected
BLOCK = 4 * 2**20

BIG_SCRIPT = f"""
import os

def init():
    pass

def run(mini_batch):
    [path] = mini_batch
    n = int(open(path).read())
    line = f"{{n:04d}}" + "x" * {LINE_BYTES - 5} + "\\n"
    return [line * {PART_LINES}]
"""

# Assembles the collected file of an output again, in a fresh process, and says
# how far its peak memory grew above what it held before. VmHWM, not ru_maxrss:
# Linux carries ru_maxrss over from the forking parent (pytest, hundreds of MB),
# which would hide any growth; VmHWM starts afresh at exec and is reset here.
ASSEMBLE = """
import json, sys
from daskscore.output.assemble import assemble_output
from daskscore.output.store import StateStore

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

url, options, n, name = json.loads(sys.stdin.read())
store = StateStore(url, options)
store.fs.ls(store.parts)  # connected and imported before measuring
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak starts again from what is resident now
except OSError:
    pass
before = status("VmHWM")
assemble_output(store, range(n), "txt", name)
print(json.dumps({"peak_growth_bytes": status("VmHWM") - before}))
"""

_REQUEST = re.compile(
    r"^\S+ (\S+) info: BlobStorageContextMiddleware: RequestMethod=\w+ "
    r"RequestURL=(\S+)"
)
_OPERATION = re.compile(r"^\S+ (\S+) info: DispatchMiddleware: Operation=(\w+)")


def _operations(debug_log: Path) -> list[tuple[str, str]]:
    """(operation, blob path) of every request the emulator got, in order."""
    paths: dict[str, str] = {}
    out = []
    for line in debug_log.read_text(errors="replace").splitlines():
        if match := _REQUEST.match(line):
            paths[match.group(1)] = unquote(urlsplit(match.group(2)).path)
        elif (match := _OPERATION.match(line)) and match.group(1) in paths:
            out.append((match.group(2), paths.pop(match.group(1))))
    return out


def _writes_to(operations: list[tuple[str, str]], blob: str) -> list[str]:
    """The operations on ``container/path`` other than reading it."""
    return [
        op
        for op, path in operations
        if path.split("/", 2)[-1] == blob  # /<account>/<container>/<path>
        and not op.startswith(("Blob_Download", "Blob_GetProperties"))
    ]


def _expected_output() -> bytes:
    parts = []
    for n in range(N_PARTS):
        line = f"{n:04d}" + "x" * (LINE_BYTES - 5) + "\n"
        parts.append((line * PART_LINES + "\n").encode())
    return b"".join(parts)


def _assemble_again(emulator, options: dict, name: str, parts: int = N_PARTS) -> int:
    """Peak memory growth of a process assembling ``parts`` parts into ``name``."""
    done = subprocess.run(
        [sys.executable, "-c", ASSEMBLE],
        input=json.dumps(["abfs://big/results", options, parts, name]),
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    return json.loads(done.stdout)["peak_growth_bytes"]


@pytest.fixture(scope="module")
def big_output(tmp_path_factory, shared_client):
    """A 40 MiB collected output of 8 parts on an Azurite with its debug log."""
    tmp = tmp_path_factory.mktemp("big")
    debug_log = tmp / "azurite-debug.log"
    emulator = start_azurite(in_memory=True, debug=debug_log)
    try:
        emulator.service_client().create_container("big")
        script = write_script(tmp / "src", BIG_SCRIPT)
        make_files(tmp / "in", N_PARTS, content=str)
        options = {**emulator.storage_options, "blocksize": BLOCK}
        cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="1")
        result = ds.ParallelRunStep(
            name="big-output",
            parallel_run_config=cfg,
            inputs=[ds.Dataset.File.from_files(str(tmp / "in"))],
            output="abfs://big/results/",
            storage_options=options,
        ).run(client=shared_client)
        assert (result.status, result.succeeded_items) == ("Completed", N_PARTS)
        yield emulator, debug_log, options
    finally:
        emulator.stop()


def test_collected_output_and_parts_are_streamed_to_blob_storage(big_output):
    """Put Block after Put Block, then Put Block List; parts straight to their name.

    With ``storage_options={"blocksize": 4 MiB}`` the 40 MiB collected file goes
    up in 4 MiB blocks, and the peak memory of a process assembling it again
    does not grow with the output's size.
    """
    emulator, debug_log, options = big_output
    expected = _expected_output()
    fs = emulator_fs(emulator, "big")
    collected = fs.cat_file("big/results/parallel_run_step.txt")
    assert len(collected) == len(expected) > 40 * 2**20
    assert hashlib.sha256(collected).digest() == hashlib.sha256(expected).digest()

    operations = _operations(debug_log)
    ops = _writes_to(operations, "big/results/parallel_run_step.txt")
    blocks = ops.count("BlockBlob_StageBlock")
    assert blocks >= len(expected) // BLOCK
    assert ops[-1] == "BlockBlob_CommitBlockList" and len(ops) == blocks + 1, ops
    # every part in one request, straight to its final name: no temporary blob,
    # no copy, nothing staged on the client first
    parts = fs.ls("big/results/.daskscore/parts", detail=False)
    assert [p.rsplit("/", 1)[-1] for p in parts] == [
        f"{i:09d}.txt" for i in range(N_PARTS)
    ]
    for i in range(N_PARTS):
        part = f"big/results/.daskscore/parts/{i:09d}.txt"
        assert _writes_to(operations, part) == ["BlockBlob_Upload"], part
    assert not [op for op, _ in operations if "Copy" in op]

    # memory does not grow with the output: 30 MiB more of it (8 parts instead of
    # 2) costs the assembling process far less than 30 MiB more at its peak
    growth = _assemble_again(emulator, options, "again.txt")
    small = _assemble_again(emulator, options, "small.txt", parts=2)
    assert fs.cat_file("big/results/again.txt") == collected
    extra = len(expected) * (N_PARTS - 2) // N_PARTS
    assert growth - small < extra // 3, f"peak grew by {small}, then {growth}"
    assert growth < len(expected), f"peak memory grew by {growth} bytes"


def test_collected_output_goes_up_in_blocks_with_default_storage_options(
    big_output,
):
    """Without a ``blocksize`` option the collected file is streamed in blocks too.

    adlfs' own default (50 MiB blocks) held any smaller output whole on the
    client and uploaded it in one request; the engine picks smaller blocks.
    """
    emulator, debug_log, options = big_output
    defaults = {k: v for k, v in options.items() if k != "blocksize"}
    _assemble_again(emulator, defaults, "default.txt")
    ops = _writes_to(_operations(debug_log), "big/results/default.txt")
    blocks = ops.count("BlockBlob_StageBlock")
    assert blocks > 1 and ops == ["BlockBlob_StageBlock"] * blocks + [
        "BlockBlob_CommitBlockList"
    ], ops
    again = emulator_fs(emulator, "big").cat_file("big/results/default.txt")
    assert hashlib.sha256(again).digest() == hashlib.sha256(_expected_output()).digest()


# -- secrets: a failed run on blob storage, with a model from a blob workspace ------

MODEL_SCRIPT = """
import os
import daskscore as ds

def init():
    global weights
    where = ds.Model.get_model_path("scorer")
    weights = open(os.path.join(where, "weights.txt")).read()
    ds.EntryScript().logger.debug("model from %s", where)

def run(mini_batch):
    print("scoring", mini_batch)
    names = [os.path.basename(p) for p in mini_batch]
    if "item-0004.txt" in names:
        shown = f"; environment {dict(os.environ)}" if SHOW_ENVIRONMENT else ""
        raise ValueError(f"cannot score {names}{shown}")
    return [f"{name} {weights}" for name in names]
"""


def _failed_model_job(tmp_path, container, client, show_environment: bool):
    """A job whose model is in a workspace on blob storage; one mini-batch fails.

    Returns what it left anywhere: every blob of the container (workspace,
    output, logs/ with tracebacks and worker logs) and every local file.
    """
    options = container.storage_options
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.txt").write_text("w-1")
    ws = ds.Workspace(f"{container.url}/ws", options)
    model = ds.Model.register(ws, model_dir, "scorer")
    assert model.path.startswith(f"{container.url}/ws/")
    script = write_script(
        tmp_path / "src", f"SHOW_ENVIRONMENT = {show_environment}\n" + MODEL_SCRIPT
    )
    make_files(tmp_path / "in", 8)
    cfg = ds.ParallelRunConfig(
        entry_script=str(script),
        mini_batch_size="2",
        error_threshold=0,
        run_max_try=1,
        logging_level="DEBUG",
        environment_variables={"DASK_DASKSCORE__MODEL_CACHE": str(tmp_path / "cache")},
    )
    result = ds.ParallelRunStep(
        name="blob-model",
        parallel_run_config=cfg,
        inputs=[ds.Dataset.File.from_files(str(tmp_path / "in"))],
        output=f"{container.url}/out/",
        storage_options=options,
        models=[model],
    ).run(client=client)
    assert (result.status, result.failed_items) == ("Failed", 2), result.reason
    produced = _blob_tree(container.fs(), container.name)
    assert any(p.startswith("out/logs/user/error/") for p in produced)
    assert any(p.endswith("/entry_script.log") for p in produced)
    collected = produced["out/parallel_run_step.txt"].decode().split("\n")
    assert "item-0000.txt w-1" in collected  # get_model_path found the model
    local = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    return result, produced | local


def test_failed_run_with_a_blob_workspace_model_leaves_no_secret(
    tmp_path, azure_container, shared_client, caplog, capfd
):
    """Model registered in a workspace on blob storage, found by get_model_path
    in every worker; the job fails (a threshold) and writes its logs, tracebacks
    and worker logs to blob storage. Nothing anywhere holds the account key."""
    result, texts = _failed_model_job(tmp_path, azure_container, shared_client, False)
    captured = capfd.readouterr()
    _assert_no_secret(
        texts
        | {
            "stdout": captured.out,
            "stderr": captured.err,
            "logs": caplog.text,
            "result": repr(result),
        }
    )


def test_a_script_error_showing_its_environment_leaves_no_secret(
    tmp_path, azure_container, shared_client
):
    """The model's credentials are not in the runner's environment, and what is
    recorded of a failed try is redacted (both were found by this test)."""
    _, texts = _failed_model_job(tmp_path, azure_container, shared_client, True)
    _assert_no_secret(texts)
