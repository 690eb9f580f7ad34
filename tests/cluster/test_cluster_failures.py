"""Worker and client failures on a real ``dask scheduler`` / ``dask worker`` cluster.

This module starts its own cluster (node ``nf``: two worker processes under the
``dask worker`` nannies), since it kills workers and clients. Jobs are held in
the middle by a gate (see ``cluster_procs.GATE_SCRIPT``), so what is killed is
busy for sure, without relying on timing.
"""

from __future__ import annotations

import csv
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from cluster_procs import (
    DASKSCORE,
    GATE_SCRIPT,
    GatedJob,
    StepThread,
    cli,
    cluster_session,
    expected_gate_lines,
    gate_env,
    make_files,
    open_gate,
    read_report,
    records,
    wait_until,
    waiting_at,
    write_script,
)

import daskscore as ds

pytest_plugins = ["cluster_procs"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fail_cluster(tmp_path_factory):
    with cluster_session(tmp_path_factory.mktemp("fail-cluster"), {"nf": 2}) as cluster:
        yield cluster


def _tries(output: Path) -> list[dict[str, str]]:
    with open(output / "logs" / "processed_mini-batches.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- a worker process is SIGKILLed in the middle of a job ------------------------------
N_KILL = 16


@pytest.fixture(scope="module")
def worker_killed(fail_cluster, tmp_path_factory):
    """Run a job, SIGKILL one busy worker process, let the job finish."""
    tmp = tmp_path_factory.mktemp("worker-kill")
    job = GatedJob.make(tmp, N_KILL, 4)
    env = job.env
    client = fail_cluster.client()
    thread = StepThread(job.step("kill-worker", tmp / "out"), client)
    try:
        before = client.run(os.getpid)  # worker address -> pid
        thread.start()
        # both workers hold a mini-batch at the gate (so the victim is busy)
        wait_until(lambda: len(os.listdir(env["TOKEN_DIR"])) >= 4, 120,
                   "4 items to be scored")
        wait_until(lambda: len(job.inits()) >= 2, 60, "init() on 2 workers")
        wait_until(lambda: waiting_at(env["GATE_FILE"]) >= 2, 120,
                   "both runners to wait at the gate")
        victim_address = sorted(before)[0]
        victim = before[victim_address]
        os.kill(victim, signal.SIGKILL)
        # the nanny starts a replacement worker, which loads the script again

        def replaced():
            now = {a: p for a, p in client.run(os.getpid, on_error="return").items()
                   if isinstance(p, int)}
            return len(now) == 2 and victim not in now.values() and now
        after = wait_until(replaced, 120, "a replacement worker")
        replacement = (set(after.values()) - set(before.values())).pop()
        wait_until(lambda: replacement in job.inits().values(), 120,
                   "init() on the replacement worker")
        open_gate(env)
        thread.join(timeout=240)
        assert not thread.is_alive(), "the job did not finish"
    finally:
        open_gate(env)
        thread.join(timeout=60)
        client.close()
    return {"thread": thread, "out": tmp / "out", "job": job, "before": before,
            "victim": victim, "replacement": replacement}


def test_worker_killed_mid_job_every_item_exactly_once(worker_killed):
    thread = worker_killed["thread"]
    assert thread.error is None, thread.error
    result = thread.result
    assert result.status == "Completed", result.reason
    assert (result.total_items, result.succeeded_items, result.failed_items) == (
        N_KILL, N_KILL, 0)
    lines = Path(result.output_file).read_text().splitlines()
    assert lines == expected_gate_lines(N_KILL)  # each item once, in input order
    final = {}
    for row in _tries(worker_killed["out"]):
        final[int(row["mini_batch_id"])] = row["status"]
    assert final == dict.fromkeys(range(N_KILL), "RUN_DONE")


def test_worker_killed_mid_job_init_runs_on_the_replacement(worker_killed):
    inits = worker_killed["job"].inits()
    parents = set(inits.values())
    assert set(worker_killed["before"].values()) <= parents
    assert worker_killed["replacement"] in parents
    # no runner of the killed worker outlives it
    victim_runners = [pid for pid, parent in inits.items()
                      if parent == worker_killed["victim"]]
    assert victim_runners
    for pid in victim_runners:
        wait_until(lambda pid=pid: not _alive(pid), 30, f"runner {pid} to exit")


def test_worker_killed_mid_job_report_shows_the_restart(worker_killed):
    """The job's report says that a worker was lost and its work re-run: a
    ``WORKER_DIED`` row for what the victim held (one of its ``run_max_try``
    tries, numbered from 1), counted as lost tries, and each such mini-batch
    done by a later try."""
    out = worker_killed["out"]
    tries = _tries(out)
    died = [r for r in tries if r["status"] == "WORKER_DIED"]
    assert died, tries
    assert all(int(r["try"]) >= 1 for r in died), died
    assert read_report(out)["lost_tries"] == len(died) >= 1
    for row in died:
        later = [r["status"] for r in tries
                 if r["mini_batch_id"] == row["mini_batch_id"]
                 and int(r["try"]) > int(row["try"])]
        assert later[-1:] == ["RUN_DONE"], (row, later)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- the client (daskscore run) is SIGKILLed, then run again ---------------------------
N_RESUME = 16


@pytest.fixture(scope="module")
def client_killed(fail_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client-kill")
    script = write_script(tmp / "src", GATE_SCRIPT)
    make_files(tmp / "in", N_RESUME)
    env = gate_env(tmp, 5)
    args = ["run", "--entry-script", str(script), "--input", str(tmp / "in"),
            "--mini-batch-size", "1", "--process-count-per-node", "2",
            "--scheduler", fail_cluster.address, "--no-progress",
            *[x for k, v in env.items() for x in ("--env", f"{k}={v}")]]
    tracker = fail_cluster.tracker
    proc = tracker.popen([DASKSCORE, *args, "--output", str(tmp / "out")],
                         log_name="killed-client.log")
    try:
        wait_until(lambda: len(records(tmp / "out")) >= 3, 120,
                   "3 committed mini-batches")
        runners_of_killed_job = tracker.runner_pids()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        committed_at_kill = records(tmp / "out")
        scored_at_kill = _scored(env)
    finally:
        open_gate(env)
    again = cli(tracker, *args, "--output", str(tmp / "out"))
    scored_after_resume = _scored(env)  # before the reference run adds its own
    # the same job, uninterrupted, into another folder (through the Python API)
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="1",
                               process_count_per_node=2, environment_variables=env)
    step = ds.ParallelRunStep(name="score", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(tmp / "in"))],
                              output=str(tmp / "reference"))
    with fail_cluster.client() as client:
        reference = step.run(client=client)
    return {"tmp": tmp, "again": again, "reference": reference,
            "committed_at_kill": committed_at_kill, "scored_at_kill": scored_at_kill,
            "scored_after_resume": scored_after_resume,
            "runners_of_killed_job": runners_of_killed_job, "tracker": tracker}


def test_client_killed_mid_job_resumes_to_a_byte_identical_output(client_killed):
    again, reference = client_killed["again"], client_killed["reference"]
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert reference.status == "Completed", reference.reason
    tmp = client_killed["tmp"]
    report = read_report(tmp / "out")
    assert report["status"] == "Completed"
    assert report["resumed_mini_batches"] >= len(client_killed["committed_at_kill"]) > 0
    assert read_report(tmp / "reference")["resumed_mini_batches"] == 0
    resumed = (tmp / "out" / "parallel_run_step.txt").read_bytes()
    assert resumed == (tmp / "reference" / "parallel_run_step.txt").read_bytes()
    assert resumed.decode().splitlines() == expected_gate_lines(N_RESUME)


def test_client_killed_mid_job_leaves_no_runner_on_the_workers(client_killed):
    """The killed client's job holds the script (and its model) in a runner process
    on every worker; once that job can never finish, they must go away."""
    assert client_killed["runners_of_killed_job"]
    tracker = client_killed["tracker"]

    def gone():
        return not set(client_killed["runners_of_killed_job"]) & set(
            tracker.runner_pids())
    # no deadline of its own: pytest's timeout ends a wait for runners that stay
    wait_until(gone, float("inf"), "the killed client's runner processes to exit "
               "(the job was resumed and completed)")


def _scored(env: dict[str, str]) -> Counter:
    """run() calls per item so far (GATE_SCRIPT leaves a token for each)."""
    return Counter(int(name.split("-")[0]) for name in os.listdir(env["TOKEN_DIR"]))


def test_client_killed_mid_job_resume_scores_only_what_was_not_committed(
    client_killed
):
    """Counted by the script, not by the product: run() was not called again for
    an item committed before the kill, and every other item was scored."""
    committed = client_killed["committed_at_kill"]
    before = client_killed["scored_at_kill"]
    after = client_killed["scored_after_resume"]
    assert committed, "nothing was committed before the kill"
    for index in committed:
        assert before[index] == after[index] == 1, (index, before, after)
    assert set(after) == set(range(N_RESUME)), after
