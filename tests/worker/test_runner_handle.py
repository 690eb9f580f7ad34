"""One runner process and what its script started, without Dask: a real
``RunnerHandle`` starts a real ``python -m daskscore.runner`` whose ``init()``
starts a child that never exits; the child must go with its runner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from daskscore._protocol import MiniBatchSpec, RunnerSetup
from daskscore.worker.handle import RunnerHandle

pytestmark = pytest.mark.timeout(120)

SCRIPT = """
import os
import subprocess

def init():
    child = subprocess.Popen(["sleep", "1000"])
    with open(os.path.join(os.path.dirname(__file__), "child"), "w") as f:
        f.write(str(child.pid))

def run(mini_batch):
    return mini_batch
"""


def running(pids):
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_until_gone(pids):
    """Wait (under the test's timeout) until none of ``pids`` runs any more."""
    while running(pids):
        time.sleep(0.05)


def start(folder: Path) -> RunnerHandle:
    (folder / "score.py").write_text(textwrap.dedent(SCRIPT))
    setup = RunnerSetup(
        bundle_dir=str(folder), script_name="score.py", logging_level="INFO",
        agent_name="test", entry_script_log=str(folder / "entry_script.log"),
        working_dir=str(folder), parts_url=str(folder / "parts"),
        output_format="txt", output_action="append_row",
    )
    handle = RunnerHandle(setup, dict(os.environ), str(folder),
                          str(folder / "stdout.txt"), str(folder / "stderr.txt"))
    assert handle.wait_imported() is None
    assert handle.wait_ready(60) is None
    return handle


def test_killing_a_runner_kills_what_its_script_started(tmp_path):
    handle = start(tmp_path)
    child = int((tmp_path / "child").read_text())
    assert running([handle.proc.pid, child]) == [handle.proc.pid, child]
    handle.kill()
    assert handle.proc.returncode is not None
    wait_until_gone([child])


def test_a_runner_shut_down_at_the_end_of_a_job_leaves_no_child(tmp_path):
    handle = start(tmp_path)
    child = int((tmp_path / "child").read_text())
    assert handle.shutdown(timeout=60) == ""
    assert handle.proc.returncode == 0
    wait_until_gone([child])


# A stand-in for a Dask worker that dies (SIGKILL, OOM) without stopping its
# runner: the runner sees it is gone and takes its process group with it.
WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_runner_handle import start
handle = start(Path(sys.argv[1]))
print(handle.proc.pid, flush=True)
import os
os._exit(0)
"""


def test_a_runner_whose_worker_died_takes_its_children_with_it(tmp_path):
    code = WORKER.format(tests=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                         capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    runner = int(out.stdout.strip())
    child = int((tmp_path / "child").read_text())
    wait_until_gone([runner, child])


# -- timeouts: the runner's phase board, not one message per phase (issue 12) ----
SLEEPER = """
import time

def init():
    pass

def run(mini_batch):
    time.sleep(float(mini_batch[0]))
    return mini_batch
"""


def _runner(folder: Path, script: str) -> RunnerHandle:
    """A started runner of ``script`` (its init() done) in ``folder``."""
    (folder / "score.py").write_text(textwrap.dedent(script))
    setup = RunnerSetup(
        bundle_dir=str(folder), script_name="score.py", logging_level="INFO",
        agent_name="test", entry_script_log=str(folder / "entry_script.log"),
        working_dir=str(folder), parts_url=str(folder / "parts"),
        output_format="txt", output_action="append_row", return_result=True,
    )
    handle = RunnerHandle(setup, dict(os.environ), str(folder),
                          str(folder / "stdout.txt"), str(folder / "stderr.txt"))
    assert handle.wait_imported() is None
    assert handle.wait_ready(60) is None
    return handle


def _sleeper(folder: Path) -> RunnerHandle:
    return _runner(folder, SLEEPER)


def _spec():
    return MiniBatchSpec(index=0, kind="items", start=0, stop=1, items=1)


def test_a_hung_run_is_stopped_after_run_timeout_not_the_longer_read_timeout(
        tmp_path):
    handle = _sleeper(tmp_path)
    outcome = handle.call(_spec(), ["1000"], 1, run_timeout=1.0, read_timeout=600)
    assert outcome.status == "RUN_TIMEOUT"
    assert "run_invocation_timeout=1 s" in outcome.error
    # timed from when run() began, by the runner's own clock
    assert 1.0 <= outcome.run_seconds < 600
    assert handle.proc.returncode is not None and not handle.alive


def test_a_run_longer_than_the_board_look_interval_is_not_stopped(tmp_path):
    handle = _sleeper(tmp_path)
    try:
        # the worker looks at the board every run_timeout / 20 (0.1 s) while the
        # try reads; run() takes 1.5 s of its 2 s
        outcome = handle.call(_spec(), ["1.5"], 1, run_timeout=2.0, read_timeout=5)
        assert outcome.status == "RUN_DONE", outcome.error
        assert outcome.result == ["1.5"]
        assert outcome.run_seconds >= 1.5
        # the next try on the same runner starts from a clean board
        outcome = handle.call(_spec(), ["0"], 2, run_timeout=2.0, read_timeout=5)
        assert outcome.status == "RUN_DONE", outcome.error
    finally:
        handle.kill()


# -- files found by walking a folder are not stat'ed (issue 12) --------------------
OPENER = """
def init():
    pass

def run(mini_batch):
    return [open(p).read() for p in mini_batch]
"""


def _opener(folder: Path) -> RunnerHandle:
    return _runner(folder, OPENER)


def test_a_listed_file_deleted_after_planning_is_a_read_error_and_the_rest_scored(
        tmp_path):
    import daskscore as ds

    data = tmp_path / "in"
    data.mkdir()
    for i in range(4):
        (data / f"f{i}.txt").write_text(f"v{i}")
    plan, _fingerprint = ds.Dataset.File.from_files(str(data)).plan(4)
    spec = plan[0]
    assert spec.listed  # walked from a folder: known to exist when planned
    (data / "f2.txt").unlink()
    (tmp_path / "src").mkdir()
    handle = _opener(tmp_path / "src")
    try:
        outcome = handle.call(spec, None, 1, run_timeout=60)
        assert outcome.status == "READ_ERROR", outcome.error
        assert outcome.error == f"1 file(s) cannot be read: {data / 'f2.txt'}"
        assert outcome.result == ["v0", "v1", "v3"]
        assert (outcome.items, outcome.read_failed) == (4, 1)
        # all there: run() is given the paths as they are, and scores them
        (data / "f2.txt").write_text("v2")
        outcome = handle.call(spec, None, 2, run_timeout=60)
        assert outcome.status == "RUN_DONE", outcome.error
        assert outcome.result == ["v0", "v1", "v2", "v3"]
    finally:
        handle.kill()


def test_a_listed_file_deleted_after_planning_is_a_read_error_though_run_never_opens_it(
        tmp_path):
    """run() that only names its files (it would not notice one missing): the
    folder's change time tells the runner to look for each file."""
    import daskscore as ds

    data = tmp_path / "in" / "sub"
    data.mkdir(parents=True)
    for i in range(3):
        (data / f"f{i}.txt").write_text(f"v{i}")
    dataset = ds.Dataset.File.from_files(str(tmp_path / "in"))
    spec = dataset.plan(3)[0][0]
    (tmp_path / "src").mkdir()
    handle = _runner(tmp_path / "src", """
        import os

        def init():
            pass

        def run(mini_batch):
            return [os.path.basename(p) for p in mini_batch]
    """)
    try:
        outcome = handle.call(spec, None, 1, run_timeout=60)
        assert outcome.status == "RUN_DONE", outcome.error  # nothing changed
        (data / "f1.txt").unlink()
        outcome = handle.call(spec, None, 2, run_timeout=60)
        assert outcome.status == "READ_ERROR", outcome.error
        assert outcome.error == f"1 file(s) cannot be read: {data / 'f1.txt'}"
        assert outcome.result == ["f0.txt", "f2.txt"]
        # planned again after the change: its files are handed over as they are
        spec = dataset.plan(3)[0][0]
        assert spec.paths == (str(data / "f0.txt"), str(data / "f2.txt"))
        outcome = handle.call(spec, None, 3, run_timeout=60)
        assert outcome.status == "RUN_DONE", outcome.error
    finally:
        handle.kill()


def test_the_peak_memory_of_each_try_is_its_own(tmp_path):
    handle = _runner(tmp_path, """
        def init():
            pass

        def run(mini_batch):
            blob = bytearray(int(mini_batch[0]) << 20)
            blob[::4096] = b"x" * len(blob[::4096])
            return mini_batch
    """)
    try:
        peaks = [handle.call(_spec(), [mib], 1, run_timeout=60).peak_rss_mib
                 for mib in ("0", "0", "200", "0", "0", "100", "0")]
        assert peaks[2] - peaks[1] >= 190  # the 200 MiB try sees its blob
        assert peaks[3] < peaks[2] - 150  # the next try does not inherit it
        assert abs(peaks[4] - peaks[3]) < 5
        assert 90 <= peaks[5] - peaks[4] < 150
        assert peaks[6] < peaks[5] - 50
    finally:
        handle.kill()
