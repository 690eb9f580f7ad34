"""Two ``daskscore run`` commands into one output folder: one writer at a time.

Real subprocesses, each with its own embedded cluster. The first job's ``run()``
waits at a gate file, so the second command starts while the first one really
is scoring: it refuses with one line naming the running job, or waits for it
with ``--wait-for-lock`` and then runs alone. Ctrl-C gives the lock back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import daskscore

# the daskscore this test imports, also in the processes it starts
REPO = Path(daskscore.__file__).resolve().parents[1]


# run() says it started, then waits for the gate; it returns rows naming the script
GATED = """\
import os
import time
from pathlib import Path

HERE = Path(FOLDER)  # the test's folder (the script runs from a bundle)


def init():
    pass


def run(mini_batch):
    (HERE / f"started-{os.getpid()}").write_text("")
    while not (HERE / "gate").exists():
        time.sleep(0.05)
    return [f"{TAG} {os.path.basename(p)}" for p in mini_batch]
"""


def write_job(folder: Path) -> None:
    folder.mkdir()
    for name, tag in (("slow.py", "one"), ("slow2.py", "two")):
        (folder / name).write_text(
            f"TAG = {tag!r}\nFOLDER = {str(folder)!r}\n" + GATED
        )
    data = folder / "data"
    data.mkdir()
    for i in range(6):
        (data / f"item-{i}.txt").write_text(str(i))


def command(script: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "daskscore.cli", "run", "--entry-script", script,
        "--input", "data", "--output", "out/diff", "--mini-batch-size", "2",
        "--process-count-per-node", "1", "--no-progress", *extra,
    ]


def start(folder: Path, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=folder, env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_until_scoring(folder: Path, proc: subprocess.Popen) -> str:
    """Wait until the job's run() is running; return its job id (from the lock)."""
    while not list(folder.glob("started-*")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return json.loads((folder / "out/diff/.daskscore/lock.json").read_text())["job_id"]


def test_second_run_refuses_then_waits_with_wait_for_lock(tmp_path):
    folder = tmp_path / "job"
    write_job(folder)
    first = start(folder, command("slow.py"))
    waiting = None
    try:
        first_job = wait_until_scoring(folder, first)
        assert first_job.startswith("slow-")

        refused = subprocess.run(
            command("slow2.py"), cwd=folder, capture_output=True, text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120,
        )

        assert refused.returncode == 1, refused.stdout + refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("daskscore: error: the output folder "), lines[0]
        assert f"is in use by job {first_job} (step slow, pid " in lines[0]
        assert "--wait-for-lock" in lines[0]
        assert refused.stdout == ""

        waiting = start(folder, command("slow2.py", "--wait-for-lock"))
        # what it says before it waits (one line: that it waits, and for what)
        said = [waiting.stderr.readline()]
        while said[-1] and "waiting" not in said[-1]:
            said.append(waiting.stderr.readline())
        assert f"in use by job {first_job}" in said[-1], said
        (folder / "gate").write_text("")
        out, err = first.communicate(timeout=240)
        assert first.returncode == 0, out + err
        assert "Completed: 6 of 6 items succeeded" in out
        out2, err2 = waiting.communicate(timeout=240)
        assert waiting.returncode == 0, out2 + err2
        assert "Completed: 6 of 6 items succeeded" in out2
    finally:
        (folder / "gate").write_text("")
        for proc in (first, waiting):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    collected = (folder / "out/diff/parallel_run_step.txt").read_text().split("\n")
    assert collected == [f"two item-{i}.txt" for i in range(6)] + [""]
    assert "Step: slow2" in (folder / "out/diff/logs/job_result.txt").read_text()
    assert not (folder / "out/diff/.daskscore/lock.json").exists()


def test_ctrl_c_gives_the_lock_back(tmp_path):
    folder = tmp_path / "job"
    write_job(folder)
    proc = start(folder, command("slow.py"))
    try:
        wait_until_scoring(folder, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert not (folder / "out/diff/.daskscore/lock.json").exists()
