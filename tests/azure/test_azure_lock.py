"""The output folder's lock on Azure Blob Storage (a real Azurite).

The lock blob is created only if absent (``overwrite=False``), refreshed and
removed under ETag conditions: a second job is refused naming the first, a
stale lock is taken over, and of two jobs taking over one stale lock exactly
one wins; a job that lost its lock notices and leaves the new one alone.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from daskscore.errors import JobError
from daskscore.output.lock import LockSettings, OutputLock
from daskscore.output.store import StateStore

pytestmark = pytest.mark.timeout(180)

FAST = LockSettings(stale_after=60, heartbeat_interval=0.1, poll_interval=0.05)


def _store(container) -> StateStore:
    return StateStore(f"{container.url}/out", container.storage_options)


def _lock_blob(container) -> str:
    return f"{container.name}/out/.daskscore/lock.json"


def test_blob_lock_refuses_a_second_job_and_is_removed(azure_container):
    first = OutputLock(_store(azure_container), "first-0123abcd", "first", FAST)
    first.acquire()
    fs = azure_container.fs()
    try:
        info = json.loads(fs.cat_file(_lock_blob(azure_container)))
        assert info["job_id"] == "first-0123abcd"
        with pytest.raises(JobError, match="in use by job first-0123abcd"):
            OutputLock(_store(azure_container), "second-01234567", "second",
                       FAST).acquire()
        # the heartbeat goes on (an ETag-conditioned overwrite)
        beat = info["heartbeat"]
        while json.loads(fs.cat_file(_lock_blob(azure_container)))["heartbeat"] == beat:
            time.sleep(0.02)
        assert not first.lost
    finally:
        first.release()
    assert not fs.exists(_lock_blob(azure_container))


def test_stale_blob_lock_is_taken_over_by_exactly_one_job(azure_container):
    fs = azure_container.fs()
    stale = {
        "job_id": "ghost-1234abcd", "step": "ghost", "host": "elsewhere",
        "pid": 1, "heartbeat": time.time() - 3600, "token": "t",
    }
    fs.pipe_file(_lock_blob(azure_container), json.dumps(stale).encode())
    contenders = [
        OutputLock(_store(azure_container), f"c{i}-0123abcd", "c", FAST)
        for i in range(4)
    ]
    outcome: dict[int, str] = {}
    go = threading.Barrier(len(contenders))

    def take(i: int) -> None:
        go.wait()
        try:
            contenders[i].acquire()
            outcome[i] = "won"
        except JobError:
            outcome[i] = "refused"

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(outcome.values()) == ["refused"] * 3 + ["won"], outcome
        winner = next(i for i, v in outcome.items() if v == "won")
        info = json.loads(fs.cat_file(_lock_blob(azure_container)))
        assert info["job_id"] == f"c{winner}-0123abcd"
    finally:
        for lock in contenders:
            lock.release()
    assert not fs.exists(_lock_blob(azure_container))


def test_a_job_that_lost_its_blob_lock_leaves_the_new_one(azure_container):
    slow = LockSettings(stale_after=60, heartbeat_interval=3600, poll_interval=0.05)
    old = OutputLock(_store(azure_container), "old-0123abcd", "old", slow)
    old.acquire()
    fs = azure_container.fs()
    # another job took it over (as after old's heartbeat stopped)
    thief = {"job_id": "thief-89abcdef", "host": "elsewhere", "pid": 1,
             "heartbeat": time.time(), "token": "x"}
    fs.pipe_file(_lock_blob(azure_container), json.dumps(thief).encode())

    assert old.refresh() is False
    assert old.lost
    old.release()

    info = json.loads(fs.cat_file(_lock_blob(azure_container)))
    assert info["job_id"] == "thief-89abcdef"
