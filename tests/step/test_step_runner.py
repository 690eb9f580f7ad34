"""The runner process's health end to end: memory, init() that hangs, children.

Real worker and runner processes on the session's embedded cluster, real files
in ``tmp_path``, real entry scripts; processes are followed by pid (markers).
"""

from __future__ import annotations

import io
import logging
import threading
import time

import dask.config
import pytest
from helpers import (
    alive,
    counts,
    file_names,
    make_files,
    make_step,
    markers,
    read_lines,
    read_report,
    read_tries,
    tries_by_mini_batch,
    write_script,
)

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(180)


def split_markers(marker_dir, kind):
    """(pid, suffix) of each marker ``<kind>-<pid>-<suffix>``."""
    out = []
    for s in markers(marker_dir, kind):
        pid, _, rest = s.partition("-")
        out.append((int(pid), rest))
    return out


def wait_until_gone(pids):
    """Wait (under the test's timeout) until none of ``pids`` runs any more."""
    while alive(pids):
        time.sleep(0.05)


# -- B3: a MemoryError restarts the runner ----------------------------------------
# Keeps 20 MB more per call in a global, and "runs out of memory" (MemoryError)
# from its third call on: in the same process every retry fails at once.
HOLDING_SCRIPT = """
HELD = []

def init():
    mark("init")

def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    HELD.append(b"\\x01" * (20 << 20))
    if len(HELD) > 2:
        mark("oom", name)
        raise MemoryError(f"holding {20 * len(HELD)} MB")
    mark("run", name)
    return [name]
"""


def test_memory_error_restarts_the_runner_and_the_retry_succeeds(tmp_path,
                                                                 shared_client):
    script = write_script(tmp_path / "src", HOLDING_SCRIPT, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 6)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1", run_max_try=3,
                       environment_variables={"MARKER_DIR": str(marker_dir)},
                       ).run(client=shared_client)

    # 6 mini-batches on 2 runners: one runner scores 3 or more and runs out
    ooms = split_markers(marker_dir, "oom")
    assert ooms, "no runner ran out of memory"
    assert result.status == "Completed", result.reason
    assert counts(result) == (6, 6, 0), "a retry in the poisoned runner failed"
    assert read_lines(result.output_file) == file_names(6)
    tries = tries_by_mini_batch(out)
    inits = {pid for pid, _ in split_markers(marker_dir, "init")}
    runs = dict((name, pid) for pid, name in split_markers(marker_dir, "run"))
    for pid, name in ooms:
        index = file_names(6).index(name)
        first, retry = tries[index]
        assert first["status"] == "RUN_EXCEPTION"
        assert "MemoryError: holding" in first["error"]
        assert "restarted" in first["error"]
        assert retry["status"] == "RUN_DONE"
        # the retry ran in a new runner process, which ran init() again
        assert runs[name] != pid
        assert runs[name] in inits
    assert len(inits) == len(shared_client.scheduler_info()["workers"]) + len(ooms)
    assert alive([pid for pid, _ in ooms]) == []


def test_peak_rss_of_each_try_is_in_processed_mini_batches(tmp_path, shared_client):
    script = write_script(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            name = os.path.basename(mini_batch[0])
            if name == "item-0003.txt":
                blob = b"\\x01" * (100 << 20)  # 100 MiB, touched
                assert len(blob)
            return [name]
    """)
    make_files(tmp_path / "in", 4)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1").run(client=shared_client)

    assert result.status == "Completed", result.reason
    peaks = {int(r["mini_batch_id"]): float(r["peak_rss_mib"])
             for r in read_tries(out)}
    assert sorted(peaks) == [0, 1, 2, 3]
    assert all(peak > 0 for peak in peaks.values()), peaks
    others = [peaks[i] for i in (0, 1, 2)]
    assert peaks[3] - min(others) >= 90, peaks
    try:  # Linux: the peak is reset at the start of each try
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return
    assert peaks[3] - max(others) >= 90, peaks


def test_memory_limit_setting_caps_the_runner_and_it_is_restarted(tmp_path,
                                                                  shared_client):
    pytest.importorskip("numpy")
    script = write_script(tmp_path / "src", """
        import numpy as np

        def init():
            mark("init")

        def run(mini_batch):
            name = os.path.basename(mini_batch[0])
            big = os.path.join(MARKER_DIR, "big")
            if name == "item-0001.txt" and not os.path.exists(big):
                open(big, "w").close()
                # 4 GiB of address space, never touched: fine without a limit
                block = np.empty(4 << 30, dtype=np.uint8)
                del block
            return [name]
    """, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 3)
    out = tmp_path / "out"
    step = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                     mini_batch_size="1", run_max_try=2,
                     environment_variables={"MARKER_DIR": str(marker_dir)})
    with dask.config.set({"daskscore.runner.memory-limit": "2GiB"}):
        result = step.run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert counts(result) == (3, 3, 0)
    tries = tries_by_mini_batch(out)
    assert [r["status"] for r in tries[1]] == ["RUN_EXCEPTION", "RUN_DONE"]
    assert "MemoryError" in tries[1][0]["error"]
    assert "daskscore.runner.memory-limit=2048 MiB" in tries[1][0]["error"]
    assert len(markers(marker_dir, "init")) == len(
        shared_client.scheduler_info()["workers"]) + 1


# -- init() that hangs ----------------------------------------------------------------
def test_init_timeout_stops_a_hanging_init_with_a_clear_reason(tmp_path,
                                                               shared_client):
    script = write_script(tmp_path / "src", """
        import time

        def init():
            mark("init")
            time.sleep(1000)

        def run(mini_batch):
            return [os.path.basename(p) for p in mini_batch]
    """, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 2)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1", run_max_try=1, init_timeout="2s",
                       environment_variables={"MARKER_DIR": str(marker_dir)},
                       ).run(client=shared_client)

    assert result.status == "Failed"
    assert "init() did not finish within init_timeout=2 s" in result.reason
    assert "--init-timeout" in result.reason
    assert {r["status"] for r in read_tries(out)} == {"INIT_ERROR"}
    inits = [pid for pid, _ in split_markers(marker_dir, "init")]
    assert inits
    wait_until_gone(inits)


def test_progress_line_says_init_is_still_running_and_for_how_long(tmp_path,
                                                                   shared_client):
    script = write_script(tmp_path / "src", """
        import time

        def init():
            mark("init")
            while not os.path.exists(os.path.join(MARKER_DIR, "go")):
                time.sleep(0.05)

        def run(mini_batch):
            return [os.path.basename(p) for p in mini_batch]
    """, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 4)
    stream = io.StringIO()
    step = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                     tmp_path / "out", mini_batch_size="1",
                     environment_variables={"MARKER_DIR": str(marker_dir)})
    results = {}

    def job():
        results["result"] = step.run(
            client=shared_client, progress=ds.TextProgress(stream, interval_s=0))

    thread = threading.Thread(target=job)
    thread.start()
    workers = len(shared_client.scheduler_info()["workers"])
    wanted = f"init() still running on {workers} workers (for "
    try:
        while wanted not in stream.getvalue() and thread.is_alive():
            time.sleep(0.05)
    finally:
        (marker_dir / "go").touch()
        thread.join()

    lines = stream.getvalue().splitlines()
    waiting = [line for line in lines if wanted in line]
    assert waiting, lines
    assert waiting[0].startswith("Processed 0 of 4 mini-batches")
    assert results["result"].status == "Completed", results["result"].reason
    assert wanted not in lines[-1]  # the last line: init() is done


# -- children that run() starts ------------------------------------------------
def test_children_started_by_run_do_not_outlive_the_job(tmp_path, shared_client):
    """A child that never exits is killed with its runner: after a timeout, and
    when the job ends (no ``sleep`` left with ppid 1)."""
    script = write_script(tmp_path / "src", """
        import subprocess
        import time

        def init():
            pass

        def run(mini_batch):
            name = os.path.basename(mini_batch[0])
            child = subprocess.Popen(["sleep", "1000"])
            mark("child", str(child.pid))
            hung = os.path.join(MARKER_DIR, "hung")
            if name == "item-0001.txt" and not os.path.exists(hung):
                open(hung, "w").close()
                time.sleep(1000)
            return [name]
    """, prelude=True)
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    make_files(tmp_path / "in", 4)
    out = tmp_path / "out"
    result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")), out,
                       mini_batch_size="1", run_invocation_timeout=2, run_max_try=2,
                       environment_variables={"MARKER_DIR": str(marker_dir)},
                       ).run(client=shared_client)

    assert result.status == "Completed", result.reason
    assert counts(result) == (4, 4, 0)
    assert [r["status"] for r in tries_by_mini_batch(out)[1]] == [
        "RUN_TIMEOUT", "RUN_DONE"]
    children = [int(rest) for _, rest in split_markers(marker_dir, "child")]
    assert len(children) == 5
    wait_until_gone(children)


# -- run() returning the wrong type ---------------------------------------------
@pytest.mark.parametrize("returned, shown", [
    ("(os.path.basename(p) for p in mini_batch)",
     "run() returned a generator; return a list, tuple or pandas DataFrame"),
    ("np.array([os.path.basename(p) for p in mini_batch])",
     "run() returned a numpy.ndarray; return a list, tuple or pandas DataFrame "
     "(e.g. its .tolist())"),
], ids=["generator", "numpy"])
def test_no_item_succeeding_warns_why(tmp_path, shared_client, caplog, returned,
                                      shown):
    pytest.importorskip("numpy")
    script = write_script(tmp_path / "src", f"""
        import os

        import numpy as np

        def init():
            pass

        def run(mini_batch):
            return {returned}
    """)
    make_files(tmp_path / "in", 4)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="daskscore"):
        result = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                           out, mini_batch_size="2", run_max_try=1,
                           ).run(client=shared_client)

    assert result.status == "Completed"  # error_threshold=-1 ignores failures
    assert counts(result) == (4, 0, 4)
    warning = f"no item succeeded: all 2 mini-batches failed with: {shown}"
    lines = (out / "logs" / "job_result.txt").read_text().splitlines()
    said = [line for line in lines if "no item succeeded" in line]
    assert len(said) == 1 and warning in said[0], lines
    assert any(warning in w for w in read_report(out)["warnings"])
    console = [r.getMessage() for r in caplog.records if r.name == "daskscore"
               and r.levelno == logging.WARNING]
    assert sum(warning in m for m in console) == 1, console
