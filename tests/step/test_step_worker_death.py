"""Workers of the embedded cluster that die: replaced, counted as tries, bounded.

A ``run()`` that does ``os.kill(os.getppid(), SIGKILL)`` kills the worker that
started its runner. The embedded cluster starts that worker again, the lost try
counts as one of the mini-batch's ``run_max_try`` tries (``WORKER_DIED``), and a
job that cannot make progress fails after ``daskscore.no-progress-timeout``
with a root cause instead of waiting for good. Each test starts its own
embedded cluster (``step.run()`` without a client) and it is closed when
``run()`` returns.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dask
import psutil
import pytest
from helpers import (
    counts,
    file_names,
    make_files,
    make_step,
    read_lines,
    read_report,
    records_committed,
    tries_by_mini_batch,
    write_script,
)

import daskscore as ds

pytest_plugins = ["helpers"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# run() leaves one marker per item it is given (RUN_DIR/<file>-<pid>-<random>),
# and kills its worker on every file whose content is "kill".
KILLER = """
import os
import signal
import time


def init():
    pass


def run(mini_batch):
    out = []
    for path in mini_batch:
        name = os.path.basename(path)
        marker = f"{name}-{os.getpid()}-{os.urandom(4).hex()}"
        open(os.path.join(os.environ["RUN_DIR"], marker), "w").close()
        if open(path).read().strip() == "kill":
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)  # the runner exits once its worker is gone
        out.append(name)
    return out
"""


def _files(folder: Path) -> ds.FileDataset:
    return ds.Dataset.File.from_files(str(folder))


def _calls(run_dir: Path) -> Counter:
    """How many times run() was given each file."""
    return Counter(p.name.split("-", 2)[0] + "-" + p.name.split("-", 2)[1]
                   for p in run_dir.iterdir())


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _no_new_children(before: set[int]) -> None:
    """The embedded cluster's worker processes (and replacements) are gone."""
    left = []
    for pid in _children() - before:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {' '.join(proc.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    assert not left, f"processes left running after step.run(): {left}"


def test_a_mini_batch_that_kills_its_worker_fails_after_run_max_try(tmp_path):
    n, killer = 6, 2
    make_files(tmp_path / "in", n,
               content=lambda i: "kill\n" if i == killer else f"{i}\n")
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    script = write_script(tmp_path / "src", KILLER)
    step = make_step(script, _files(tmp_path / "in"), tmp_path / "out",
                     mini_batch_size="1", process_count_per_node=2, run_max_try=3,
                     environment_variables={"RUN_DIR": str(run_dir)})
    before = _children()
    result = step.run()
    _no_new_children(before)

    assert result.status == "Completed", result.reason
    assert counts(result) == (n, n - 1, 1)
    assert result.failed_mini_batches == 1
    names = file_names(n)
    # every other item was scored exactly once, the killer run_max_try times
    calls = _calls(run_dir)
    assert calls == {name: 3 if i == killer else 1 for i, name in enumerate(names)}
    assert read_lines(result.output_file) == [
        name for i, name in enumerate(names) if i != killer]
    tries = tries_by_mini_batch(tmp_path / "out")
    lost = tries[killer]
    assert [(t["try"], t["status"]) for t in lost] == [
        ("1", "WORKER_DIED"), ("2", "WORKER_DIED"), ("3", "WORKER_DIED")]
    assert all(t["failed"] == "1" for t in lost)
    for i in set(range(n)) - {killer}:
        assert [t["status"] for t in tries[i]] == ["RUN_DONE"]
    report = read_report(tmp_path / "out")
    assert report["failed_mini_batches"] == 1
    record = records_committed(tmp_path / "out")[killer]
    assert record["status"] == "WORKER_DIED"
    assert "died in each of the 3 tries" in record["error"]
    # the embedded workers were started again: their logs say so
    sys_logs = "".join(p.read_text(errors="replace")
                       for p in (tmp_path / "out" / "logs" / "sys").iterdir())
    assert "killed by SIGKILL; starting it again" in sys_logs


def test_a_job_whose_workers_keep_dying_fails_within_the_no_progress_timeout(
        tmp_path):
    n = 6
    make_files(tmp_path / "in", n, content=lambda i: "kill\n")
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    script = write_script(tmp_path / "src", KILLER)
    # run_max_try is high: the job must not end by failing every mini-batch
    step = make_step(script, _files(tmp_path / "in"), tmp_path / "out",
                     mini_batch_size="1", process_count_per_node=2, run_max_try=50,
                     environment_variables={"RUN_DIR": str(run_dir)})
    before = _children()
    with dask.config.set({"daskscore.no-progress-timeout": "3s"}):
        result = step.run()
    _no_new_children(before)

    assert result.status == "Failed"
    reason = result.reason
    assert "workers died" in reason, reason
    assert "while scoring mini-batch" in reason, reason
    assert "(killed by SIGKILL)" in reason, reason
    assert "no mini-batch ended for 3 s" in reason, reason
    assert str(tmp_path / "out" / "logs" / "sys") in reason, reason
    assert result.succeeded_items == 0
    text = (tmp_path / "out" / "logs" / "job_result.txt").read_text()
    assert reason in text


def test_worker_exit_statuses_in_words():
    from daskscore.engine.cluster import describe_exit

    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(3) == "exit code 3"
