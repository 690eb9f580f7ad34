"""A client passed explicitly need not be the default one.

``step.run(client=c)`` and ``ds.map_partitions(..., client=c)`` with a
``Client(..., set_as_default=False)`` (a library's own client, or a test
fixture's) score on ``c``'s cluster, never on the default client's, and also
when there is no default client at all (``step.run`` used to fail then with
"No clients found": it waited on ``default_client()``'s loop).
"""

from __future__ import annotations

import contextlib
import os

import dask.dataframe as dd
import distributed
import pandas as pd
from distributed.client import _global_clients
from helpers import file_names, make_files, make_step, write_script

import daskscore as ds
from daskscore.engine.cluster import start_embedded_cluster

pytest_plugins = ["helpers"]

SCRIPT = """
import os


def init():
    pass


def run(mini_batch):
    return [f"{os.getppid()} {os.path.basename(str(p))}" for p in mini_batch]
"""

FRAME_SCRIPT = """
import os

import pandas as pd


def init():
    pass


def run(mini_batch):
    return pd.DataFrame({"id": mini_batch["id"].to_numpy(), "worker": os.getppid()})
"""


@contextlib.contextmanager
def _no_default_client():
    """No default client at all (the session's shared_client set aside)."""
    kept = dict(_global_clients)
    _global_clients.clear()
    try:
        yield
    finally:
        _global_clients.update(kept)


def test_a_non_default_client_scores_on_its_own_cluster(tmp_path, shared_client):
    cluster = start_embedded_cluster(1, None)
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(1, timeout=120)
        ours = set(client.run(os.getpid).values())
        assert ours.isdisjoint(shared_client.run(os.getpid).values())
        with _no_default_client():
            _score_both(tmp_path, client, ours)
    finally:
        client.close()
        cluster.close()


def _score_both(tmp_path, client, ours: set[int]) -> None:
    src = write_script(tmp_path / "src", SCRIPT)
    make_files(tmp_path / "in", 4)
    step = make_step(src, ds.Dataset.File.from_files(str(tmp_path / "in")),
                     tmp_path / "out", mini_batch_size="1")
    result = step.run(client=client)
    assert result.status == "Completed", result.reason
    lines = [line for line in open(result.output_file).read().split("\n") if line]
    assert [line.split()[1] for line in lines] == file_names(4)
    assert {int(line.split()[0]) for line in lines} <= ours

    frame_src = write_script(tmp_path / "frame", FRAME_SCRIPT, name="frame.py")
    cfg = ds.ParallelRunConfig(entry_script=str(frame_src))
    ddf = dd.from_pandas(pd.DataFrame({"id": range(6)}), npartitions=2)
    meta = pd.DataFrame({"id": pd.Series([], dtype="int64"),
                         "worker": pd.Series([], dtype="int64")})
    with ds.scorer(cfg, client=client) as score:
        got = client.compute(score(ddf, meta=meta)).result()
    assert list(got["id"]) == list(range(6))
    assert set(got["worker"]) <= ours
