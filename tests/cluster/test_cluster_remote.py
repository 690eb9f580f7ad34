"""Fire-and-forget jobs: ``daskscore submit/status/wait/cancel`` on a real cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from cluster_procs import (
    DASKSCORE,
    GATE_SCRIPT,
    cli,
    expected_gate_lines,
    gate_env,
    make_files,
    open_gate,
    records,
    wait_until,
    write_script,
)

from daskscore.output.store import StateStore

pytest_plugins = ["cluster_procs"]

pytestmark = pytest.mark.slow

JOB_ID = re.compile(r"^[a-z][-a-z0-9]*-[0-9a-f]{8}$")


def _job_file(folder: Path, n: int, env: dict[str, str], script_text: str = GATE_SCRIPT,
              **extra) -> Path:
    script = write_script(folder / "src", script_text)
    make_files(folder / "in", n)
    job = {"entry_script": script.name, "source_directory": "src", "input": ["in"],
           "output": "out", "mini_batch_size": "1", "environment_variables": env,
           **extra}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _state(client, job_id: str) -> dict:
    return dict(client.get_metadata(["daskscore", "jobs", job_id], default={}) or {})


def test_submit_returns_at_once_and_status_wait_reattach(tmp_path, dask_cluster,
                                                        cluster_client):
    n = 10
    env = gate_env(tmp_path, 3)
    job = _job_file(tmp_path, n, env)
    try:
        submit = cli(dask_cluster.tracker, "submit", str(job), "--scheduler",
                     dask_cluster.address, timeout=120)
        assert submit.returncode == 0, (submit.stdout, submit.stderr)
        job_id = submit.stdout.strip().splitlines()[0]
        assert JOB_ID.match(job_id), submit.stdout
        assert f"daskscore wait {job_id}" in submit.stderr
        # the submitting process is gone; the job goes on, held at the gate
        wait_until(lambda: len(records(tmp_path / "out")) >= 1, 120,
                   "the submitted job to commit mini-batches")
        assert _state(cluster_client, job_id)["status"] == "Running"
        status = cli(dask_cluster.tracker, "status", job_id, "--scheduler",
                     dask_cluster.address, timeout=120)
        assert status.returncode == 0, (status.stdout, status.stderr)
        assert status.stdout.startswith(f"{job_id}: Running, ")
        assert f"/{n} mini-batches" in status.stdout
    finally:
        open_gate(env)
    waited = cli(dask_cluster.tracker, "wait", job_id, "--scheduler",
                 dask_cluster.address, timeout=180)
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    assert waited.stdout.startswith("Completed: ")
    assert f"{n}/{n} mini-batches (0 failed), {n} items succeeded" in waited.stdout
    output = tmp_path / "out" / "parallel_run_step.txt"
    assert f"Output: {output}" in waited.stdout
    assert output.read_text().splitlines() == expected_gate_lines(n)
    assert _state(cluster_client, job_id)["status"] == "Completed"


def test_status_of_an_unknown_job_is_a_clear_error(dask_cluster):
    proc = cli(dask_cluster.tracker, "status", "no-such-job-12345678", "--scheduler",
               dask_cluster.address, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("daskscore: error: ")
    assert "no-such-job-12345678" in proc.stderr and "Traceback" not in proc.stderr


def _job_tasks(client, job_id: str) -> list[str]:
    """Keys of the job's scoring tasks still on the scheduler (``<step>-mb-...``)."""
    def keys(dask_scheduler=None):
        return [str(k) for k in dask_scheduler.tasks]
    return [k for k in client.run_on_scheduler(keys)
            if "-mb-" in k and k.endswith(job_id[-8:])]


def test_cancel_stops_a_submitted_job_and_keeps_committed_parts(
        tmp_path, dask_cluster, cluster_client):
    """The job is held at the gate; the gate opens once the cancel took effect (its
    tasks left the scheduler), so the mini-batches held there finish and are kept,
    and no other starts."""
    n = 12
    env = gate_env(tmp_path, 2)
    job = _job_file(tmp_path, n, env)
    try:
        submit = cli(dask_cluster.tracker, "submit", str(job), "--scheduler",
                     dask_cluster.address, timeout=120)
        assert submit.returncode == 0, (submit.stdout, submit.stderr)
        job_id = submit.stdout.strip().splitlines()[0]
        wait_until(lambda: len(records(tmp_path / "out")) >= 2, 120,
                   "2 mini-batches committed")
        assert _job_tasks(cluster_client, job_id)
        cancel = cli(dask_cluster.tracker, "cancel", job_id, "--scheduler",
                     dask_cluster.address, timeout=120)
        assert cancel.returncode == 0, (cancel.stdout, cancel.stderr)
        assert "cancel requested" in cancel.stdout
        wait_until(lambda: not _job_tasks(cluster_client, job_id), 60,
                   "the cancelled job's tasks to leave the scheduler")
    finally:
        open_gate(env)
    waited = cli(dask_cluster.tracker, "wait", job_id, "--scheduler",
                 dask_cluster.address, timeout=180)
    assert waited.returncode == 1, (waited.stdout, waited.stderr)
    assert waited.stdout.startswith("Failed: ")
    assert "cancelled on request" in waited.stdout
    state = _state(cluster_client, job_id)
    assert state["status"] == "Failed" and "cancelled on request" in state["reason"]
    assert 2 <= state["done_mini_batches"] < n
    output = tmp_path / "out" / "parallel_run_step.txt"
    kept = output.read_text().splitlines()
    assert len(kept) == state["succeeded_items"] >= 2
    assert set(kept) <= set(expected_gate_lines(n))
    assert kept == sorted(kept)  # in input order
    committed = StateStore(str(tmp_path / "out")).load_records()
    assert sum(1 for r in committed.values() if r["has_output"]) == len(kept)


def test_two_submitted_jobs_at_once_are_isolated(tmp_path, dask_cluster,
                                                 cluster_client):
    folders = {}
    for label in ("left", "right"):
        folder = tmp_path / label
        env = {"MARKER_DIR": str(folder / "markers")}
        (folder / "markers").mkdir(parents=True)
        script = (f"TAG = {label!r}\n" + GATE_SCRIPT.lstrip()).replace(
            'out.append(f"{os.path.basename(path)} {number * 2}")',
            'out.append(f"{TAG} {sys.argv[1:]} {os.path.basename(path)}")'
        ).replace("import os\n", "import os\nimport sys\n", 1)
        folders[label] = _job_file(folder, 8, env, script_text=script,
                                   arguments=[f"--side={label}"])
    procs = {label: dask_cluster.tracker.popen(
        [DASKSCORE, "submit", str(job), "--scheduler", dask_cluster.address],
        capture=True) for label, job in folders.items()}
    ids = {}
    for label, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (out, err)
        ids[label] = out.strip().splitlines()[0]
    assert ids["left"] != ids["right"]
    for label, job_id in ids.items():
        wait_until(lambda job_id=job_id: _state(cluster_client, job_id).get("status")
                   in ("Completed", "Failed"), 240, f"job {job_id} to end")
        assert _state(cluster_client, job_id)["status"] == "Completed", label
    for label, other in (("left", "right"), ("right", "left")):
        out = tmp_path / label / "out" / "parallel_run_step.txt"
        assert out.read_text().splitlines() == [
            f"{label} ['--side={label}'] item-{i:04d}.txt" for i in range(8)]
        inits = list((tmp_path / label / "markers").iterdir())
        assert inits
        assert not list((tmp_path / other / "out").rglob(f"*{ids[label]}*"))
