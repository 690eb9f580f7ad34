"""An output folder inside an input folder is never read back as input.

``--input data/ --output data/out``: the second run of the same job must not read
its collected file, ``.daskscore/`` or ``logs/`` as input; neither may a dataset
listing ``data/`` (the dataset API does not know the step: it recognises an output
folder by daskscore's marker, ``.daskscore/manifest.json``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import counts, make_step, write_script

import daskscore as ds
from daskscore.errors import DatasetError

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(240)

N_FILES = 6
ROWS = 50

FILE_SCRIPT = """
import os
import pandas as pd

def init():
    pass

def run(mini_batch):
    return pd.DataFrame({"name": [os.path.basename(p) for p in mini_batch]})
"""

# writes its own files too: <output>/outputs/ lies inside the input folder
OUTPUTS_SCRIPT = """
import os
import pandas as pd
from daskscore import EntryScript

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    # the script's own files, in <output>/outputs/ (inside the input folder here)
    with open(os.path.join(EntryScript().output_dir, names[0] + ".seen"), "w") as f:
        f.write(" ".join(names))
    return pd.DataFrame({"name": names})
"""

TABLE_SCRIPT = """
def init():
    pass

def run(mini_batch):
    return mini_batch[["id"]]
"""


def make_inputs(data: Path) -> None:
    data.mkdir(parents=True)
    for i in range(N_FILES):
        (data / f"item-{i}.txt").write_text(f"{i}\n")


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def file_step(script: Path, data: Path, out: Path) -> ds.ParallelRunStep:
    return make_step(script, ds.Dataset.File.from_files(str(data)), out,
                     mini_batch_size="2", append_row_file_name="s.parquet")


def test_a_step_never_reads_its_output_folder_inside_its_input(
    tmp_path, shared_client, caplog
):
    script = write_script(tmp_path / "src", OUTPUTS_SCRIPT)
    data = tmp_path / "data"
    make_inputs(data)
    out = data / "out"

    first = file_step(script, data, out).run(client=shared_client)
    collected = (out / "s.parquet").read_bytes()
    with caplog.at_level(logging.INFO, logger="daskscore"):
        again = file_step(script, data, out).run(client=shared_client)

    assert (first.status, again.status) == ("Completed", "Completed")
    assert counts(first) == counts(again) == (N_FILES, N_FILES, 0)
    assert first.mini_batches == again.mini_batches == N_FILES // 2
    assert again.resumed_mini_batches == N_FILES // 2  # nothing new to score
    assert (out / "s.parquet").read_bytes() == collected
    assert "left out" in caplog.text and str(out) in caplog.text
    names = pd.read_parquet(out / "s.parquet")["name"].tolist()
    assert names == [f"item-{i}.txt" for i in range(N_FILES)]


def test_another_step_and_the_dataset_api_leave_an_output_folder_out(
    tmp_path, shared_client
):
    """``data/out`` holds a finished job: a second step into ``data/out2`` and a
    dataset over ``data/`` see the input files only (a folder with daskscore's
    marker keeps out its .daskscore/, logs/ and collected file)."""
    script = write_script(tmp_path / "src", FILE_SCRIPT)
    data = tmp_path / "data"
    make_inputs(data)
    file_step(script, data, data / "out").run(client=shared_client)
    assert {"s.parquet", "logs/job_report.json", ".daskscore/manifest.json"} <= set(
        tree(data / "out"))

    other = file_step(script, data, data / "out2").run(client=shared_client)

    assert counts(other) == (N_FILES, N_FILES, 0)
    inputs = [str(data / f"item-{i}.txt") for i in range(N_FILES)]
    assert ds.Dataset.File.from_files(str(data)).to_path() == inputs
    assert ds.Dataset.File.from_files(str(data / "**")).to_path() == inputs
    bag = ds.Dataset.File.from_files(str(data)).to_dask_bag(mini_batch_size=4)
    assert bag.npartitions == 2
    # a step's output folder named itself (a pipeline reading an earlier step's
    # collected file) still gives its collected file
    assert ds.Dataset.File.from_files(str(data / "out" / "*")).to_path() == [
        str(data / "out" / "s.parquet")]


def test_the_tabular_dataset_api_leaves_an_output_folder_out(tmp_path, shared_client):
    script = write_script(tmp_path / "src", TABLE_SCRIPT)
    data = tmp_path / "tables"
    data.mkdir()
    for i in range(3):
        pd.DataFrame({"id": range(i * ROWS, (i + 1) * ROWS)}).to_parquet(
            data / f"part-{i}.parquet")
    out = data / "out"

    def step():
        return make_step(script, ds.Dataset.Tabular.from_parquet_files(str(data)),
                         out, append_row_file_name="scored.parquet")

    first = step().run(client=shared_client)
    again = step().run(client=shared_client)
    rows = ds.Dataset.Tabular.from_parquet_files(str(data)).to_pandas_dataframe()

    assert counts(first) == counts(again) == (3 * ROWS, 3 * ROWS, 0)
    assert sorted(rows["id"]) == list(range(3 * ROWS))
    assert len(pd.read_parquet(out / "scored.parquet")) == 3 * ROWS


def test_an_input_that_is_the_output_folder_is_a_clear_error(tmp_path):
    script = write_script(tmp_path / "src", FILE_SCRIPT)
    data = tmp_path / "data"
    make_inputs(data)
    with pytest.raises(DatasetError, match="daskscore's own output") as caught:
        file_step(script, data, data).plan()
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_cli_rerun_with_its_output_inside_its_input_reads_no_own_file(tmp_path):
    """The issue's command, run twice: both exit 0 with the same counts and the
    same collected file."""
    (tmp_path / "score.py").write_text(FILE_SCRIPT)
    data = tmp_path / "data"
    make_inputs(data)
    cmd = [str(Path(sys.executable).with_name("daskscore")), "run",
           "--entry-script", "score.py", "--input", "data/", "--output", "data/out",
           "--append-row-file-name", "s.parquet", "--mini-batch-size", "2",
           "--process-count-per-node", "2"]
    # the daskscore under test, wherever this checkout is
    env = dict(os.environ, PYTHONPATH=str(Path(ds.__file__).resolve().parents[1]))
    runs = [subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                           timeout=180, env=env)]
    collected = (data / "out" / "s.parquet").read_bytes()
    runs.append(subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                               timeout=180, env=env))

    for proc in runs:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{N_FILES} of {N_FILES} items succeeded, 0 failed" in proc.stdout
    assert (data / "out" / "s.parquet").read_bytes() == collected
