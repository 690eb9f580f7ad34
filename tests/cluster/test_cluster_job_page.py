"""The job page, ``daskscore status`` and ``/metrics`` while a real job runs.

A job on the shared ``dask scheduler``/``dask worker`` cluster: one worker is
held in a slow ``run()`` (mini-batch ``SLOW``, until ``SLOW_FILE`` exists), the
others score until ``GATE_AFTER`` items are done and wait at the gate, and every
item ``n % 5 == 3`` raises (a failed mini-batch after ``run_max_try`` tries).
Headless Chromium renders the page while everything waits, again after the gate
opened (the slow one still held), and after the job: the bars, the chart and
the slow worker's duration move, failures show their one-line error, and the
final numbers equal ``job_report.json``. Screenshots are kept in the test's
folder and checked not blank; ``/metrics`` is scraped and added up. Every wait
is on an event (a signal file, a count in the JSON route).
"""

from __future__ import annotations

import html
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from cluster_procs import (
    DASKSCORE,
    cli,
    gate_env,
    make_files,
    open_gate,
    read_report,
    records,
    wait_until,
    waiting_at,
    write_script,
)
from PIL import Image, ImageStat
from prometheus_client.parser import text_string_to_metric_families

import daskscore as ds

pytest_plugins = ["cluster_procs"]

CHROMIUM = "/usr/bin/chromium"
STEP = "page-job"
N = 24
SLOW = 1
GATE_AFTER = 6
OTHERS = 2  # workers other than the slow one (3 in all)

SCRIPT = '''
import os
import time

GATE = os.environ["GATE_FILE"]
GATE_AFTER = int(os.environ["GATE_AFTER"])
TOKENS = os.environ["TOKEN_DIR"]
SLOW_FILE = os.environ["SLOW_FILE"]
SLOW = int(os.environ["SLOW_ITEM"])


def init():
    pass


def _hold(signal):
    open(f"{signal}.waiting-{os.getpid()}", "w").close()
    deadline = time.time() + 300
    while not os.path.exists(signal) and time.time() < deadline:
        time.sleep(0.05)


def run(mini_batch):
    out = []
    for path in mini_batch:
        number = int(open(path).read())
        if number == SLOW:
            _hold(SLOW_FILE)
        elif len(os.listdir(TOKENS)) >= GATE_AFTER and not os.path.exists(GATE):
            _hold(GATE)
        open(os.path.join(TOKENS, f"{number}-{time.time_ns()}"), "w").close()
        if number % 5 == 3:
            raise ValueError(f"item {number} is bad")
        out.append(f"{os.path.basename(path)} {number * 2}")
    return out
'''


def _get(url: str) -> str:
    # generous: Bokeh builds the /status page on the first request (slow on a
    # loaded machine); a hung route still fails here
    with urllib.request.urlopen(url, timeout=180) as resp:
        return resp.read().decode()


def _ours(cluster) -> dict | None:
    jobs = json.loads(_get(cluster.url("/daskscore/api/jobs")))
    mine = [j for j in jobs.values() if j.get("step") == STEP]
    return max(mine, key=lambda j: j["started_at"]) if mine else None


def _chromium(tracker, url: str, profile: Path, *args: str) -> str:
    proc = tracker.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
         "--window-size=1280,1800", "--virtual-time-budget=4000", *args, url],
        timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.rmtree(profile, ignore_errors=True)
    return proc.stdout


def _render(cluster, folder: Path, name: str, screenshot: bool = False) -> str:
    url = cluster.url("/daskscore/")
    dom = _chromium(cluster.tracker, url, folder / f"chrome-{name}", "--dump-dom")
    if screenshot:
        shot = folder / "artifacts" / f"{name}.png"
        shot.parent.mkdir(exist_ok=True)
        _chromium(cluster.tracker, url, folder / f"chrome-{name}-shot",
                  f"--screenshot={shot}")
    return dom


def _section(dom: str, job_id: str) -> str:
    match = re.search(rf'<section class="job" id="detail-{re.escape(job_id)}".*?'
                      r"</section>", dom, re.S)
    assert match, f"no section for {job_id} in the page:\n{dom[:3000]}"
    return match.group(0)


def _seg(section: str, bar: str, name: str) -> int:
    match = re.search(rf'<div class="bar {bar}">.*?<div class="seg-{name}" '
                      r'data-n="(\d+)"', section, re.S)
    assert match, section[:2000]
    return int(match.group(1))


def _points(section: str) -> int:
    match = re.search(r'<canvas class="chart"[^>]*data-points="(\d+)"', section)
    assert match, section[:2000]
    return int(match.group(1))


def _cells(row: str) -> dict[str, str]:
    cell = re.compile(r'<td class="([^"]*)">(.*?)</td>', re.S)
    return {cls.split()[-1]: html.unescape(re.sub(r"<[^>]+>", "", t)).strip()
            for cls, t in cell.findall(row)}


def _rows(section: str, kind: str) -> list[dict[str, str]]:
    return [_cells(r) for r in re.findall(rf'<tr class="{kind}[^"]*"[^>]*>(.*?)</tr>',
                                          section, re.S)]


REDRAW = b"\x1b[H\x1b[2J"


def _watch_status(tracker, job_id: str, address: str) -> tuple[str, int]:
    """``daskscore status`` on a terminal (a pty): three redraws, then Ctrl-C."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([DASKSCORE, "status", job_id, "--scheduler", address],
                            stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.DEVNULL, env=tracker.env())
    os.close(slave)
    out = b""
    try:
        while out.count(REDRAW) < 3:
            ready, _, _ = select.select([master], [], [], 180)  # a hang guard
            assert ready, f"no redraw from daskscore status: {out!r}"
            out += os.read(master, 1 << 16)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return out.decode(errors="replace"), code


def _slow_worker(state: dict) -> dict | None:
    return next((w for w in state.get("workers", [])
                 if w.get("state") == "scoring" and w.get("mini_batch") == SLOW), None)


@pytest.fixture(scope="module")
def page_run(dask_cluster, cluster_client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    script = write_script(tmp / "src", SCRIPT)
    make_files(tmp / "in", N)
    env = {**gate_env(tmp, GATE_AFTER), "SLOW_FILE": str(tmp / "slow-go"),
           "SLOW_ITEM": str(SLOW)}
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="1",
                               node_count=2, process_count_per_node=2,
                               run_max_try=2, run_invocation_timeout=900,
                               allowed_failed_percent=90,
                               environment_variables=env)
    step = ds.ParallelRunStep(name=STEP, parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(tmp / "in"))],
                              output=str(tmp / "out"))
    box: dict = {"tmp": tmp}

    def run():
        try:
            box["result"] = step.run(client=cluster_client)
        except BaseException as exc:  # noqa: BLE001 - asserted by the tests
            box["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: waiting_at(env["SLOW_FILE"]) >= 1, 180, "the slow run()")
        wait_until(lambda: waiting_at(env["GATE_FILE"]) >= OTHERS, 180,
                   "the other workers at the gate")

        def caught_up():
            state = _ours(dask_cluster)
            return (state and state["done_mini_batches"] == len(records(tmp / "out"))
                    and _slow_worker(state) and state)
        box["state_1"] = wait_until(caught_up, float("inf"), "the held state")
        box["nav"] = _get(dask_cluster.url("/status"))
        box["dom_1"] = _render(dask_cluster, tmp, "held")
        box["status_cli"] = cli(dask_cluster.tracker, "status",
                                box["state_1"]["job_id"], "--scheduler",
                                dask_cluster.address, timeout=120)
        box["status_json"] = cli(dask_cluster.tracker, "status",
                                 box["state_1"]["job_id"], "--json", "--scheduler",
                                 dask_cluster.address, timeout=120)
        box["route_1"] = _ours(dask_cluster)
        box["watch"] = _watch_status(dask_cluster.tracker, box["state_1"]["job_id"],
                                     dask_cluster.address)
        open_gate(env)
        held_done = box["state_1"]["done_mini_batches"]
        # everything but the slow worker's pack can now finish
        box["state_2"] = wait_until(
            lambda: (s := _ours(dask_cluster)) and s["done_mini_batches"] > held_done
            and s["failed_mini_batches"] > 0 and _slow_worker(s) and s,
            float("inf"), "progress past the gate")
        box["dom_2"] = _render(dask_cluster, tmp, "moving", screenshot=True)
    finally:
        open_gate(env)
        Path(env["SLOW_FILE"]).write_text("go")
        runner.join(timeout=300)
    assert not runner.is_alive(), "the job did not finish"
    box["final"] = _ours(dask_cluster)
    box["dom_final"] = _render(dask_cluster, tmp, "final", screenshot=True)
    box["metrics"] = _get(dask_cluster.url("/metrics"))
    box["out"] = tmp / "out"
    return box


def test_page_is_a_tab_in_the_dask_dashboard(page_run, dask_cluster):
    assert 'href="daskscore"' in page_run["nav"], "no daskscore tab in Dask's nav"
    # the tab's link (relative to /status) leads to the job page
    assert "daskscore jobs" in _get(dask_cluster.url("/daskscore"))


def test_bars_chart_and_the_slow_worker_move(page_run):
    assert "error" not in page_run, page_run.get("error")
    job_id = page_run["final"]["job_id"]
    first = _section(page_run["dom_1"], job_id)
    second = _section(page_run["dom_2"], job_id)
    assert 'data-status="Running"' in first and 'data-status="Running"' in second
    done_1, done_2 = _seg(first, "mb", "done"), _seg(second, "mb", "done")
    failed_1, failed_2 = _seg(first, "mb", "failed"), _seg(second, "mb", "failed")
    assert done_1 + failed_1 < done_2 + failed_2, "the mini-batch bar moves"
    assert _seg(first, "mb", "running") >= 1  # the slow one at least
    assert _seg(first, "items", "succeeded") < _seg(second, "items", "succeeded")
    assert 0 < _points(first) < _points(second), "the chart gets new samples"
    for section in (first, second):
        slow = [w for w in _rows(section, "worker") if w["mini-batch"] == str(SLOW)]
        assert len(slow) == 1 and slow[0]["state"] == "scoring", section[:3000]
    seconds = [float(next(w for w in _rows(s, "worker")
                          if w["mini-batch"] == str(SLOW))["seconds"])
               for s in (first, second)]
    assert seconds[0] < seconds[1], "the slow worker's duration grows"
    # the settings line: script, mini_batch_size, a threshold and how close
    assert "score.py" in second and "mini_batch_size 1" in second
    assert "allowed_failed_percent=90 (now " in second


def test_failures_show_their_one_line_error(page_run):
    job_id = page_run["final"]["job_id"]
    failures = _rows(_section(page_run["dom_2"], job_id), "failure")
    assert failures, "failures appear while the job runs"
    for f in failures:
        number = int(f["mini-batch"])
        assert number % 5 == 3
        assert f["status"] == "RUN_EXCEPTION"
        assert f["err"] == f"ValueError: item {number} is bad (at score.py:32)"
        assert f["try"] in ("1", "2")
        assert f["tb"] == f"logs/user/error/mini-batch-{number:09d}.try{f['try']}.txt"
    # where the page says the full traceback is, it is
    out = page_run["out"]
    final = _rows(_section(page_run["dom_final"], job_id), "failure")
    for f in final:
        text = (out / f["tb"]).read_text()
        assert f"item {f['mini-batch']} is bad" in text and "Traceback" in text


def test_final_numbers_equal_the_report(page_run):
    result = page_run["result"]
    report = read_report(page_run["out"])
    assert result.status == report["status"] == "Completed", result.reason
    final = page_run["final"]
    section = _section(page_run["dom_final"], final["job_id"])
    assert 'data-status="Completed"' in section
    failed = report["failed_mini_batches"]
    assert failed == len([n for n in range(N) if n % 5 == 3])
    assert _seg(section, "mb", "done") == report["processed_mini_batches"] - failed
    assert _seg(section, "mb", "failed") == failed
    assert _seg(section, "mb", "running") == 0
    assert _seg(section, "items", "succeeded") == report["succeeded_items"]
    assert _seg(section, "items", "failed") == report["failed_items"]
    assert sum(final["tries"].values()) == report["tries"]
    assert final["forget_at"] is not None  # kept, then forgotten


def test_screenshots_are_not_blank(page_run):
    shots = sorted((page_run["tmp"] / "artifacts").glob("*.png"))
    assert [p.name for p in shots] == ["final.png", "moving.png"]
    for shot in shots:
        with Image.open(shot) as img:
            stat = ImageStat.Stat(img.convert("L"))
            assert stat.var[0] > 100, f"{shot} looks blank"
            # the bars' green (done) and red (failed) are drawn
            colors = [c for _, c in img.convert("RGB").getcolors(1 << 22)]
            assert any(g > 130 and r < 90 and b < 90 for r, g, b in colors)
            assert any(r > 180 and g < 90 and b < 90 for r, g, b in colors)


def test_metrics_add_up_to_the_report(page_run):
    text = page_run["metrics"]
    assert "dask_scheduler_workers" in text  # next to Dask's own
    job_id = page_run["final"]["job_id"]
    report = read_report(page_run["out"])
    values: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job", job_id) == job_id:
                labels = tuple(sorted(sample.labels.items()))
                values[(sample.name, labels)] = sample.value

    def total(name, **labels):
        return sum(v for (n, ls), v in values.items() if n == name
                   and all((k, x) in ls for k, x in labels.items()))
    assert total("daskscore_mini_batches_total") == report["processed_mini_batches"]
    assert (total("daskscore_mini_batches_total", status="failed")
            == report["failed_mini_batches"])
    succeeded = total("daskscore_items_total", outcome="succeeded")
    assert succeeded == report["succeeded_items"]
    assert total("daskscore_items_total", outcome="failed") == report["failed_items"]
    assert total("daskscore_tries_total") == report["tries"]
    assert (total("daskscore_tries_total", status="RUN_EXCEPTION")
            == 2 * report["failed_mini_batches"])
    assert total("daskscore_run_seconds_count") == report["tries"]
    buckets = sorted(((float(dict(ls)["le"]), v) for (n, ls), v in values.items()
                      if n == "daskscore_run_seconds_bucket"))
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1] == (float("inf"), report["tries"])
    assert total("daskscore_run_seconds_sum") >= 0
    assert total("daskscore_jobs", status="Completed") >= 1


def test_status_command_prints_the_live_view(page_run):
    proc = page_run["status_cli"]
    assert proc.returncode == 0, proc.stderr
    job_id = page_run["state_1"]["job_id"]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{job_id}: Running, ")
    assert "workers:" in lines and "latest failures:" in lines
    slow = [ln for ln in lines if f"scoring mini-batch {SLOW} (try 1)" in ln]
    assert len(slow) == 1, proc.stdout
    assert any("is bad (at score.py:32)" in ln for ln in lines), proc.stdout
    # --json: the HTTP route's state
    state = json.loads(page_run["status_json"].stdout)
    route = page_run["route_1"]
    assert state["job_id"] == route["job_id"]
    assert set(state) == set(route)
    assert state["done_mini_batches"] == route["done_mini_batches"]
    assert _slow_worker(state) is not None


def test_no_cdn_on_the_page(dask_cluster, page_run):
    page = _get(dask_cluster.url("/daskscore/"))
    assert "http://" not in page and "https://" not in page
    assert "<script src" not in page
    assert os.path.exists(CHROMIUM)


RESTART_SCRIPT = '''
import os
import time

HOLD = os.environ["HOLD_DIR"]


def _wait(name):
    open(os.path.join(HOLD, f"{name}.waiting-{os.getpid()}"), "w").close()
    while not os.path.exists(os.path.join(HOLD, name)):
        time.sleep(0.05)


def init():
    first = not any(f.startswith("init.") for f in os.listdir(HOLD))
    open(os.path.join(HOLD, f"init.{os.getpid()}"), "w").close()
    _wait("init-go" if first else "reinit-go")


def run(mini_batch):
    hung = os.path.join(HOLD, "hung-once")
    if not os.path.exists(hung):
        open(hung, "w").close()
        time.sleep(3600)  # killed at run_invocation_timeout
    return [os.path.basename(p) for p in mini_batch]
'''


def _worker_in(cluster, state: str) -> dict | None:
    job = _ours_named(cluster, "restart-job")
    workers = job.get("workers", []) if job else []
    return next((w for w in workers if w.get("state") == state), None) and job


def _ours_named(cluster, step: str) -> dict | None:
    jobs = json.loads(_get(cluster.url("/daskscore/api/jobs")))
    mine = [j for j in jobs.values() if j.get("step") == step]
    return max(mine, key=lambda j: j["started_at"]) if mine else None


def _metric(text: str, name: str, **labels) -> float:
    return sum(s.value for f in text_string_to_metric_families(text)
               for s in f.samples if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.slow
def test_worker_states_init_and_restarting_after_a_timeout(
        page_run, dask_cluster, cluster_client, tmp_path):
    """A worker shows ``init`` while init() runs, then ``restarting`` while the
    runner that replaced the one killed at run_invocation_timeout runs init()
    again (held by signal files); /metrics counts it in that state."""
    hold = tmp_path / "hold"
    hold.mkdir()
    script = write_script(tmp_path / "src", RESTART_SCRIPT)
    make_files(tmp_path / "in", 2)
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="1",
                               node_count=1, process_count_per_node=1,
                               run_invocation_timeout=8, run_max_try=2,
                               environment_variables={"HOLD_DIR": str(hold)})
    step = ds.ParallelRunStep(name="restart-job", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(tmp_path / "in"))],
                              output=str(tmp_path / "out"))
    box: dict = {}
    runner = threading.Thread(
        target=lambda: box.update(result=step.run(client=cluster_client)), daemon=True)
    runner.start()
    try:
        in_init = wait_until(lambda: _worker_in(dask_cluster, "init"), float("inf"),
                             "a worker in init()")
        (hold / "init-go").write_text("go")
        seen: list[dict] = []

        def restarted():
            job = _ours_named(dask_cluster, "restart-job")
            seen.extend(w for w in (job or {}).get("workers", [])
                        if w.get("state") == "scoring")
            return _worker_in(dask_cluster, "restarting")
        restarting = wait_until(restarted, float("inf"),
                                "a worker restarting after the timeout")
        metrics = _get(dask_cluster.url("/metrics"))
    finally:
        (hold / "init-go").write_text("go")
        (hold / "reinit-go").write_text("go")
        runner.join(timeout=300)
    assert not runner.is_alive()
    assert box["result"].status == "Completed", box["result"].reason
    assert in_init["status"] == "Running"
    worker = next(w for w in restarting["workers"] if w["state"] == "restarting")
    assert worker["restarts"] == 1
    job_id = restarting["job_id"]
    assert _metric(metrics, "daskscore_workers", job=job_id, state="restarting") == 1
    assert _metric(metrics, "daskscore_workers", job=job_id, state="scoring") == 0
    final = _ours_named(dask_cluster, "restart-job")
    timeouts = [f for f in final["failures"] if f["status"] == "RUN_TIMEOUT"]
    assert len(timeouts) == 1 and timeouts[0]["try"] == 1
    assert "run_invocation_timeout=8" in timeouts[0]["error"]
    # the hung run() was shown as scoring mini-batch 0, flagged near the timeout
    # from 80% of it on (whichever moments the polls caught)
    assert seen and all(w["mini_batch"] == 0 for w in seen)
    for w in seen:
        assert w["near_timeout"] == (w["seconds"] >= 0.8 * 8), w
    assert final["tries"] == {"RUN_TIMEOUT": 1, "RUN_DONE": 2}


def test_status_command_refreshes_on_a_terminal_until_ctrl_c(page_run):
    out, code = page_run["watch"]
    assert code == 0, out
    job_id = page_run["state_1"]["job_id"]
    views = [v for v in out.split(REDRAW.decode()) if v.strip()]
    assert len(views) >= 3, out
    for view in views[:3]:
        lines = view.splitlines()
        assert lines[0].startswith(f"{job_id}: Running, "), view
        assert any(f"scoring mini-batch {SLOW} (try 1)" in ln for ln in lines), view


def test_a_finished_job_is_forgotten_after_the_setting(dask_cluster, cluster_client,
                                                       tmp_path):
    import dask

    script = write_script(tmp_path / "src", "def init():\n    pass\n\n\n"
                          "def run(mini_batch):\n"
                          "    return [str(p) for p in mini_batch]\n")
    make_files(tmp_path / "in", 2)
    cfg = ds.ParallelRunConfig(entry_script=str(script), mini_batch_size="1",
                               node_count=1, process_count_per_node=1)
    step = ds.ParallelRunStep(name="forget-job", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(tmp_path / "in"))],
                              output=str(tmp_path / "out"))
    with dask.config.set({"daskscore.dashboard-forget-after": 0}):
        result = step.run(client=cluster_client)
    assert result.status == "Completed"
    # daskscore status first (no route was asked since the job ended), then the
    # route: both have forgotten it
    job_id = read_report(tmp_path / "out")["job_id"]
    proc = cli(dask_cluster.tracker, "status", job_id, "--scheduler",
               dask_cluster.address, timeout=120)
    assert proc.returncode != 0 and "no job" in proc.stderr
    jobs = json.loads(_get(dask_cluster.url("/daskscore/api/jobs")))
    assert job_id not in jobs
    assert not [j for j in jobs.values() if j.get("step") == "forget-job"]
