"""The lock of an output folder (``.daskscore/lock.json``): one writer at a time.

Real files and real processes: a lock held by another process is refused with
its job named, a lock whose process is gone or whose heartbeat is old is taken
over with a warning, of several processes taking over one stale lock exactly one
wins, and a job gives its lock back when it ends, also when it fails.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from helpers import make_files, make_step, write_script

import daskscore as ds
from daskscore.errors import EntryScriptError, JobError
from daskscore.output.lock import LockSettings, OutputLock
from daskscore.output.store import StateStore

pytest_plugins = ["helpers"]

# the daskscore this test imports, also in the processes it starts
REPO = Path(ds.__file__).resolve().parents[1]
FAST = LockSettings(stale_after=60, heartbeat_interval=0.05, poll_interval=0.05)


@pytest.fixture
def messages():
    """What daskscore logged (its logger may not propagate after a CLI test)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep(logging.INFO)
    logger = logging.getLogger("daskscore")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def lock_file(out: Path) -> Path:
    return out / ".daskscore" / "lock.json"


def fake_lock(out: Path, **fields) -> None:
    info = {
        "job_id": "ghost-1234abcd",
        "step": "ghost",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_started": None,
        "heartbeat": time.time(),
        "token": uuid.uuid4().hex,
        **fields,
    }
    lock_file(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = lock_file(out).with_name("fake-lock.json")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, lock_file(out))  # readers see all of it or the old one


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_held_lock_is_refused_naming_its_job(tmp_path):
    store = StateStore(str(tmp_path / "out"))
    first = OutputLock(store, "first-0123abcd", "first", FAST)
    first.acquire()
    try:
        info = json.loads(lock_file(tmp_path / "out").read_text())
        assert info["job_id"] == "first-0123abcd"
        assert info["pid"] == os.getpid()
        assert info["host"] == socket.gethostname()

        with pytest.raises(JobError) as excinfo:
            OutputLock(store, "second-4567cdef", "second", FAST).acquire()
        line = str(excinfo.value)
        assert "\n" not in line
        assert f"{store.output_url} is in use by job first-0123abcd" in line
        assert "--wait-for-lock" in line
    finally:
        first.release()
    assert not lock_file(tmp_path / "out").exists()
    second = OutputLock(store, "second-4567cdef", "second", FAST)
    second.acquire()
    second.release()


def test_the_heartbeat_is_refreshed_and_a_lost_lock_is_left_alone(tmp_path, messages):
    out = tmp_path / "out"
    lock = OutputLock(StateStore(str(out)), "beating-0123abcd", "beating", FAST)
    lock.acquire()
    first = json.loads(lock_file(out).read_text())["heartbeat"]
    while json.loads(lock_file(out).read_text() or "{}").get("heartbeat") == first:
        time.sleep(0.01)
    # another job takes the file over: this one notices and leaves it alone
    while not lock.lost:
        if json.loads(lock_file(out).read_text())["job_id"] != "thief-89abcdef":
            fake_lock(out, job_id="thief-89abcdef", host="elsewhere")
        time.sleep(0.01)
    lock.release()
    assert json.loads(lock_file(out).read_text())["job_id"] == "thief-89abcdef"
    assert any("lost the lock" in m for m in messages)


@pytest.mark.parametrize(
    "why",
    ["dead pid", "reused pid", "old heartbeat", "unreadable and old",
     "left by this process"],
)
def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, messages, why):
    out = tmp_path / "out"
    if why == "dead pid":
        fake_lock(out, pid=dead_pid())
    elif why == "reused pid":  # a live pid, but not the process that took it
        fake_lock(out, pid=os.getppid(), pid_started=1.0)
    elif why == "left by this process":  # a job whose storage failed at its end
        fake_lock(out, pid=os.getpid())
    elif why == "old heartbeat":
        fake_lock(out, host="elsewhere", heartbeat=time.time() - 3600)
    else:
        lock_file(out).parent.mkdir(parents=True)
        lock_file(out).write_text("{")
        os.utime(lock_file(out), (time.time() - 3600, time.time() - 3600))
    lock = OutputLock(StateStore(str(out)), "new-0123abcd", "new", FAST)

    lock.acquire()

    assert json.loads(lock_file(out).read_text())["job_id"] == "new-0123abcd"
    taken = [m for m in messages if m.startswith("took over the lock of")]
    assert len(taken) == 1, messages
    lock.release()
    assert not lock_file(out).exists()


@pytest.mark.parametrize(
    "fields",
    [{"pid": os.getppid()}, {"host": "elsewhere", "pid": 1}],
    ids=["this host", "other host"],
)
def test_a_live_lock_is_not_stale(tmp_path, fields):
    out = tmp_path / "out"
    fake_lock(out, **fields)
    with pytest.raises(JobError, match="in use by job ghost-1234abcd"):
        OutputLock(StateStore(str(out)), "new-0123abcd", "new", FAST).acquire()
    assert json.loads(lock_file(out).read_text())["job_id"] == "ghost-1234abcd"


CONTENDER = """\
import sys, time
from pathlib import Path
from daskscore.errors import JobError
from daskscore.output.lock import LockSettings, OutputLock
from daskscore.output.store import StateStore

out, gate, name = sys.argv[1:]
print("ready", flush=True)
while not Path(gate + ".go").exists():
    time.sleep(0.001)
lock = OutputLock(StateStore(out), name, "contender", LockSettings(stale_after=60))
try:
    lock.acquire()
except JobError:
    print("refused", flush=True)
    sys.exit(0)
print("won", flush=True)
while not Path(gate).exists():
    time.sleep(0.01)
lock.release()
"""


def test_of_processes_taking_over_one_stale_lock_exactly_one_wins(tmp_path):
    out = tmp_path / "out"
    fake_lock(out, pid=dead_pid())
    gate = tmp_path / "gate"
    script = tmp_path / "contender.py"
    script.write_text(CONTENDER)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out), str(gate), f"c{i}-0123abcd"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(4)
    ]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 4
        Path(str(gate) + ".go").write_text("")  # all race on the same signal
        answers = [p.stdout.readline().strip() for p in procs]
        assert sorted(answers) == ["refused"] * 3 + ["won"], answers
        winner = f"c{answers.index('won')}-0123abcd"
        assert json.loads(lock_file(out).read_text())["job_id"] == winner
    finally:
        gate.write_text("")
        for p in procs:
            p.wait(timeout=60)
    assert not lock_file(out).exists()


# -- a job holds the lock --------------------------------------------------------------
SCRIPT = """
def init():
    pass

def run(mini_batch):
    return [p.rsplit("/", 1)[-1] for p in mini_batch]
"""


def test_a_job_takes_over_a_dead_runs_lock_and_removes_its_leftovers(
    tmp_path, shared_client, messages
):
    files = make_files(tmp_path / "in", 6)
    out = tmp_path / "out"
    step = make_step(
        write_script(tmp_path, SCRIPT),
        ds.Dataset.File.from_files(str(tmp_path / "in")),
        out,
        mini_batch_size=2,
    )
    fake_lock(out, pid=dead_pid())
    leftovers = [
        out / f".parallel_run_step.txt.tmp-{uuid.uuid4().hex}",
        out / ".daskscore" / "parts" / f".tmp-{uuid.uuid4().hex}",
        out / ".daskscore" / "records" / f".tmp-{uuid.uuid4().hex}",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a killed attempt")

    result = step.run(client=shared_client)

    assert result.status == "Completed"
    assert (out / "parallel_run_step.txt").read_text().split() == [
        f.name for f in files
    ]
    assert any(m.startswith("took over the lock of") for m in messages), messages
    assert not lock_file(out).exists()
    assert [p for p in leftovers if p.exists()] == []


def test_a_job_that_fails_gives_its_lock_back(tmp_path, shared_client):
    make_files(tmp_path / "in", 2)
    script = write_script(tmp_path, "import no_such_module_here\n" + SCRIPT)
    step = make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                     tmp_path / "out")
    with pytest.raises(EntryScriptError):
        step.run(client=shared_client)
    assert (tmp_path / "out" / ".daskscore").is_dir()  # it did take the lock
    assert not lock_file(tmp_path / "out").exists()


def test_wait_for_lock_waits_for_the_holder(tmp_path, shared_client, messages):
    make_files(tmp_path / "in", 2)
    out = tmp_path / "out"
    step = make_step(write_script(tmp_path, SCRIPT),
                     ds.Dataset.File.from_files(str(tmp_path / "in")), out)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from daskscore.output.lock import OutputLock
            from daskscore.output.store import StateStore
            lock = OutputLock(StateStore({str(out)!r}), "holder-0123abcd", "holder")
            lock.acquire()
            print("held", flush=True)
            sys.stdin.readline()
            lock.release()
            print("released", flush=True)
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(JobError, match="in use by job holder-0123abcd"):
            step.run(client=shared_client)
        # let it go once this job says it waits
        logger = logging.getLogger("daskscore")

        class Release(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "waiting for it to end" in record.getMessage():
                    holder.stdin.write("\n")
                    holder.stdin.flush()

        handler = Release()
        logger.addHandler(handler)
        try:
            result = step.run(client=shared_client, wait_for_lock=True)
        finally:
            logger.removeHandler(handler)
        assert result.status == "Completed"
        assert holder.stdout.readline().strip() == "released"
        assert any("waiting for it to end" in m for m in messages)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
