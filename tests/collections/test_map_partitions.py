"""``ds.map_partitions``: an entry script inside a Dask pipeline, on a real cluster.

The session's embedded cluster (``helpers.shared_client``: two worker processes)
runs every test; each scorer registers its own plugin (named after its script and
settings), so the tests' scripts never share ``init()`` state.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dask
import dask.bag as db
import dask.dataframe as dd
import pandas as pd
import pytest
from helpers import alive, markers, write_script

import daskscore as ds

pytest_plugins = ["helpers"]

FRAME_SCRIPT = """
import os

import pandas as pd

MARKER_DIR = os.environ["MARKER_DIR"]
STATE = {}


def init():
    STATE["tag"] = os.environ.get("TAG", "none")
    name = f"init-{os.getpid()}-{os.getppid()}"
    open(os.path.join(MARKER_DIR, name), "w").close()


def run(mini_batch):
    return pd.DataFrame({"id": mini_batch["id"].to_numpy(),
                         "score": mini_batch["x"].to_numpy() * 2.0,
                         "tag": STATE["tag"]})


def shutdown():
    open(os.path.join(MARKER_DIR, f"shutdown-{os.getpid()}"), "w").close()
"""

LIST_SCRIPT = """
import os

MARKER_DIR = os.environ["MARKER_DIR"]


def init():
    open(os.path.join(MARKER_DIR, f"init-{os.getpid()}"), "w").close()


def run(mini_batch):
    return [item * 10 for item in mini_batch]


def shutdown():
    open(os.path.join(MARKER_DIR, f"shutdown-{os.getpid()}"), "w").close()
"""


def _config(tmp: Path, body: str, name: str = "score.py", **config):
    src = write_script(tmp / f"src-{name}", body, name=name)
    folder = tmp / f"markers-{name}"
    folder.mkdir(exist_ok=True)
    env = {"MARKER_DIR": str(folder), **config.pop("environment_variables", {})}
    cfg = ds.ParallelRunConfig(entry_script=str(src), environment_variables=env,
                               **config)
    return cfg, folder


def _frame(n: int = 20, partitions: int = 4) -> dd.DataFrame:
    pdf = pd.DataFrame({"id": range(n), "x": [float(i) for i in range(n)],
                        "segment": [f"s{i % 3}" for i in range(n)]})
    return dd.from_pandas(pdf, npartitions=partitions, sort=False)


def _meta() -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series([], dtype="int64"),
                         "score": pd.Series([], dtype="float64"),
                         "tag": pd.Series([], dtype="str")})


def _worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def test_dataframe_in_lazy_dataframe_out_that_composes(tmp_path, shared_client):
    cfg, _ = _config(tmp_path, FRAME_SCRIPT)
    ddf = _frame()
    scores = ds.map_partitions(ddf, cfg, meta=_meta())
    assert isinstance(scores, dd.DataFrame)
    assert scores.npartitions == ddf.npartitions
    customers = dd.from_pandas(
        pd.DataFrame({"id": range(20), "segment": [f"s{i % 3}" for i in range(20)]}),
        npartitions=2)
    by_segment = scores.merge(customers, on="id").groupby("segment").score.mean()
    expected = {f"s{k}": 2.0 * sum(range(k, 20, 3)) / len(range(k, 20, 3))
                for k in range(3)}
    assert by_segment.compute().to_dict() == pytest.approx(expected)
    kept = scores.persist()
    assert kept["score"].sum().compute() == 2.0 * sum(range(20))
    kept.to_parquet(tmp_path / "scores")
    back = pd.read_parquet(tmp_path / "scores")
    assert sorted(back["id"]) == list(range(20))
    # rows keep the input's order, partition by partition
    assert list(scores.compute()["id"]) == list(range(20))


def test_bag_in_bag_out_in_input_order(tmp_path, shared_client):
    cfg, _ = _config(tmp_path, LIST_SCRIPT)
    bag = db.from_sequence(list(range(23)), partition_size=5)
    labels = ds.map_partitions(bag, cfg)
    assert isinstance(labels, db.Bag)
    assert labels.npartitions == bag.npartitions
    assert labels.compute() == [i * 10 for i in range(23)]
    # composes like any bag
    assert labels.filter(lambda v: v % 20 == 0).count().compute() == 12


def test_init_runs_once_per_worker_process_never_in_the_client(
        tmp_path, shared_client):
    cfg, folder = _config(tmp_path, FRAME_SCRIPT, environment_variables={"TAG": "t"})
    # this test's cluster, whatever client an earlier test left as the default
    with shared_client.as_current():
        scores = ds.map_partitions(_frame(40, 8), cfg)  # meta inferred on a worker
        assert set(scores.compute()["tag"]) == {"t"}
        total = ds.map_partitions(_frame(40, 8), cfg)["score"].sum().compute()
    assert total == 2.0 * sum(range(40))
    inits = markers(folder, "init")
    parents = [int(m.split("-")[1]) for m in inits]
    runners = [int(m.split("-")[0]) for m in inits]
    assert os.getpid() not in runners + parents
    workers = _worker_pids(shared_client)
    # each runner is a child of a worker process, at most one per worker
    assert set(parents) <= workers
    assert len(parents) == len(set(parents))
    # the client never imported the script
    assert "score" not in sys.modules


RETRY_SCRIPT = """
import os

import pandas as pd

MARKER_DIR = os.environ["MARKER_DIR"]


def init():
    pass


def run(mini_batch):
    first = int(mini_batch["id"].iloc[0])
    flag = os.path.join(MARKER_DIR, f"failed-{first}")
    if not os.path.exists(flag):
        open(flag, "w").close()
        raise RuntimeError(f"first try of the partition starting at {first}")
    return pd.DataFrame({"id": mini_batch["id"].to_numpy()})
"""


def test_retries_give_each_row_exactly_once(tmp_path, shared_client):
    cfg, folder = _config(tmp_path, RETRY_SCRIPT, run_max_try=2)
    meta = pd.DataFrame({"id": pd.Series([], dtype="int64")})
    got = ds.map_partitions(_frame(30, 5), cfg, meta=meta).compute()
    assert list(got["id"]) == list(range(30))
    assert len(markers(folder, "failed")) == 5  # every partition failed once


HANG_SCRIPT = """
import os
import time

MARKER_DIR = os.environ["MARKER_DIR"]


def init():
    open(os.path.join(MARKER_DIR, f"init-{os.getpid()}"), "w").close()


def run(mini_batch):
    flag = os.path.join(MARKER_DIR, "hung")
    if 0 in mini_batch and not os.path.exists(flag):
        with open(flag, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(3600)
    return [item + 1 for item in mini_batch]
"""


def test_a_hung_run_is_stopped_and_tried_again(tmp_path, shared_client):
    cfg, folder = _config(tmp_path, HANG_SCRIPT, run_invocation_timeout=2,
                          run_max_try=2)
    bag = db.from_sequence(list(range(8)), partition_size=4)
    assert ds.map_partitions(bag, cfg).compute() == [i + 1 for i in range(8)]
    hung = int((folder / "hung").read_text())
    assert not alive([hung])  # really stopped
    # the runner was restarted: init() ran again in a new process
    assert len(markers(folder, "init")) >= 2


FAIL_SCRIPT = """
def init():
    pass


def run(mini_batch):
    if 7 in mini_batch:
        raise ValueError("cannot score item 7")
    return list(mini_batch)
"""


def test_a_partition_out_of_tries_raises_minibatcherror_with_the_users_line(
        tmp_path, shared_client):
    cfg, _ = _config(tmp_path, "import os\n" + FAIL_SCRIPT, name="failing.py",
                     run_max_try=2)
    bag = db.from_sequence(list(range(12)), partition_size=4)
    with pytest.raises(ds.MiniBatchError) as info:
        ds.map_partitions(bag, cfg).compute()
    error = info.value
    assert isinstance(error, ds.DaskScoreError)
    assert error.partition == 1
    assert error.tries == 2
    text = str(error)
    assert "partition 1 failed after 2 tries" in text
    assert "ValueError: cannot score item 7 (at failing.py:9)" in text
    assert "\n" not in text
    assert "failing.py" in error.details


def test_meta_is_inferred_on_a_worker(tmp_path, shared_client):
    cfg, folder = _config(tmp_path, FRAME_SCRIPT, name="infer.py")
    scores = ds.map_partitions(_frame(), cfg)
    # meta came from a run() on a worker: the script's columns and dtypes
    assert list(scores.columns) == ["id", "score", "tag"]
    assert str(scores.dtypes["score"]) == "float64"
    runners = [int(m.split("-")[0]) for m in markers(folder, "init")]
    assert runners and os.getpid() not in runners
    assert "infer" not in sys.modules


def test_two_scripts_in_one_graph_keep_their_own_state(tmp_path, shared_client):
    a_cfg, _ = _config(tmp_path, FRAME_SCRIPT, name="alpha.py",
                       environment_variables={"TAG": "alpha"})
    b_cfg, _ = _config(tmp_path, FRAME_SCRIPT, name="beta.py",
                       environment_variables={"TAG": "beta"})
    a = ds.map_partitions(_frame(), a_cfg, meta=_meta())
    b = ds.map_partitions(_frame(), b_cfg, meta=_meta())
    joined = a.merge(b, on="id", suffixes=("_a", "_b"))
    got = joined.compute()
    assert set(got["tag_a"]) == {"alpha"} and set(got["tag_b"]) == {"beta"}
    assert len(got) == 20
    # readable task names: the script's name
    names = {k[0] if isinstance(k, tuple) else k for k in a.__dask_keys__()}
    assert all(str(n).startswith("alpha.py-") for n in names)
    keys = b.__dask_keys__()
    assert [k[1] for k in keys] == list(range(b.npartitions))


def test_scorer_release_runs_shutdown(tmp_path, shared_client):
    cfg, folder = _config(tmp_path, LIST_SCRIPT, name="closing.py")
    bag = db.from_sequence(list(range(10)), partition_size=2)
    with ds.scorer(cfg) as score:
        assert score(bag).compute() == [i * 10 for i in range(10)]
        assert markers(folder, "shutdown") == []
    inits = markers(folder, "init")
    assert inits
    assert markers(folder, "shutdown") == inits


def test_a_non_collection_gets_a_clear_error(tmp_path, shared_client):
    cfg, _ = _config(tmp_path, LIST_SCRIPT, name="plain.py")
    with pytest.raises(ds.ConfigError, match="a dask DataFrame"):
        ds.map_partitions([1, 2, 3], cfg)


def test_compute_inside_dask_compute_with_both_kinds(tmp_path, shared_client):
    cfg, _ = _config(tmp_path, LIST_SCRIPT, name="both.py")
    bag = ds.map_partitions(db.from_sequence([1, 2, 3], npartitions=2), cfg)
    total = bag.sum()
    got_bag, got_total = dask.compute(bag, total)
    assert list(got_bag) == [10, 20, 30] and got_total == 60


KILL_SCRIPT = """
import os
import signal

MARKER_DIR = os.environ["MARKER_DIR"]


def init():
    pass


def run(mini_batch):
    flag = os.path.join(MARKER_DIR, "killed")
    if 0 in mini_batch and not os.path.exists(flag):
        with open(flag, "w") as f:
            f.write(str(os.getppid()))
        os.kill(os.getppid(), signal.SIGKILL)  # the worker process dies mid-run
    return [item * 3 for item in mini_batch]
"""


def test_a_worker_that_dies_loses_and_duplicates_nothing(tmp_path):
    from distributed import Client, LocalCluster

    cfg, folder = _config(tmp_path, KILL_SCRIPT, name="killer.py")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        bag = db.from_sequence(list(range(12)), partition_size=3)
        got = ds.map_partitions(bag, cfg, client=client).compute()
        assert got == [i * 3 for i in range(12)]
        killed = int((folder / "killed").read_text())
        assert killed not in _worker_pids(client)


def test_step_only_settings_are_ignored(tmp_path, shared_client):
    cfg, _ = _config(tmp_path, LIST_SCRIPT, name="stepless.py", node_count=5,
                     process_count_per_node=3, output_action="summary_only",
                     error_threshold=0, mini_batch_size="1MB")
    bag = db.from_sequence([1, 2, 3, 4], npartitions=2)
    assert ds.map_partitions(bag, cfg).compute() == [10, 20, 30, 40]
