"""The entry script's lifecycle: init() once per worker process, shutdown() at the end.

Most tests here use ``step.run()`` without a client: daskscore starts its own
embedded cluster and must have closed it (no worker or runner process left, every
``shutdown()`` finished) before ``run()`` returns.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import dask
import pytest
from helpers import (
    alive,
    counts,
    file_names,
    make_files,
    make_step,
    markers,
    read_lines,
    write_script,
)

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(180)

WORKERS = 2

# Markers: init-<pid>, run-<pid>-<file>, shutdown-<pid> (written after a pause, so
# its presence means shutdown() finished). Each holds the parent's pid: the worker.
LIFECYCLE_SCRIPT = """
import time

def init():
    mark("init")

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    mark("run", names[0])
    time.sleep(0.05)
    return names

def shutdown():
    time.sleep(1.0)
    mark("shutdown")
"""


def pids(marker_dir, kind):
    return sorted({int(s.split("-")[0]) for s in markers(marker_dir, kind)})


def parent_pids(marker_dir, kind):
    return sorted({int((marker_dir / f"{kind}-{s}").read_text())
                   for s in markers(marker_dir, kind)})


@pytest.fixture(scope="module")
def embedded_job(tmp_path_factory):
    """One job on daskscore's own embedded cluster of WORKERS worker processes."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    script = write_script(tmp / "src", LIFECYCLE_SCRIPT, prelude=True)
    marker_dir = tmp / "markers"
    marker_dir.mkdir()
    make_files(tmp / "in", 20)
    out = tmp / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp / "in")), out,
                       mini_batch_size="1", node_count=1,
                       process_count_per_node=WORKERS,
                       environment_variables={"MARKER_DIR": str(marker_dir)},
                       ).run()
    # taken at once: what is alive right after run() returned
    left = alive(pids(marker_dir, "init") + parent_pids(marker_dir, "init"))
    return result, out, marker_dir, left


def test_embedded_job_completes(embedded_job):
    result, out, _, _ = embedded_job
    assert result.status == "Completed", result.reason
    assert counts(result) == (20, 20, 0)
    assert read_lines(out / "parallel_run_step.txt") == file_names(20)


def test_init_runs_once_per_worker_process_and_never_in_the_client(embedded_job):
    _, _, marker_dir, _ = embedded_job
    inits = markers(marker_dir, "init")
    runners = pids(marker_dir, "init")
    # one init() per runner process, one runner per worker process
    assert len(inits) == len(runners) == WORKERS
    assert len(parent_pids(marker_dir, "init")) == WORKERS
    assert os.getpid() not in runners
    assert os.getpid() not in parent_pids(marker_dir, "init")
    # every run() happened in a process whose init() had run
    assert set(pids(marker_dir, "run")) <= set(runners)


def test_shutdown_has_finished_in_every_runner_before_run_returns(embedded_job):
    _, _, marker_dir, _ = embedded_job
    assert pids(marker_dir, "shutdown") == pids(marker_dir, "init")


def test_no_worker_or_runner_process_is_left_after_run_returns(embedded_job):
    _, _, marker_dir, left = embedded_job
    assert pids(marker_dir, "init"), "the job recorded no processes"
    assert left == []


def test_embedded_cluster_keeps_worker_logs(embedded_job):
    _, out, _, _ = embedded_job
    logs = sorted(p.name for p in (out / "logs" / "sys").glob("worker-*.log"))
    assert len(logs) == WORKERS


def test_init_once_per_job_on_a_callers_cluster_and_shutdown_at_job_end(
        tmp_path, shared_client):
    script = write_script(tmp_path / "src", LIFECYCLE_SCRIPT, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 10)
    workers = shared_client.run(os.getpid)
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                       tmp_path / "out", mini_batch_size="1",
                       environment_variables={"MARKER_DIR": str(marker_dir)},
                       ).run(client=shared_client)

    assert result.status == "Completed", result.reason
    # one runner per worker of the caller's cluster, children of those workers
    assert len(markers(marker_dir, "init")) == len(workers)
    assert parent_pids(marker_dir, "init") == sorted(workers.values())
    # the job's end tears the plugin down: shutdown() runs and the runners end
    # (only the embedded cluster promises this before run() returns: wait for it),
    # and the caller's workers are still there
    runners = pids(marker_dir, "init")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
            pids(marker_dir, "shutdown") != runners or alive(runners)):
        time.sleep(0.2)
    assert pids(marker_dir, "shutdown") == runners
    assert alive(runners) == []
    assert shared_client.run(os.getpid) == workers


@pytest.mark.slow
def test_a_dead_worker_process_loses_no_item_and_duplicates_none(tmp_path):
    script = write_script(tmp_path / "src", """
        import signal
        import time

        def init():
            mark("init")

        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            killed = os.path.join(MARKER_DIR, "killed")
            if names == ["item-0005.txt"] and not os.path.exists(killed):
                open(killed, "w").close()
                os.kill(os.getppid(), signal.SIGKILL)  # the whole Dask worker dies
                time.sleep(60)
            mark("run", names[0])
            time.sleep(0.05)
            return names
    """, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 30)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1", process_count_per_node=WORKERS,
                       environment_variables={"MARKER_DIR": str(marker_dir)},
                       ).run()

    assert (marker_dir / "killed").exists()
    assert result.status == "Completed", result.reason
    assert counts(result) == (30, 30, 0)
    assert read_lines(result.output_file) == file_names(30)
    scored = sorted(s.split("-", 1)[1] for s in markers(marker_dir, "run"))
    assert scored == file_names(30), "every mini-batch scored exactly once"
    everything = pids(marker_dir, "init") + parent_pids(marker_dir, "init")
    assert alive(everything) == []


# -- a second step.run() in the same process (a notebook): the cluster is kept ------
def _kept_run(script, tmp_path, out, env):
    return make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                     tmp_path / out, mini_batch_size="1",
                     process_count_per_node=WORKERS, environment_variables=env).run()


def test_a_kept_embedded_cluster_serves_the_next_runs_and_closes_on_request(
        tmp_path):
    """With ``daskscore.embedded-cluster.keep`` the worker processes of one job
    score the next ones. A job of the same script takes over the runners, init()
    done; a changed script gets runners of its own (the old ones shut down), and
    ``ds.close_embedded_clusters()`` stops everything."""
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 6)
    env = {"MARKER_DIR": str(marker_dir)}
    first = write_script(tmp_path / "a", LIFECYCLE_SCRIPT, prelude=True)
    second = write_script(tmp_path / "b", LIFECYCLE_SCRIPT.replace(
        "return names", "return [n.upper() for n in names]"), prelude=True)
    try:
        with dask.config.set({"daskscore.embedded-cluster.keep": True}):
            one = _kept_run(first, tmp_path, "out1", env)
            kept = pids(marker_dir, "init")
            assert len(kept) == WORKERS and alive(kept) == kept
            assert pids(marker_dir, "shutdown") == []  # kept, not shut down
            # a notebook scoring again into the same output folder, emptied
            shutil.rmtree(tmp_path / "out1")
            two = _kept_run(first, tmp_path, "out1", env)
            # the same runners scored the second job: no init() again
            assert pids(marker_dir, "init") == kept
            assert set(pids(marker_dir, "run")) == set(kept)
            three = _kept_run(second, tmp_path, "out1", env)
            # another script: new runners; the kept ones ran shutdown()
            assert len(pids(marker_dir, "init")) == 2 * WORKERS
            assert pids(marker_dir, "shutdown") == kept
    finally:
        ds.close_embedded_clusters()
    assert [r.status for r in (one, two, three)] == ["Completed"] * 3
    assert (one.output_file, two.output_file) == (three.output_file,) * 2
    # the third job (another script: a fresh start) rewrote the collected file
    assert read_lines(tmp_path / "out1" / "parallel_run_step.txt") == [
        n.upper() for n in file_names(6)]
    assert two.mini_batches == 6 and two.resumed_mini_batches == 0
    # the jobs' runners logged into the output folder's own logs
    assert (tmp_path / "out1" / "logs" / "user").is_dir()
    # all three jobs ran in the same WORKERS worker processes, now gone
    workers = parent_pids(marker_dir, "init")
    assert len(workers) == WORKERS
    everything = workers + pids(marker_dir, "init")
    deadline = time.monotonic() + 60
    while alive(everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(everything) == []


def test_without_keep_each_run_has_a_cluster_of_its_own(tmp_path):


    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 4)
    script = write_script(tmp_path / "src", LIFECYCLE_SCRIPT, prelude=True)
    with dask.config.set({"daskscore.embedded-cluster.keep": "auto"}):
        # pytest is no interactive session: "auto" keeps nothing
        for out in ("out1", "out2"):
            result = make_step(
                script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                tmp_path / out, mini_batch_size="2", process_count_per_node=WORKERS,
                environment_variables={"MARKER_DIR": str(marker_dir)},
            ).run()
            assert result.status == "Completed", result.reason
            assert alive(parent_pids(marker_dir, "init")) == []
    assert len(parent_pids(marker_dir, "init")) == 2 * WORKERS


def _http_get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_the_embedded_dashboard_serves_daskscore_at_once_and_dasks_pages_on_a_visit(
        tmp_path):
    """The embedded scheduler starts without Bokeh (a job does not pay ~1 s of
    CPU for its import): the job routes answer at once; Dask's own pages, with
    the Daskscore tab, are loaded by the first visit."""
    from daskscore.engine.cluster import embedded_cluster, release_embedded_cluster
    from daskscore.engine.live import install_dashboard

    cluster, client, reused = embedded_cluster(1, str(tmp_path / "sys"))
    try:
        assert not reused
        base = client.dashboard_link.rsplit("/status", 1)[0]
        install_dashboard(client)
        status, body = _http_get(f"{base}/daskscore/api/jobs")
        assert status == 200 and body.startswith("{")
        time.sleep(2)

        def apps():
            http = cluster.scheduler.http_application
            return [type(a).__name__ for a in http.applications]

        assert apps() == ["Application"], "Bokeh's pages with nobody looking"
        status, body = _http_get(f"{base}/status")  # loads them, then redirects
        assert status == 200, "Dask's /status page did not come"
        assert 'href="daskscore"' in body, "no Daskscore tab in Dask's pages"
        assert apps() == ["DaskBokehTornado"]  # Dask serves its pages from now on
        status, body = _http_get(f"{base}/workers")
        assert status == 200 and "Workers" in body
    finally:
        release_embedded_cluster(cluster, client, 1, False)


def test_a_rerun_resumes_unless_an_input_was_rewritten_in_place(tmp_path,
                                                              shared_client):
    """Rewriting a file in place (same name, same size, its old mtime put back)
    is seen by its change time: the rerun scores everything again."""
    script = write_script(tmp_path / "src", """
        def init():
            pass

        def run(mini_batch):
            return [open(p).read().strip() for p in mini_batch]
    """)
    make_files(tmp_path / "in", 6)

    def rerun():
        return make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                         tmp_path / "out", mini_batch_size="2").run(
                             client=shared_client)

    first = rerun()
    assert first.status == "Completed" and first.resumed_mini_batches == 0
    assert rerun().resumed_mini_batches == 3  # nothing changed: all kept
    target = tmp_path / "in" / "item-0004.txt"
    times = (target.stat().st_atime, target.stat().st_mtime)
    target.write_text("X\n")
    os.utime(target, times)
    third = rerun()
    assert third.status == "Completed" and third.resumed_mini_batches == 0
    assert read_lines(third.output_file) == ["0", "1", "2", "3", "X", "5"]


def _message_logs(dask_scheduler):
    return {w: s.recent_message_log.maxlen
            for w, s in dask_scheduler.stream_comms.items()}


def test_dasks_message_logs_keep_a_few_batches_not_every_pack(tmp_path, shared_client):
    """Dask's batched streams keep their last 1,000 batches for debugging, with
    every pack task (and its paths) in them: 130 MB for 10,000 mini-batches of
    100 files in the client's process, unless they keep only a few."""
    from daskscore.engine.cluster import (
        MESSAGE_LOG_LENGTH,
        embedded_cluster,
        release_embedded_cluster,
    )

    script = write_script(tmp_path / "src", """
        def init():
            pass

        def run(mini_batch):
            return mini_batch
    """)
    make_files(tmp_path / "in", 4)
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                       tmp_path / "out", mini_batch_size="2").run(client=shared_client)
    assert result.status == "Completed"
    # the job's own client; a user's scheduler keeps its own logs
    assert shared_client.scheduler_comm.recent_message_log.maxlen == MESSAGE_LOG_LENGTH
    cluster, client, _reused = embedded_cluster(1, None)
    try:
        assert set(client.run_on_scheduler(_message_logs).values()) == {
            MESSAGE_LOG_LENGTH}
        # a worker started again (killed: its supervisor starts it again) gets
        # a new stream: short too
        before = set(client.scheduler_info()["workers"])
        os.kill(cluster.workers["worker-0"].process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while set(client.scheduler_info()["workers"]) in (before, set()):
            assert time.monotonic() < deadline, "the worker did not come back"
            time.sleep(0.1)
        assert set(client.run_on_scheduler(_message_logs).values()) == {
            MESSAGE_LOG_LENGTH}
    finally:
        release_embedded_cluster(cluster, client, 1, False)
