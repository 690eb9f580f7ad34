"""On blob storage too, an output prefix inside an input prefix is never input."""

from __future__ import annotations

import logging

import pytest
from helpers import counts, write_script

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(240)

N_FILES = 6

SCRIPT = """
import os
import pandas as pd

def init():
    pass

def run(mini_batch):
    return pd.DataFrame({"name": [os.path.basename(p) for p in mini_batch]})
"""


def test_an_output_prefix_inside_the_input_prefix_is_never_read_back(
    tmp_path, azure_container, shared_client, caplog
):
    script = write_script(tmp_path / "src", SCRIPT)
    azure_container.upload({f"data/item-{i}.txt": b"%d\n" % i for i in range(N_FILES)})
    options = azure_container.storage_options
    data = f"{azure_container.url}/data"

    def step():
        cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="2",
                                   append_row_file_name="s.parquet")
        return ds.ParallelRunStep(
            name="own-output", parallel_run_config=cfg,
            inputs=[ds.Dataset.File.from_files(f"{data}/", storage_options=options)],
            output=f"{data}/out", storage_options=options)

    fs = azure_container.fs()
    collected = f"{azure_container.name}/data/out/s.parquet"
    first = step().run(client=shared_client)
    first_bytes = fs.cat_file(collected)
    with caplog.at_level(logging.INFO, logger="daskscore"):
        again = step().run(client=shared_client)

    assert (first.status, again.status) == ("Completed", "Completed")
    assert counts(first) == counts(again) == (N_FILES, N_FILES, 0)
    assert again.resumed_mini_batches == first.mini_batches == N_FILES // 2
    assert fs.cat_file(collected) == first_bytes
    assert "left out" in caplog.text
    # the dataset API: a folder listing and a glob see the inputs only
    inputs = [f"{data}/item-{i}.txt" for i in range(N_FILES)]
    for path in (f"{data}/", f"{data}/**"):
        listed = ds.Dataset.File.from_files(path, storage_options=options).to_path()
        assert listed == inputs, path
