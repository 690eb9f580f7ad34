"""Azure Blob Storage over a disturbed network: a real Azurite behind ``netproxy``.

The proxy (``tests/netproxy.py``) forwards every request to the emulator and
records what crossed the wire, so these tests can cut a response mid-body and
count the bytes each read fetched. Nothing is mocked: the SDK, adlfs, the
cluster and the emulator all do their real work.
"""

from __future__ import annotations

import io
import random

import pandas as pd
import psutil
import pytest
from helpers import make_step, read_report, tries_by_mini_batch, write_script
from netproxy import NetProxy, start_netproxy_process

import daskscore as ds
from daskscore import storage

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(240)

BLOB_SIZE = 1_000_000
FILE_SIZE = 20_000
N_FILES = 9

FILE_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    return [f"{os.path.basename(p)} {os.path.getsize(p)}" for p in mini_batch]
"""

TABLE_SCRIPT = """
def init():
    pass

def run(mini_batch):
    return mini_batch[["id"]]
"""


@pytest.fixture
def proxy(azurite):
    """A :class:`NetProxy` in front of the session's Azurite, stopped afterwards."""
    with NetProxy(("127.0.0.1", azurite.port)) as running:
        yield running


def _via(proxy: NetProxy, azurite) -> dict[str, str]:
    """Storage options that reach the emulator through ``proxy``."""
    endpoint = proxy.url(azurite.account_name)
    return {
        "connection_string": azurite.connection_string.replace(
            azurite.endpoint, endpoint
        )
    }


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _table(rows: int, row_groups: int) -> tuple[pd.DataFrame, bytes]:
    """A table with incompressible columns, and its Parquet bytes."""
    rng = random.Random(7)
    frame = pd.DataFrame(
        {
            "id": range(rows),
            "x": [rng.random() for _ in range(rows)],
            "name": [f"n{rng.getrandbits(64):016x}" for _ in range(rows)],
        }
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, row_group_size=rows // row_groups, index=False)
    return frame, buffer.getvalue()


# -- the tool itself -----------------------------------------------------------


def test_proxy_records_requests_and_counts_bytes(proxy, azurite, azure_container):
    fs, _ = storage.url_to_fs(azure_container.url, _via(proxy, azurite))
    data = _payload(BLOB_SIZE, 0)
    fs.pipe_file(f"{azure_container.name}/a/blob.bin", data)
    assert fs.cat_file(f"{azure_container.name}/a/blob.bin", 10, 1010) == data[10:1010]

    [put] = proxy.exchanges(method="PUT", path="*/a/blob.bin")
    [get] = proxy.exchanges(method="GET", path="*/a/blob.bin")
    assert put.path == f"/{azurite.account_name}/{azure_container.name}/a/blob.bin"
    assert put.status == 201 and put.request_bytes > BLOB_SIZE
    assert (get.status, get.range, get.response_body_bytes) == (206, (10, 1009), 1000)
    assert not get.dropped
    exchanges = proxy.exchanges()
    assert proxy.bytes_up == sum(e.request_bytes for e in exchanges)
    assert proxy.bytes_down == sum(e.response_bytes for e in exchanges)
    assert sum(c.bytes_down for c in proxy.connections) == proxy.bytes_down


def test_proxy_as_a_process_is_stopped_by_pid(azurite, azure_container, tmp_path):
    data = _payload(BLOB_SIZE, 2)
    azure_container.upload({"a/blob.bin": data})
    running = start_netproxy_process(
        f"127.0.0.1:{azurite.port}", latency="1ms", stats_path=tmp_path / "s.json"
    )
    try:
        options = {
            "connection_string": azurite.connection_string.replace(
                azurite.endpoint, running.url(azurite.account_name)
            )
        }
        fs, path = storage.url_to_fs(f"{azure_container.url}/a/blob.bin", options)
        assert fs.cat_file(path) == data
    finally:
        stats = running.stop()
    assert not psutil.pid_exists(running.pid)
    [get] = [e for e in stats["exchanges"] if e["method"] == "GET"]
    assert (get["status"], get["response_body_bytes"]) == (206, BLOB_SIZE)
    assert stats["bytes_down"] > BLOB_SIZE


# -- 1. a connection dropped mid-download is retried ------------------------------


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_download_survives_a_response_cut_mid_body(
    proxy, azurite, azure_container, tmp_path, reset
):
    data = _payload(BLOB_SIZE, 1)
    azure_container.upload({"in/big.bin": data})
    rule = proxy.drop("*/in/big.bin", times=1, after_bytes=300_000, reset=reset)
    url = f"{azure_container.url}/in/big.bin"

    [local], errors = storage.download([url], str(tmp_path), _via(proxy, azurite))

    assert errors == {}
    with open(local, "rb") as f:
        assert f.read() == data
    cut, again = proxy.exchanges(method="GET", path="*/in/big.bin")
    assert rule.matched == 1
    assert (cut.dropped, cut.response_body_bytes) == (True, 300_000)
    assert (again.dropped, again.response_body_bytes) == (False, BLOB_SIZE)


def _file_job(tmp_path, container, options, **config):
    script = write_script(tmp_path / "src", FILE_SCRIPT)
    container.upload(
        {f"in/item-{i:04d}.bin": _payload(FILE_SIZE, i) for i in range(N_FILES)}
    )
    files = ds.Dataset.File.from_files(f"{container.url}/in/", storage_options=options)
    out = tmp_path / "out"
    return make_step(script, files, out, mini_batch_size="3", **config), out


def test_file_job_with_a_dropped_download_succeeds_at_first_try(
    proxy, azurite, azure_container, tmp_path, shared_client
):
    step, out = _file_job(tmp_path, azure_container, _via(proxy, azurite))
    rule = proxy.drop("*/in/item-0004.bin", times=1, after_bytes=5_000)

    result = step.run(client=shared_client)

    assert (result.status, result.succeeded_items, result.failed_items) == (
        "Completed",
        N_FILES,
        0,
    )
    assert (out / "parallel_run_step.txt").read_text().splitlines() == [
        f"item-{i:04d}.bin {FILE_SIZE}" for i in range(N_FILES)
    ]
    tries = {
        index: [(t["try"], t["status"]) for t in rows]
        for index, rows in tries_by_mini_batch(out).items()
    }
    assert tries == {index: [("1", "RUN_DONE")] for index in range(3)}
    report = read_report(out)
    assert (report["tries"], report["failed_mini_batches"]) == (3, 0)
    # the fault really happened, and the blob was fetched again
    assert rule.matched == 1
    assert [e.dropped for e in proxy.exchanges("GET", "*/in/item-0004.bin")] == [
        True,
        False,
    ]


def test_file_job_with_a_blob_that_always_drops_reports_one_line(
    proxy, azurite, azure_container, tmp_path, shared_client
):
    step, out = _file_job(
        tmp_path, azure_container, _via(proxy, azurite), error_threshold=-1
    )
    rule = proxy.drop("*/in/item-0004.bin", times=None, after_bytes=5_000)

    result = step.run(client=shared_client)

    assert (result.status, result.succeeded_items, result.failed_items) == (
        "Completed",
        N_FILES - 1,
        1,
    )
    [row] = tries_by_mini_batch(out)[1]  # items 3-5: one try, a read error
    url = f"{azure_container.url}/in/item-0004.bin"
    assert (row["status"], row["succeeded"], row["failed"]) == ("READ_ERROR", "2", "1")
    assert row["error"] == f"1 file(s) cannot be read: {url}"
    [why] = (out / "logs" / "user" / "error").iterdir()
    assert (
        f"{url}: the connection dropped while the blob was being read (received "
        f"5,000 of {FILE_SIZE:,} bytes), on every retry; check the network"
    ) in why.read_text()
    # retried a bounded number of times, each of them cut
    gets = proxy.exchanges("GET", "*/in/item-0004.bin")
    assert 1 < len(gets) == rule.matched <= 5
    assert all(e.dropped for e in gets)


def test_parquet_job_with_a_row_group_read_cut_succeeds_at_first_try(
    proxy, azurite, azure_container, tmp_path, shared_client
):
    frame, data = _table(rows=40_000, row_groups=8)
    azure_container.upload({"t/table.parquet": data})
    script = write_script(tmp_path / "src", TABLE_SCRIPT)
    table = ds.Dataset.Tabular.from_parquet_files(
        f"{azure_container.url}/t/table.parquet", storage_options=_via(proxy, azurite)
    )
    out = tmp_path / "out"
    # the footer read on the client is shorter than this; a row-group read is not
    rule = proxy.drop("*/t/table.parquet", times=1, after_bytes=len(data) // 16)

    result = make_step(
        script, table, out, mini_batch_size="64KB", append_row_file_name="ids.csv"
    ).run(client=shared_client)

    assert (result.status, result.succeeded_items) == ("Completed", len(frame))
    assert list(pd.read_csv(out / "ids.csv")["id"]) == list(frame["id"])
    tries = tries_by_mini_batch(out)
    assert all([t["try"] for t in rows] == ["1"] for rows in tries.values())
    assert rule.matched == 1


# -- 2. tabular reads fetch their mini-batch's bytes, not the whole file ----------


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_tabular_mini_batches_read_only_their_bytes(
    proxy, azurite, azure_container, tmp_path, shared_client, kind
):
    frame, data = _table(rows=100_000, row_groups=16)
    if kind == "csv":
        data = frame.to_csv(index=False).encode()
        dataset = ds.Dataset.Tabular.from_delimited_files
    else:
        dataset = ds.Dataset.Tabular.from_parquet_files
    name = f"t/table.{kind}"
    azure_container.upload({name: data})
    script = write_script(tmp_path / "src", TABLE_SCRIPT)
    table = dataset(
        f"{azure_container.url}/{name}", storage_options=_via(proxy, azurite)
    )
    out = tmp_path / "out"

    result = make_step(
        script, table, out, mini_batch_size="256KB", append_row_file_name="ids.csv"
    ).run(client=shared_client)

    assert (result.status, result.succeeded_items) == ("Completed", len(frame))
    assert list(pd.read_csv(out / "ids.csv")["id"]) == list(frame["id"])
    assert result.mini_batches >= 8
    gets = proxy.exchanges("GET", f"*/{name}")
    fetched = [e.response_body_bytes for e in gets]
    size = len(data)
    # each request carries about one mini-batch, never the whole file ...
    assert max(fetched) < size / 4, sorted(fetched)[-5:]
    # ... and all of them together about the file, not file x mini-batches
    assert sum(fetched) < 3 * size, (sum(fetched), size, len(gets))
