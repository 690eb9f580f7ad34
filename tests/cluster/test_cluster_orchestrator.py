"""The worker running a submitted job's orchestrator is SIGKILLed mid-job.

``daskscore submit`` runs the job as one orchestrator task (``remote._orchestrate``)
on a worker. When that worker dies, Dask runs the task again on another worker and
the job resumes from the committed mini-batches. This module starts its own cluster
(node ``no``: two worker processes under a ``dask worker`` nanny, which replaces a
killed one), since it kills a worker. The job is held at a gate (see
``cluster_procs.GATE_SCRIPT``) while the worker is killed, so some mini-batches are
committed and the others are not, without relying on timing.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest
import yaml
from cluster_procs import (
    GatedJob,
    cli,
    cluster_session,
    expected_gate_lines,
    open_gate,
    read_report,
    records,
    wait_until,
    waiting_at,
)

from daskscore._protocol import orchestrator_key
from daskscore.scheduler.reaping import stale_jobs

pytest_plugins = ["cluster_procs"]

pytestmark = pytest.mark.slow

N = 12
GATE_AFTER = 4


@pytest.fixture(scope="module")
def orch_cluster(tmp_path_factory):
    with cluster_session(tmp_path_factory.mktemp("orch-cluster"), {"no": 2}) as cluster:
        yield cluster


def _orchestrator_address(client, job_id: str) -> str | None:
    """The worker the scheduler has the job's orchestrator task processing on."""
    key = orchestrator_key(job_id)

    def where(dask_scheduler=None):
        ts = dask_scheduler.tasks.get(key)
        if ts is None or ts.processing_on is None:
            return None
        return ts.processing_on.address

    return client.run_on_scheduler(where)


def _scheduler_keys(client, job_id: str) -> list[str]:
    """Keys of the job still on the scheduler (orchestrator and scoring tasks)."""

    def keys(dask_scheduler=None):
        return [str(k) for k in dask_scheduler.tasks]

    return [k for k in client.run_on_scheduler(keys) if job_id[-8:] in k]


def _plugins(client, name: str) -> dict:
    """Where a worker plugin of this name is still registered."""

    def on_worker(dask_worker=None):
        return name in dask_worker.plugins

    def on_scheduler(dask_scheduler=None):
        return name in dask_scheduler.worker_plugins

    workers = [a for a, has in client.run(on_worker).items() if has]
    return {"workers": workers, "scheduler": client.run_on_scheduler(on_scheduler)}


def _connected(client, client_id: str) -> bool:
    """Whether the scheduler still knows the client ``client_id``."""

    def known(dask_scheduler=None):
        return client_id in dask_scheduler.clients

    return client.run_on_scheduler(known)


def _state(client, job_id: str) -> dict:
    return dict(client.get_metadata(["daskscore", "jobs", job_id], default={}) or {})


class _StatusWatch:
    """Records every distinct (status, reason) the scheduler publishes, in order."""

    def __init__(self, client, job_id: str) -> None:
        self.client, self.job_id = client, job_id
        self.seen: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.stop.wait(0.05):
            try:
                state = _state(self.client, self.job_id)
            except OSError:  # the cluster is going away (a failed test)
                return
            now = (state.get("status"), state.get("reason", ""))
            if now[0] and (not self.seen or self.seen[-1] != now):
                self.seen.append(now)

    def close(self) -> list[tuple[str, str]]:
        self.stop.set()
        self.thread.join(30)
        return self.seen


@pytest.fixture(scope="module")
def orchestrator_killed(orch_cluster, tmp_path_factory):
    """Submit a job, SIGKILL the worker running its orchestrator, let it finish."""
    tmp = tmp_path_factory.mktemp("orchestrator-kill")
    gated = GatedJob.make(tmp, N, GATE_AFTER)
    env, script = gated.env, gated.script
    job = tmp / "job.yaml"
    settings = {
        "entry_script": script.name,
        "source_directory": "src",
        "input": ["in"],
        "output": "out",
        "mini_batch_size": "1",
        "process_count_per_node": 2,
        "environment_variables": env,
    }
    job.write_text(yaml.safe_dump(settings))
    tracker, address = orch_cluster.tracker, orch_cluster.address
    k = {"out": tmp / "out", "env": env}
    with orch_cluster.client() as client, orch_cluster.client() as watch_client:
        watch = None
        try:
            submit = cli(tracker, "submit", str(job), "--scheduler", address)
            assert submit.returncode == 0, (submit.stdout, submit.stderr)
            job_id = k["job_id"] = submit.stdout.strip().splitlines()[0]
            watch = _StatusWatch(watch_client, job_id)
            # both runners hold a mini-batch at the gate; those before it are
            # committed, and no other commits until the gate opens
            wait_until(
                lambda: waiting_at(env["GATE_FILE"]) >= 2,
                120,
                "both workers to hold a mini-batch at the gate",
            )
            k["committed"] = records(tmp / "out")
            k["status_before"] = cli(tracker, "status", job_id, "--scheduler", address)
            k["runners_before"] = tracker.runner_pids()
            victim_address = _orchestrator_address(client, job_id)
            assert victim_address, "the orchestrator task is not processing anywhere"
            victim = k["victim"] = client.run(os.getpid)[victim_address]
            os.kill(victim, signal.SIGKILL)

            # Dask runs the orchestrator again on a live worker (the other one, or
            # the nanny's replacement for the killed one)
            def moved():
                where = _orchestrator_address(client, job_id)
                return where if where and where != victim_address else None

            wait_until(moved, 120, "the orchestrator to be run again")
            k["status_after_kill"] = cli(
                tracker, "status", job_id, "--scheduler", address
            )
            # once the scheduler dropped the dead orchestrator's client (and with it
            # the tasks it had submitted), a job starting on this cluster
            # (Job._reap_stale_jobs) must not take this one for abandoned
            owner = _state(client, job_id)["client_id"]
            wait_until(
                lambda: not _connected(client, owner),
                60,
                "the scheduler to drop the dead orchestrator's client",
            )
            k["stale_after_kill"] = client.run_on_scheduler(stale_jobs)
            k["keys_after_kill"] = _scheduler_keys(client, job_id)
            orch_cluster.wait_for_workers(2)
            k["plugins_after_kill"] = _plugins(client, f"daskscore-{job_id}")
            open_gate(env)
            k["waited"] = cli(
                tracker, "wait", job_id, "--scheduler", address, timeout=240
            )
            k["status_end"] = cli(tracker, "status", job_id, "--scheduler", address)
        finally:
            open_gate(env)
            if watch is not None:
                watch.close()
        k["seen"] = watch.seen
        k["final_state"] = _state(client, job_id)
        k["plugins_end"] = _plugins(client, f"daskscore-{job_id}")
        k["keys_end"] = _scheduler_keys(client, job_id)
    # the runners of the killed worker (their parent) and of the job go away
    k["victim_runners"] = [
        runner for runner, worker in gated.inits().items() if worker == victim
    ]
    try:
        wait_until(lambda: not tracker.runner_pids(), 60, "the runners to exit")
    except AssertionError:
        pass
    k["runners_left"] = tracker.runner_pids()
    return k


def _tries(output: Path) -> list[dict[str, str]]:
    with open(output / "logs" / "processed_mini-batches.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_orchestrator_killed_job_completes(orchestrator_killed):
    k = orchestrator_killed
    assert k["committed"] and len(k["committed"]) < N
    waited = k["waited"]
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    assert waited.stdout.startswith("Completed: ")
    assert f"{N}/{N} mini-batches (0 failed), {N} items succeeded" in waited.stdout
    assert k["final_state"]["status"] == "Completed"
    assert k["final_state"]["reason"] == ""
    report = read_report(k["out"])
    assert report["status"] == "Completed", report["reason"]
    assert (report["succeeded_items"], report["failed_items"]) == (N, 0)


def test_orchestrator_killed_every_item_once_in_order(orchestrator_killed):
    output = orchestrator_killed["out"] / "parallel_run_step.txt"
    assert output.read_text().splitlines() == expected_gate_lines(N)


def test_orchestrator_killed_resumes_from_committed_mini_batches(orchestrator_killed):
    k = orchestrator_killed
    report = read_report(k["out"])
    # the second orchestrator found at least what was committed at the kill
    assert len(k["committed"]) <= report["resumed_mini_batches"] < N
    tries = _tries(k["out"])
    done = Counter(int(r["mini_batch_id"]) for r in tries if r["status"] == "RUN_DONE")
    assert set(done) == set(range(N))
    # what was committed before the kill was not scored again
    scored = Counter(
        int(name.split("-")[0]) for name in os.listdir(k["env"]["TOKEN_DIR"])
    )
    for index in k["committed"]:
        assert done[index] == 1, (index, tries)
        assert scored[index] == 1, (index, scored)
    # the mini-batch the killed worker held at the gate shows its lost try
    assert report["lost_tries"] >= 1


def test_orchestrator_killed_status_stays_sensible(orchestrator_killed):
    k = orchestrator_killed
    job_id = k["job_id"]
    for proc in (k["status_before"], k["status_after_kill"]):
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert proc.stdout.startswith(f"{job_id}: Running, "), proc.stdout
        assert f"/{N} mini-batches" in proc.stdout
    assert k["status_end"].returncode == 0, k["status_end"].stderr
    assert k["status_end"].stdout.startswith(f"{job_id}: Completed, ")
    # never Failed in between (e.g. while the orchestrator was restarting)
    assert job_id not in k["stale_after_kill"]
    statuses = [status for status, _ in k["seen"]]
    assert "Failed" not in statuses, k["seen"]
    assert statuses[-1] == "Completed", k["seen"]


def test_orchestrator_killed_its_tasks_go_and_its_plugin_is_taken_over(
    orchestrator_killed,
):
    """What the dead orchestrator left on the cluster, before the job resumed.

    Its scoring tasks belonged to the client on the dead worker: the scheduler
    dropped them with that client (the one running on the other worker cannot be
    stopped; it ends at the gate and commits its mini-batch once). Its plugin stays
    registered, so the nanny's replacement worker loads the script too; the second
    orchestrator registers it again under the same name, which replaces it.
    """
    k = orchestrator_killed
    assert k["keys_after_kill"] == [orchestrator_key(k["job_id"])]
    assert k["plugins_after_kill"]["scheduler"]
    assert len(k["plugins_after_kill"]["workers"]) == 2


def test_orchestrator_killed_leaves_nothing_behind(orchestrator_killed):
    k = orchestrator_killed
    assert k["runners_before"]
    # none of the job's runners is left: not the killed worker's (re-parented
    # when it died), nor those of the workers the job ended on
    assert k["victim_runners"]
    assert not k["runners_left"], k["runners_left"]
    # no worker (nor the scheduler, for workers joining later) keeps the job's
    # plugin, and none of its tasks stays on the scheduler
    assert k["plugins_end"] == {"workers": [], "scheduler": False}
    assert k["keys_end"] == []
