"""Whole jobs on Azure Blob Storage (a real Azurite): same output bytes as local.

The FileDataset and TabularDataset jobs of the core tests run once with local
inputs and outputs and once with ``abfs://`` inputs and outputs on Azurite; the
collected output files must be byte-identical, and no file the job produced nor
anything it printed or logged may contain the account key.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from azurite import AzureContainer, free_port, start_azurite
from helpers import make_files, make_step, read_lines, write_script

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(240)

N_FILES = 23
ROWS = 400

FILE_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    return [f"{os.path.basename(p)} {open(p).read().strip()}" for p in mini_batch]
"""

TABLE_SCRIPT = """
def init():
    pass

def run(mini_batch):
    out = mini_batch[["id", "name"]].copy()
    out["y"] = mini_batch["x"] * 2
    return out
"""

def _local_tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _blob_tree(container, prefix: str) -> dict[str, bytes]:
    fs = container.fs()
    root = f"{container.name}/{prefix}"
    return {p[len(root) + 1:]: fs.cat_file(p) for p in sorted(fs.find(root))}


def _assert_no_secret(azurite, texts: dict[str, bytes | str]) -> None:
    """The emulator's key (random, this run's only) is in none of ``texts``."""
    secrets = (azurite.account_key, quote(azurite.account_key, safe=""))
    for name, text in texts.items():
        data = text if isinstance(text, bytes) else text.encode()
        for secret in secrets:
            assert secret.encode() not in data, f"the account key is in {name}"


def _run_both(client, tmp_path, container, script, local_input, remote_input,
              **config):
    """Run the step on local input/output, then on Azurite input/output."""
    local_out = tmp_path / "out-local"
    local = make_step(script, local_input, local_out, **config).run(client=client)
    cfg = ds.ParallelRunConfig(entry_script=str(script), **config)
    step = ds.ParallelRunStep(
        name="azure-step",
        parallel_run_config=cfg,
        inputs=[remote_input],
        output=f"{container.url}/results/",
        storage_options=container.storage_options,
    )
    remote = step.run(client=client)
    return local, local_out, remote


def test_file_dataset_job_on_blob_storage(
    tmp_path, azure_container, shared_client, caplog, capfd
):
    script = write_script(tmp_path / "src", FILE_SCRIPT)
    paths = make_files(tmp_path / "in", N_FILES)
    azure_container.upload({f"in/{p.name}": p.read_bytes() for p in paths})
    remote_input = ds.Dataset.File.from_files(
        f"{azure_container.url}/in/*.txt",
        storage_options=azure_container.storage_options,
    )
    with caplog.at_level(logging.DEBUG):
        local, local_out, remote = _run_both(
            shared_client, tmp_path, azure_container, script,
            ds.Dataset.File.from_files(str(tmp_path / "in")), remote_input,
            mini_batch_size="5", output_action="append_row",
        )
    assert (local.status, remote.status) == ("Completed", "Completed")
    assert (remote.total_items, remote.succeeded_items) == (N_FILES, N_FILES)
    assert remote.mini_batches == local.mini_batches == 5

    produced = _blob_tree(azure_container, "results")
    assert produced["parallel_run_step.txt"] == (
        local_out / "parallel_run_step.txt"
    ).read_bytes()
    assert {"logs/job_result.txt", "logs/job_report.json",
            "logs/processed_mini-batches.csv"} <= set(produced)
    captured = capfd.readouterr()
    _assert_no_secret(azure_container.azurite,
                      produced | {"stdout": captured.out, "stderr": captured.err,
                                  "logs": caplog.text, "result": repr(remote)})


def test_tabular_dataset_job_on_blob_storage(
    tmp_path, azure_container, shared_client, caplog, capfd
):
    script = write_script(tmp_path / "src", TABLE_SCRIPT)
    frame = pd.DataFrame({
        "id": range(ROWS),
        "x": [i * 0.25 for i in range(ROWS)],
        "name": [f"n{i:04d}" for i in range(ROWS)],
    })
    table = tmp_path / "table"
    table.mkdir()
    for part in range(2):
        frame.iloc[part * ROWS // 2:(part + 1) * ROWS // 2].to_parquet(
            table / f"part-{part}.parquet", row_group_size=50, index=False
        )
    azure_container.upload(
        {f"table/{p.name}": p.read_bytes() for p in sorted(table.iterdir())}
    )
    remote_input = ds.Dataset.Tabular.from_parquet_files(
        f"{azure_container.url}/table/",
        storage_options=azure_container.storage_options,
    )
    with caplog.at_level(logging.DEBUG):
        local, local_out, remote = _run_both(
            shared_client, tmp_path, azure_container, script,
            ds.Dataset.Tabular.from_parquet_files(str(table)), remote_input,
            mini_batch_size="1KB", output_action="append_row",
            append_row_file_name="scores.csv",
        )
    assert (local.status, remote.status) == ("Completed", "Completed")
    assert (remote.total_items, remote.succeeded_items) == (ROWS, ROWS)
    assert remote.mini_batches == local.mini_batches > 2

    produced = _blob_tree(azure_container, "results")
    assert produced["scores.csv"] == (local_out / "scores.csv").read_bytes()
    collected = remote.to_dask_dataframe().compute()
    assert list(collected["id"]) == list(range(ROWS))
    captured = capfd.readouterr()
    _assert_no_secret(azure_container.azurite,
                      produced | {"stdout": captured.out, "stderr": captured.err,
                                  "logs": caplog.text, "result": repr(remote)})


def test_blob_deleted_after_listing_fails_only_its_item(
    tmp_path, azure_container, azurite, shared_client
):
    """init() deletes a listed blob: its mini-batch reports it, the job goes on."""
    (tmp_path / "conn.txt").write_text(azurite.connection_string)
    script = write_script(tmp_path / "src", f"""
        import os
        from azure.storage.blob import BlobServiceClient

        def init():
            conn = open({str(tmp_path / "conn.txt")!r}).read()
            blob = BlobServiceClient.from_connection_string(conn).get_blob_client(
                {azure_container.name!r}, "in/item-0004.txt")
            if blob.exists():
                blob.delete_blob()

        def run(mini_batch):
            return [os.path.basename(p) for p in mini_batch]
    """)
    paths = make_files(tmp_path / "in", 7)
    azure_container.upload({f"in/{p.name}": p.read_bytes() for p in paths})
    files = ds.Dataset.File.from_files(
        f"{azure_container.url}/in/", storage_options=azure_container.storage_options
    )
    out = tmp_path / "out"
    result = make_step(script, files, out, mini_batch_size="3",
                       error_threshold=-1).run(client=shared_client)

    assert (result.status, result.total_items, result.failed_items) == (
        "Completed", 7, 1
    )
    assert (out / "parallel_run_step.txt").read_text().split() == [
        p.name for p in paths if p.name != "item-0004.txt"
    ]
    job_result = (out / "logs" / "job_result.txt").read_text()
    [line] = [x for x in job_result.splitlines() if "READ_ERROR" in x]
    assert f"{azure_container.url}/in/item-0004.txt" in line


def test_blobs_with_the_same_name_in_different_folders_stay_apart(
    tmp_path, azure_container, shared_client
):
    script = write_script(tmp_path / "src", """
        def init():
            pass

        def run(mini_batch):
            return [open(p).read().strip() for p in mini_batch]
    """)
    azure_container.upload({"in/a/0.txt": b"from a", "in/b/0.txt": b"from b"})
    files = ds.Dataset.File.from_files(
        f"{azure_container.url}/in/", storage_options=azure_container.storage_options
    )
    out = tmp_path / "out"
    make_step(script, files, out, mini_batch_size="2").run(client=shared_client)
    assert read_lines(out / "parallel_run_step.txt") == ["from a", "from b"]


# -- credentials resolved once on the client; storage errors in one line -------------

ENGINE_RESOLVE = (
    "engine: datasets/StateStore keep the user's raw storage_options; they must call "
    "daskscore.storage.resolve(url, storage_options) once on the client"
)
ENGINE_ERRORS = (
    "engine: storage errors reach the user as raw SDK text or exceptions; wrap them "
    "with daskscore.storage.describe_storage_error"
)


def _file_step(tmp_path, container, url, storage_options, output, output_options):
    script = write_script(tmp_path / "src", FILE_SCRIPT)
    paths = make_files(tmp_path / "in", 7)
    container.upload({f"in/{p.name}": p.read_bytes() for p in paths})
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="3")
    return ds.ParallelRunStep(
        name="azure-step",
        parallel_run_config=cfg,
        inputs=[ds.Dataset.File.from_files(url, storage_options=storage_options)],
        output=output,
        storage_options=output_options,
    )


@pytest.mark.parametrize("form", ["path-style url with account_key", "environment"])
def test_credential_forms_that_need_resolving_on_the_client(
    tmp_path, azure_container, azurite, shared_client, monkeypatch, form
):
    if form == "environment":  # the cluster's workers started before this
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
        base, options = azure_container.url, {}
    else:
        base = f"{azurite.endpoint}/{azure_container.name}"
        options = {"account_key": azurite.account_key}
    step = _file_step(tmp_path, azure_container, f"{base}/in/*.txt", options,
                      f"{base}/results/", options)
    result = step.run(client=shared_client)
    assert (result.status, result.succeeded_items) == ("Completed", 7)


WRONG_KEY = "A" * 86 + "=="



@pytest.mark.parametrize("case", ["input container", "input key", "input endpoint",
                                  "output container", "output key"])
def test_storage_failures_are_one_clear_line(
    tmp_path, azure_container, azurite, shared_client, case
):
    good = azure_container.storage_options
    bad = {
        "input container": good,
        "input key": {"connection_string": azurite.connection_string.replace(
            azurite.account_key, WRONG_KEY)},
        "input endpoint": {"connection_string": azurite.connection_string.replace(
            str(azurite.port), str(free_port()))},
        "output container": good,
        "output key": {"connection_string": azurite.connection_string.replace(
            azurite.account_key, WRONG_KEY)},
    }[case]
    url = f"{azure_container.url}/in/*.txt"
    output = str(tmp_path / "out")
    if case == "input container":
        url = "abfs://no-such-container/in/*.txt"
    if case == "output container":
        output = "abfs://no-such-container/results/"
    if case == "output key":
        output = f"{azure_container.url}/results/"
    expected = {
        "input container": "container 'no-such-container' does not exist",
        "input key": "access denied (AuthorizationFailure)",
        "input endpoint": "cannot reach the storage endpoint",
        "output container": "container 'no-such-container' does not exist",
        "output key": "access denied (AuthorizationFailure)",
    }[case]
    in_options = good if case.startswith("output") else bad
    out_options = bad if case.startswith("output") else None
    step = _file_step(tmp_path, azure_container, url, in_options, output, out_options)
    with pytest.raises(ds.DaskScoreError) as info:
        step.run(client=shared_client)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and "RequestId" not in message
    assert azurite.account_key not in message and WRONG_KEY not in message


def _tries(out: Path) -> dict[int, dict[str, str]]:
    """The last try of each mini-batch in ``logs/processed_mini-batches.csv``."""
    with open(out / "logs" / "processed_mini-batches.csv", newline="") as f:
        return {int(r["mini_batch_id"]): r for r in csv.DictReader(f)}


KILLER_SCRIPT = """
import os, signal

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if KILL_AT in names:  # the emulator dies mid-job
        try:
            os.kill(int(open(PID_FILE).read()), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return names
"""


def test_azurite_killed_mid_job_then_rerun_failed(tmp_path, shared_client):
    """The emulator dies while a job reads from it; a re-run completes the rest.

    Failed mini-batches are reported as READ_ERROR naming their blobs; after the
    emulator is back, ``rerun_failed=True`` (same script, same inputs) scores only
    those, and every item is in the collected output exactly once, in input order.
    """
    data = tmp_path / "azurite-data"
    emulator = start_azurite(location=data)
    port = emulator.port
    try:
        emulator.service_client().create_container("jobs")
        container = AzureContainer(name="jobs", azurite=emulator)
        # enough mini-batches after the kill that some are read after it (each
        # worker reads one mini-batch ahead)
        paths = make_files(tmp_path / "in", 24)
        container.upload({f"in/{p.name}": p.read_bytes() for p in paths})
        emulator.stop()  # flushes the emulator's database to the data folder
        emulator = start_azurite(location=data, port=port)
        (tmp_path / "azurite.pid").write_text(str(emulator.pid))
        pid_file = str(tmp_path / "azurite.pid")
        settings = f"KILL_AT = 'item-0006.txt'\nPID_FILE = {pid_file!r}\n"
        script = write_script(tmp_path / "src", settings + KILLER_SCRIPT)
        files = ds.Dataset.File.from_files(
            "abfs://jobs/in/", storage_options=container.storage_options
        )
        out = tmp_path / "out"
        step = make_step(script, files, out, mini_batch_size="2", error_threshold=-1)
        first = step.run(client=shared_client)

        assert first.status == "Completed"
        assert first.failed_items > 0 and first.failed_mini_batches > 0
        before = _tries(out)
        failed = [r for r in before.values() if r["status"] == "READ_ERROR"]
        assert len(failed) == first.failed_mini_batches
        for row in failed:  # one line naming the blobs that could not be read
            assert re.fullmatch(
                r"[12] file\(s\) cannot be read: abfs://jobs/in/item-\d{4}\.txt"
                r"(, abfs://jobs/in/item-\d{4}\.txt)?",
                row["error"],
            ), row["error"]
        committed = (out / "parallel_run_step.txt").read_text().split()
        assert "item-0006.txt" in committed and len(committed) < len(paths)

        emulator.stop()
        emulator = start_azurite(location=data, port=port)
        second = step.run(client=shared_client, rerun_failed=True)
        assert (second.status, second.failed_items) == ("Completed", 0)
        assert (out / "parallel_run_step.txt").read_text().split() == [
            p.name for p in paths
        ]
        after = _tries(out)
        assert {i: r["status"] for i, r in after.items()} == dict.fromkeys(
            before, "RUN_DONE"
        )
        for index, row in before.items():  # the others were kept, not run again
            if row["status"] == "RUN_DONE":
                assert after[index] == row
    finally:
        emulator.stop()
