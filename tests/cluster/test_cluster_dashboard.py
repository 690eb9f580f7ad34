"""Live job state on the dashboard: ``/daskscore/api/jobs`` and ``/daskscore/``.

One job on the shared cluster is held in the middle by a gate
(``cluster_procs.GATE_SCRIPT``) while the JSON route is polled, the page is
rendered by a real headless Chromium, and the scheduler's task names are read;
then the gate opens and the final numbers are compared with ``job_report.json``.

The job publishes its state on completions at most once an hour
(``daskscore.publish-interval``), so every number the route shows after the start
comes from the periodic republish (``daskscore.cancel-poll-interval``, 1 s): the
held job's state must catch up by that alone, however long that takes (the
global pytest timeout bounds it).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import dask
import pytest
from cluster_procs import (
    GATE_SCRIPT,
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

CHROMIUM = "/usr/bin/chromium"
STEP = "dash-job"
N = 12
HOLD_AFTER = 3
WORKERS = 3  # node_count=2 x process_count_per_node=2 on nodes na (2) and nb (1)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, ctype, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def _jobs(cluster) -> dict:
    status, _, body = _get(cluster.url("/daskscore/api/jobs"))
    assert status == 200, body
    return json.loads(body)


def _ours(cluster) -> dict | None:
    mine = [j for j in _jobs(cluster).values() if j.get("step") == STEP]
    return max(mine, key=lambda j: j["started_at"]) if mine else None


def _chromium_dom(tracker, url: str, profile: Path) -> str:
    proc = tracker.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=4000", "--dump-dom", url],
        timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _page_row(dom: str, job_id: str) -> dict[str, str]:
    """The cells of the job's row in the page's table, by class."""
    match = re.search(rf'<tr id="job-{re.escape(job_id)}">(.*?)</tr>', dom, re.S)
    assert match, f"no row for {job_id} in the page:\n{dom[:3000]}"
    cells = {}
    cell = re.compile(r'<td class="([^"]*)">(.*?)</td>', re.S)
    for cls, text in cell.findall(match.group(1)):
        cells[cls.split()[-1]] = html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
    return cells


@pytest.fixture(scope="module")
def dash_run(dask_cluster, cluster_client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    script = write_script(tmp / "src", GATE_SCRIPT)
    make_files(tmp / "in", N)
    env = {**gate_env(tmp, HOLD_AFTER), "BURST_FILE": str(tmp / "burst")}
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="1",
                               node_count=2, process_count_per_node=2,
                               environment_variables=env)
    step = ds.ParallelRunStep(name=STEP, parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(tmp / "in"))],
                              output=str(tmp / "out"))
    box: dict = {"snapshots": []}
    stop = threading.Event()

    def run():
        try:
            box["result"] = step.run(client=cluster_client)
        except BaseException as exc:  # noqa: BLE001 - asserted by the tests
            box["error"] = exc

    def poll():
        while not stop.is_set():
            try:
                state = _ours(dask_cluster)
            except Exception as exc:  # noqa: BLE001 - kept for the tests
                box.setdefault("poll_errors", []).append(repr(exc))
                state = None
            if state:
                box["snapshots"].append(state)
            stop.wait(0.25)

    runner = threading.Thread(target=run, daemon=True)
    poller = threading.Thread(target=poll, daemon=True)
    has_chromium = os.path.exists(CHROMIUM)
    # completions publish nothing after the first state: the job's settings are
    # read when it starts, in the runner thread, inside this block
    throttled = dask.config.set({"daskscore.publish-interval": "1 hour"})
    try:
        throttled.__enter__()
        poller.start()
        runner.start()
        # every worker holds its first mini-batch; then they complete at once
        wait_until(lambda: waiting_at(env["BURST_FILE"]) >= WORKERS, 120,
                   "every worker at the burst gate")
        box["first_state"] = wait_until(
            lambda: (s := _ours(dask_cluster)) and s["status"] == "Running" and s,
            120, "the job in the JSON route")
        Path(env["BURST_FILE"]).write_text("go")
        # HOLD_AFTER or more are scored, then every worker waits at the gate
        wait_until(lambda: waiting_at(env["GATE_FILE"]) >= WORKERS, 120,
                   "every worker at the gate")
        box["held_records"] = len(records(tmp / "out"))
        box["held_state"] = _ours(dask_cluster)

        def current():
            state = _ours(dask_cluster)
            return state if state["done_mini_batches"] == box["held_records"] else None
        # no deadline of its own: a route that never catches up fails the test at
        # pytest's timeout (with "the live state to catch up" in the traceback)
        box["held_current"] = wait_until(
            current, float("inf"), "the live state to catch up")

        def keys(dask_scheduler=None):
            return [str(k) for k in dask_scheduler.tasks]
        box["task_keys"] = cluster_client.run_on_scheduler(keys)
        if has_chromium:
            box["dom_running"] = _chromium_dom(dask_cluster.tracker,
                                               dask_cluster.url("/daskscore/"),
                                               tmp / "chrome-1")
    finally:
        open_gate(env)
        Path(env["BURST_FILE"]).write_text("go")
        runner.join(timeout=240)
        stop.set()
        poller.join(timeout=30)
        throttled.__exit__(None, None, None)
    assert not runner.is_alive(), "the job did not finish"
    box["final_state"] = _ours(dask_cluster)
    if has_chromium:
        box["dom_final"] = _chromium_dom(dask_cluster.tracker,
                                         dask_cluster.url("/daskscore/"),
                                         tmp / "chrome-2")
    shutil.rmtree(tmp / "chrome-1", ignore_errors=True)
    shutil.rmtree(tmp / "chrome-2", ignore_errors=True)
    box["out"] = tmp / "out"
    return box


def test_json_route_numbers_move_and_end_equal_to_the_report(dash_run, dask_cluster):
    assert "error" not in dash_run, dash_run.get("error")
    result = dash_run["result"]
    assert result.status == "Completed", result.reason
    assert Path(result.output_file).read_text().splitlines() == expected_gate_lines(N)
    snaps = dash_run["snapshots"]
    assert snaps, dash_run.get("poll_errors")
    job_ids = {s["job_id"] for s in snaps}
    assert len(job_ids) == 1
    done = [s["done_mini_batches"] for s in snaps]
    assert done == sorted(done), "done mini-batches never go back"
    running = [s for s in snaps if s["status"] == "Running"]
    assert running and min(s["done_mini_batches"] for s in running) < N
    assert len(set(done)) >= 2, "the numbers move while the job runs"
    held = dash_run["held_state"]
    assert held["status"] == "Running" and 0 < held["remaining_mini_batches"] <= N
    assert held["mini_batches"] == N

    final = dash_run["final_state"]
    report = read_report(dash_run["out"])
    assert final["job_id"] == report["job_id"]
    assert final["status"] == report["status"] == "Completed"
    assert final["mini_batches"] == report["mini_batches"] == N
    assert final["done_mini_batches"] == report["processed_mini_batches"] == N
    assert final["failed_mini_batches"] == report["failed_mini_batches"] == 0
    assert final["remaining_mini_batches"] == 0
    assert final["succeeded_items"] == report["succeeded_items"] == N
    assert final["failed_items"] == report["failed_items"] == 0
    assert final["output_file"] == report["output_file"]
    assert final["eta_seconds"] is None

    # one job by id; an unknown id is a 404 with a JSON error
    url = dask_cluster.url(f"/daskscore/api/jobs/{final['job_id']}")
    status, ctype, body = _get(url)
    assert status == 200 and "json" in ctype
    assert json.loads(body)["done_mini_batches"] == N
    status, _, body = _get(dask_cluster.url("/daskscore/api/jobs/no-such-job"))
    assert status == 404 and "no-such-job" in json.loads(body)["error"]


def test_json_route_is_current_while_the_job_is_held(dash_run):
    """While no mini-batch completes (all workers busy on long ones), the route
    shows every mini-batch committed so far, not an older throttled snapshot
    (the fixture waits for it; here: what it saw)."""
    assert dash_run["held_records"] >= HOLD_AFTER
    held = dash_run["held_current"]
    assert held["status"] == "Running"
    assert held["done_mini_batches"] == dash_run["held_records"]
    # completions published nothing after the start (a one-hour interval): only
    # the periodic republish brought the route up to date
    assert dash_run["first_state"]["done_mini_batches"] == 0


def test_html_page_is_served(dask_cluster, dash_run):
    status, ctype, body = _get(dask_cluster.url("/daskscore/"))
    assert status == 200 and "text/html" in ctype
    assert "daskscore jobs" in body and 'fetch("api/jobs"' in body
    assert "setInterval(refresh, 1000)" in body


def test_task_names_carry_the_step_name_and_mini_batch_ids(dash_run):
    from distributed.utils import key_split

    ours = [k for k in dash_run["task_keys"] if k.startswith(f"{STEP}-mb-")]
    assert ours, dash_run["task_keys"]
    for key in ours:
        assert re.fullmatch(rf"{STEP}-mb-\d{{6}}-\d{{6}}-[0-9a-f]{{8}}", key), key
        # the name the task stream and progress pages group tasks by
        assert key_split(key) == f"{STEP}-mb"


def test_page_in_headless_chromium_shows_the_live_and_final_numbers(dash_run):
    if not os.path.exists(CHROMIUM):  # a failure, not a skip: make test installs it
        pytest.fail(f"{CHROMIUM} is missing: install the Debian packages chromium "
                    "and chromium-driver (`make chromium`)")
    job_id = dash_run["final_state"]["job_id"]
    running = _page_row(dash_run["dom_running"], job_id)
    assert running["status"] == "Running"
    done, total = (int(x) for x in running["done"].split("/"))
    assert total == N and done < N
    assert int(running["remaining"]) == N - done

    final = _page_row(dash_run["dom_final"], job_id)
    report = read_report(dash_run["out"])
    assert final["status"] == report["status"] == "Completed"
    assert final["done"] == (
        f"{report['processed_mini_batches']}/{report['mini_batches']}")
    assert int(final["succeeded"]) == report["succeeded_items"]
    assert int(final["failed-items"]) == report["failed_items"]
    assert int(final["failed-mb"]) == report["failed_mini_batches"]
    assert int(final["remaining"]) == 0
    assert done < int(final["done"].split("/")[0]), "the numbers on the page move"
