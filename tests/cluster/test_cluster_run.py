"""Core jobs on a real cluster started with ``dask scheduler`` / ``dask worker``.

The shared cluster (``cluster_procs.dask_cluster``) has two nodes: ``na`` with two
worker processes (``na-0``, ``na-1``) and ``nb`` with one (``nb-0``), all on
127.0.0.1. Jobs reach it through ``step.run(client=Client(addr))``, ``daskscore run
--scheduler`` and ``dask score run --scheduler``.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

import pytest
from cluster_procs import (
    DASKSCORE,
    cli,
    make_files,
    write_script,
)

import daskscore as ds

pytest_plugins = ["cluster_procs"]

ENV_SCRIPT = """
import os

import daskscore as ds

MARKERS = os.environ["MARKER_DIR"]


def init():
    agent = ds.EntryScript().agent_name
    with open(os.path.join(MARKERS, f"init-{os.getpid()}"), "w") as f:
        f.write(f"{agent}|{os.environ.get('GREETING', '<unset>')}")


def run(mini_batch):
    greeting = os.environ.get("GREETING", "<unset>")
    return [f"{os.path.basename(p)} {int(open(p).read()) * 2} {greeting}"
            for p in mini_batch]
"""


def _tries(output: Path) -> list[dict[str, str]]:
    with open(output / "logs" / "processed_mini-batches.csv", newline="") as f:
        return list(csv.DictReader(f))


def _init_markers(folder: Path) -> dict[int, str]:
    """pid of each runner that ran init() -> what it wrote."""
    return {int(p.name.split("-", 1)[1]): p.read_text()
            for p in folder.iterdir() if p.name.startswith("init-")}


def _node_of_agent(agent: str) -> str:
    """'host-worker-na-1' -> 'na'."""
    return agent.rsplit("-", 2)[-2]


def _step(tmp: Path, script: str, n_items: int, name: str, **config):
    src = write_script(tmp / "src", script)
    make_files(tmp / "in", n_items)
    markers = tmp / "markers"
    markers.mkdir(exist_ok=True)
    env = {"MARKER_DIR": str(markers), **config.pop("environment_variables", {})}
    cfg = ds.ParallelRunConfig(entry_script=str(src), mini_batch_size="1",
                               environment_variables=env, **config)
    return ds.ParallelRunStep(name=name, parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(tmp / "in"))],
                              output=str(tmp / "out")), markers


def test_step_run_with_client_uses_every_worker_and_env_reaches_each(
        tmp_path, dask_cluster, cluster_client):
    step, markers = _step(tmp_path, ENV_SCRIPT, 12, "cluster-env",
                          node_count=2, process_count_per_node=2,
                          environment_variables={"GREETING": "hello-cluster"})
    result = step.run(client=cluster_client)

    assert result.status == "Completed", result.reason
    assert (result.total_items, result.succeeded_items,
            result.failed_items) == (12, 12, 0)
    lines = Path(result.output_file).read_text().splitlines()
    assert lines == [f"item-{i:04d}.txt {i * 2} hello-cluster" for i in range(12)]
    inits = _init_markers(markers)
    agents = {text.split("|")[0] for text in inits.values()}
    # the script was loaded on each of the three workers, with the variable set
    assert {_node_of_agent(a) + a[-2:] for a in agents} == {"na-0", "na-1", "nb-0"}
    assert {text.split("|")[1] for text in inits.values()} == {"hello-cluster"}
    used = {row["worker"] for row in _tries(tmp_path / "out")}
    assert used <= agents
    # the cluster is the caller's: still there, with all its workers
    assert len(cluster_client.scheduler_info(n_workers=-1)["workers"]) == 3


@pytest.mark.parametrize(
    ("node_count", "per_node", "allowed_nodes", "max_workers"),
    [(1, 1, {"na"}, 1), (1, None, {"na"}, 2), (2, 1, {"na", "nb"}, 2)],
)
def test_node_count_and_process_count_restrict_the_workers_used(
        tmp_path, cluster_client, node_count, per_node, allowed_nodes, max_workers):
    step, _ = _step(tmp_path, ENV_SCRIPT, 12, "cluster-nodes",
                    node_count=node_count, process_count_per_node=per_node)
    result = step.run(client=cluster_client)

    assert result.status == "Completed", result.reason
    used = {row["worker"] for row in _tries(tmp_path / "out")}
    assert {_node_of_agent(a) for a in used} <= allowed_nodes
    assert 1 <= len(used) <= max_workers
    if per_node == 1:  # one process per node: never two workers of one node
        nodes = [_node_of_agent(a) for a in used]
        assert len(nodes) == len(set(nodes))


def test_script_is_loaded_only_on_the_workers_the_job_uses(tmp_path, cluster_client):
    """node_count=1, process_count_per_node=1: init() (the model) on one worker only.

    The other workers of the cluster are not the job's: loading the model there
    uses their memory (and time) for nothing.
    """
    step, markers = _step(tmp_path, ENV_SCRIPT, 6, "cluster-one",
                          node_count=1, process_count_per_node=1)
    result = step.run(client=cluster_client)

    assert result.status == "Completed", result.reason
    used = {row["worker"] for row in _tries(tmp_path / "out")}
    assert len(used) == 1
    loaded = {text.split("|")[0] for text in _init_markers(markers).values()}
    assert loaded == used, f"init() ran on {sorted(loaded)}, the job used {used}"


@pytest.mark.parametrize("variable, value", [
    ("DASK_DASKSCORE__WORKER_WAIT", "2s"),  # the Dask setting daskscore.worker-wait
    ("DASKSCORE_WORKER_WAIT", "2"),  # deprecated, still read for one release
])
def test_fewer_nodes_than_node_count_fails_after_the_configured_wait(
        tmp_path, dask_cluster, variable, value):
    src = write_script(tmp_path / "src", ENV_SCRIPT)
    make_files(tmp_path / "in", 3)
    out = tmp_path / "out"
    started = time.monotonic()
    proc = cli(dask_cluster.tracker, "run", "--entry-script", str(src),
               "--input", str(tmp_path / "in"), "--output", str(out),
               "--scheduler", dask_cluster.address, "--node-count", "3",
               "--env", f"MARKER_DIR={tmp_path}", "--no-progress",
               env={variable: value}, timeout=120)
    waited = time.monotonic() - started

    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    # it waited the configured 2 s before it gave up (a lower bound only: the
    # process may take any longer on a busy machine, never less)
    assert waited >= 2, f"gave up after {waited:.2f} s, before the 2 s wait"
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors and errors[-1].startswith("daskscore: error: "), proc.stderr
    message = errors[-1]
    assert "node_count=3" in message
    assert "2 node(s)" in message and "3 worker(s)" in message
    assert "after waiting 2 s" in message
    assert "daskscore.worker-wait" in message
    assert "DASK_DASKSCORE__WORKER_WAIT" in message
    deprecated = "DASKSCORE_WORKER_WAIT environment variable is deprecated"
    assert (deprecated in proc.stderr) == (variable == "DASKSCORE_WORKER_WAIT")
    assert "Traceback" not in proc.stderr
    assert not (out / ".daskscore" / "records").is_dir() or not any(
        (out / ".daskscore" / "records").iterdir())


@pytest.mark.slow
def test_daskscore_run_and_dask_score_run_on_the_cluster(tmp_path, dask_cluster):
    src = write_script(tmp_path / "src", ENV_SCRIPT)
    make_files(tmp_path / "in", 10)
    (tmp_path / "markers").mkdir()
    common = ["run", "--entry-script", str(src), "--input", str(tmp_path / "in"),
              "--mini-batch-size", "2", "--process-count-per-node", "2",
              "--scheduler", dask_cluster.address,
              "--env", f"MARKER_DIR={tmp_path / 'markers'}", "--env", "GREETING=hi"]
    plain = cli(dask_cluster.tracker, *common, "--output", str(tmp_path / "a"))
    plugin = cli(dask_cluster.tracker, *common, "--output", str(tmp_path / "b"),
                 "--no-progress", dask=True)

    for proc in (plain, plugin):
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert "Completed: 10 of 10 items succeeded" in proc.stdout
    out_a = (tmp_path / "a" / "parallel_run_step.txt").read_bytes()
    assert out_a == (tmp_path / "b" / "parallel_run_step.txt").read_bytes()
    assert out_a.decode().splitlines() == [f"item-{i:04d}.txt {i * 2} hi"
                                           for i in range(10)]
    # the CLI shows where to watch the job
    dash = dask_cluster.dashboard.split(":")[-1]
    assert f":{dash}/status" in plain.stderr, plain.stderr
    assert f":{dash}/daskscore/" in plain.stderr, plain.stderr
    help_text = cli(dask_cluster.tracker, "--help", dask=True, timeout=60)
    assert help_text.returncode == 0 and "run" in help_text.stdout
    assert os.path.basename(DASKSCORE) == "daskscore"


EXIT_SCRIPT = """
import os


def init():
    pass


def run(mini_batch):
    for path in mini_batch:
        if path.endswith("item-0003.txt"):
            os._exit(7)  # the process running run() dies, every time
    return [os.path.basename(p) for p in mini_batch]
"""


def test_run_that_kills_its_process_fails_only_its_mini_batch(tmp_path, cluster_client):
    step, _ = _step(tmp_path, EXIT_SCRIPT, 8, "cluster-exit", run_max_try=2,
                    node_count=2, process_count_per_node=2)
    result = step.run(client=cluster_client)

    assert result.status == "Completed", result.reason  # error_threshold=-1
    assert (result.succeeded_items, result.failed_items) == (7, 1)
    assert result.failed_mini_batches == 1
    rows = [r for r in _tries(tmp_path / "out") if r["mini_batch_id"] == "3"]
    assert [r["try"] for r in rows] == ["1", "2"]
    assert all(r["status"] != "RUN_DONE" for r in rows)
    assert "code 7" in rows[-1]["error"], rows[-1]
    lines = Path(result.output_file).read_text().splitlines()
    assert lines == [f"item-{i:04d}.txt" for i in range(8) if i != 3]
    # the cluster is intact: every worker is still there
    assert len(cluster_client.scheduler_info(n_workers=-1)["workers"]) == 3


# -- two jobs at once ------------------------------------------------------------------
ISOLATION_SCRIPT = """
import argparse
import os

STATE = {}


def init():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag")
    args, _ = parser.parse_known_args()
    STATE.setdefault("tags", []).append(args.tag)
    STATE["pid"] = os.getpid()
    with open(os.path.join(os.environ["MARKER_DIR"], f"init-{os.getpid()}"), "w") as f:
        f.write(f"{SCRIPT}|{args.tag}|{os.environ.get('JOB_ENV')}")


def run(mini_batch):
    return [f"{SCRIPT} {','.join(STATE['tags'])} {os.environ.get('JOB_ENV')} "
            f"{os.path.basename(p)}" for p in mini_batch]
"""


@pytest.mark.slow
def test_two_jobs_at_once_do_not_share_state_arguments_or_outputs(
        tmp_path, cluster_client):
    steps = {}
    for label in ("alpha", "beta"):
        folder = tmp_path / label
        src = write_script(folder / "src",
                           f"SCRIPT = {label!r}\n" + ISOLATION_SCRIPT.lstrip())
        make_files(folder / "in", 12, prefix=label)
        (folder / "markers").mkdir()
        cfg = ds.ParallelRunConfig(
            entry_script=str(src), mini_batch_size="1", node_count=2,
            process_count_per_node=2,
            environment_variables={"MARKER_DIR": str(folder / "markers"),
                                   "JOB_ENV": f"env-{label}"})
        steps[label] = ds.ParallelRunStep(
            name=f"iso-{label}", parallel_run_config=cfg,
            inputs=[ds.Dataset.File.from_files(str(folder / "in"))],
            output=str(folder / "out"), arguments=["--tag", f"tag-{label}"])
    results, errors = {}, []

    def go(label):
        try:
            results[label] = steps[label].run(client=cluster_client)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(label,)) for label in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a job did not finish"
    assert not errors, errors

    for label, other in (("alpha", "beta"), ("beta", "alpha")):
        result = results[label]
        assert result.status == "Completed", result.reason
        lines = Path(result.output_file).read_text().splitlines()
        assert lines == [f"{label} tag-{label} env-{label} {label}-{i:04d}.txt"
                         for i in range(12)]
        inits = _init_markers(tmp_path / label / "markers").values()
        assert inits and set(inits) == {f"{label}|tag-{label}|env-{label}"}
        out = tmp_path / label / "out"
        everything = "".join(p.read_text(errors="replace") for p in out.rglob("*")
                             if p.is_file() and p.suffix in (".txt", ".json", ".csv"))
        assert other not in everything.replace(f"iso-{label}", "")
