"""Workers restarted by their nanny, and a scheduler lost, on a real cluster.

``dask worker --nworkers 2`` without ``--name`` names its workers by their
address, which changes when the nanny restarts one: the job must still hand the
replacements its script and resource (they join its node), or its tasks stay
``no-worker`` for good. Each test starts its own cluster, since it kills
processes of it; jobs are held in the middle by the gate of ``GATE_SCRIPT``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from cluster_procs import (
    DASK,
    DASKSCORE,
    GATE_SCRIPT,
    GatedJob,
    StepThread,
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

pytest_plugins = ["cluster_procs"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _unnamed_workers(cluster, nworkers: int) -> None:
    """``dask worker ADDR --nworkers N`` with nannies and no ``--name``."""
    cmd = [DASK, "worker", cluster.address, "--nworkers", str(nworkers),
           "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
           "--memory-limit", "0", "--death-timeout", "60",
           "--local-directory", str(cluster.local_dir)]
    cluster.nodes["unnamed"] = cluster.tracker.popen(cmd, log_name="worker-unnamed.log")
    cluster.node_workers["unnamed"] = nworkers
    cluster.wait_for_workers(nworkers)


N = 16


def test_restarted_unnamed_workers_take_over_the_job(tmp_path):
    job = GatedJob.make(tmp_path, N, 4)
    env = job.env
    step = job.step("restarted", tmp_path / "out")
    with cluster_session(tmp_path / "cluster", {}) as cluster:
        _unnamed_workers(cluster, 2)
        client = cluster.client()
        thread = StepThread(step, client)
        try:
            before = client.run(os.getpid)  # worker address -> pid
            assert all(a == info["name"] for a, info in
                       cluster.worker_info(client).items())  # named by address
            thread.start()
            wait_until(lambda: waiting_at(env["GATE_FILE"]) >= 2, 120,
                       "both runners to wait at the gate")
            # both workers die while scoring: only their replacements can go on
            for pid in before.values():
                os.kill(pid, signal.SIGKILL)

            def replaced():
                now = {a: p for a, p in
                       client.run(os.getpid, on_error="return").items()
                       if isinstance(p, int)}
                fresh = set(now.values()) - set(before.values())
                return len(fresh) == 2 and fresh
            fresh = wait_until(replaced, 120, "two replacement workers")
            wait_until(lambda: fresh <= set(job.inits().values()), 120,
                       "init() on both replacement workers")
            open_gate(env)
            thread.join(timeout=180)
            assert not thread.is_alive(), "the job did not finish"
        finally:
            open_gate(env)
            thread.join(timeout=60)
            client.close()

    assert thread.error is None, thread.error
    result = thread.result
    assert result.status == "Completed", result.reason
    assert (result.total_items, result.succeeded_items) == (N, N)
    lines = Path(result.output_file).read_text().splitlines()
    assert lines == expected_gate_lines(N)
    # every item was scored exactly once (the two killed at the gate had not been)
    scored = Counter(int(name.split("-")[0]) for name in os.listdir(env["TOKEN_DIR"]))
    assert scored == dict.fromkeys(range(N), 1)
    assert read_report(tmp_path / "out")["lost_tries"] == 2


def test_a_lost_scheduler_is_named_in_the_root_cause(tmp_path):
    script = write_script(tmp_path / "src", GATE_SCRIPT)
    make_files(tmp_path / "in", N)
    env = gate_env(tmp_path, 3)
    with cluster_session(tmp_path / "cluster", {"ns": 2}) as cluster:
        args = [DASKSCORE, "run", "--entry-script", str(script),
                "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                "--mini-batch-size", "1", "--scheduler", cluster.address,
                "--no-progress",
                *[x for k, v in env.items() for x in ("--env", f"{k}={v}")]]
        proc = cluster.tracker.popen(args, capture=True)
        try:
            wait_until(lambda: len(records(tmp_path / "out")) >= 3, 120,
                       "3 committed mini-batches")
            cluster.scheduler.send_signal(signal.SIGKILL)
            cluster.scheduler.wait(30)
            out, err = proc.communicate(timeout=120)
        finally:
            open_gate(env)
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err, err
    failed = [line for line in out.splitlines() if line.startswith("Failed: ")]
    assert len(failed) == 1, out
    line = failed[0]
    assert f"lost the Dask scheduler at {cluster.address}" in line, line
    assert "run the same command again to resume" in line, line
    assert "mini-batches were not scored" not in line, line
