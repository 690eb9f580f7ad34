"""Dataset collections on Azure Blob Storage (a real Azurite).

``to_dask_bag`` downloads each mini-batch's blobs to the worker's scratch space
and gives their local paths; ``to_dask_dataframe`` reads Parquet row groups from
the blobs. Both are scored with ``ds.map_partitions`` like local inputs.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
from helpers import make_files, write_script

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(240)

FILE_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    return [f"{os.path.basename(p)} {open(p).read().strip()}" for p in mini_batch]
"""


def test_blob_files_as_a_bag_scored_in_order(tmp_path, azure_container,
                                             shared_client):
    paths = make_files(tmp_path / "in", 9)
    azure_container.upload({f"in/{p.name}": p.read_bytes() for p in paths})
    dataset = ds.Dataset.File.from_files(
        f"{azure_container.url}/in/*.txt",
        storage_options=azure_container.storage_options)
    bag = dataset.to_dask_bag(mini_batch_size=4)
    assert bag.npartitions == 3
    local = bag.compute()
    assert [os.path.basename(p) for p in local] == [p.name for p in paths]
    script = write_script(tmp_path / "src", FILE_SCRIPT)
    cfg = ds.ParallelRunConfig(entry_script=str(script))
    got = ds.map_partitions(bag, cfg).compute()
    assert got == [f"{p.name} {i}" for i, p in enumerate(paths)]


def test_blob_parquet_as_a_dataframe(tmp_path, azure_container, shared_client):
    frame = pd.DataFrame({"id": range(300), "x": [i * 0.5 for i in range(300)]})
    table = tmp_path / "t.parquet"
    frame.to_parquet(table, row_group_size=50, index=False)
    azure_container.upload({"t/t.parquet": table.read_bytes()})
    dataset = ds.Dataset.Tabular.from_parquet_files(
        f"{azure_container.url}/t/", storage_options=azure_container.storage_options)
    ddf = dataset.to_dask_dataframe(mini_batch_size="1KB")
    assert ddf.npartitions == len(dataset.plan("1KB")[0]) > 2
    assert list(ddf.compute()["id"]) == list(range(300))
