"""Live progress: the client counts each mini-batch as it is committed, not when
its pack task ends; a resumed job counts what was committed from the start."""

from __future__ import annotations

import io
import shutil
import threading

import dask
import pytest
from helpers import counts, make_files, make_step, write_script

import daskscore as ds
from daskscore import _settings  # noqa: F401 - the defaults before dask.config.set
from daskscore.output.store import StateStore
from daskscore.progress import ProgressCallback, TextProgress
from daskscore.scheduler.dashboard import jobs_state

pytest_plugins = ["helpers"]

pytestmark = pytest.mark.timeout(240)

N_FILES = 8

# Each mini-batch takes about a second; the 4th one (index 3) waits until the
# client has counted 3 mini-batches (the test's progress callback writes GO_FILE),
# and records whether it had to give up waiting. Its pack cannot end before.
WAITING_SCRIPT = """
import os, time

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if names == ["item-0003.txt"]:
        go = os.environ["GO_FILE"]
        for _ in range(1200):  # at most 120 s: the test fails, it does not hang
            if os.path.exists(go):
                break
            time.sleep(0.1)
        else:
            open(os.environ["GAVE_UP_FILE"], "w").close()
    else:
        time.sleep(1.0)
    return names
"""

SHORT_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""


class Recorder(ProgressCallback):
    """The done counts the client saw, in order; writes ``go`` at ``go_at``."""

    def __init__(self, go=None, go_at: int = 0) -> None:
        self.go = go
        self.go_at = go_at
        self.seen: list[int] = []
        self.at_start: tuple[int, int] | None = None

    def start(self, progress, dashboard_link) -> None:
        self.at_start = (progress.done_mini_batches, progress.resumed_mini_batches)

    def update(self, progress) -> None:
        done = progress.done_mini_batches
        if not self.seen or self.seen[-1] != done:
            self.seen.append(done)
        if self.go is not None and done >= self.go_at and not self.go.exists():
            self.go.write_text(str(done))


def run_waiting_job(tmp_path, client, name: str, progress=None):
    """One pack of 8 one-second mini-batches on one worker; mini-batch 3 waits
    for ``tmp_path / "go"``. Returns the result, the go file, the gave-up file."""
    script = write_script(tmp_path / "src", WAITING_SCRIPT)
    make_files(tmp_path / "in", N_FILES)
    go, gave_up = tmp_path / "go", tmp_path / "gave-up"
    config = {"daskscore.pack.max-mini-batches": N_FILES, "daskscore.pack.divisor": 1}
    with dask.config.set(config):
        result = make_step(
            script, ds.Dataset.File.from_files(str(tmp_path / "in")),
            tmp_path / "out", name=name, mini_batch_size="1", node_count=1,
            process_count_per_node=1,
            environment_variables={"GO_FILE": str(go), "GAVE_UP_FILE": str(gave_up)},
        ).run(client=client, progress=progress)
    return result, go, gave_up


def test_the_count_moves_per_mini_batch_before_the_pack_ends(tmp_path, shared_client):
    """The client counts 1, 2, 3 while mini-batch 3 of that pack is still waiting
    for the client to have counted 3 (so the pack, and its task, had not ended)."""
    recorder = Recorder(tmp_path / "go", go_at=3)
    result, go, gave_up = run_waiting_job(tmp_path, shared_client, "live-count",
                                          recorder)

    assert result.status == "Completed"
    assert counts(result) == (N_FILES, N_FILES, 0)
    assert go.read_text() == "3"  # written when the client had counted 3
    assert not gave_up.exists()  # ... while the pack's 4th run() was waiting
    # one at a time, each mini-batch once
    assert recorder.seen[:3] == [1, 2, 3]
    assert recorder.seen == sorted(set(recorder.seen))
    assert recorder.seen[-1] == N_FILES


def test_the_state_status_and_the_dashboard_read_moves_before_the_pack_ends(
    tmp_path, shared_client
):
    """What ``daskscore status`` and the dashboard page read (the job's state on
    the scheduler) shows 3 mini-batches done while the pack's 4th waits for it."""
    go, stop, seen = tmp_path / "go", threading.Event(), []

    def watch() -> None:
        while not stop.wait(0.2):
            states = shared_client.run_on_scheduler(jobs_state)
            for state in states.values():
                if state.get("step") != "live-status":
                    continue
                seen.append(state["done_mini_batches"])
                if state["done_mini_batches"] >= 3 and not go.exists():
                    go.write_text(f"{state['done_mini_batches']} {state['status']}")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result, go, gave_up = run_waiting_job(tmp_path, shared_client, "live-status")
    finally:
        stop.set()
        watcher.join()

    assert result.status == "Completed"
    assert go.read_text() == "3 Running"
    assert not gave_up.exists()
    assert seen == sorted(seen)
    [final] = [state for state in shared_client.run_on_scheduler(jobs_state).values()
               if state.get("step") == "live-status"]
    assert (final["done_mini_batches"], final["status"]) == (N_FILES, "Completed")


def test_a_resumed_job_counts_the_committed_mini_batches_from_the_start(
    tmp_path, shared_client
):
    script = write_script(tmp_path / "src", SHORT_SCRIPT)
    make_files(tmp_path / "in", 6)
    out = tmp_path / "out"

    def step():
        return make_step(script, ds.Dataset.File.from_files(str(tmp_path / "in")),
                         out, mini_batch_size="1")

    first = step().run(client=shared_client)
    assert counts(first) == (6, 6, 0)
    # as if the first run had stopped after 4 mini-batches
    StateStore(str(out)).drop_records({4, 5})
    shutil.rmtree(out / "logs")

    recorder, text = Recorder(), io.StringIO()

    class Both(ProgressCallback):
        def start(self, progress, link):
            recorder.start(progress, link)
            TextProgress(text).start(progress, link)

        def update(self, progress):
            recorder.update(progress)

    result = step().run(client=shared_client, progress=Both())

    assert recorder.at_start == (4, 4)
    assert "Processed 4 of 6 mini-batches (4 resumed)" in text.getvalue()
    assert recorder.seen[-1] == 6 and set(recorder.seen) <= {5, 6}
    assert counts(result) == (6, 6, 0)
    assert result.resumed_mini_batches == 4


# Mini-batch 4 kills its worker once, after the client has counted 4 (GO_FILE):
# the pack runs again on the restarted worker, which finds 0-3 recorded.
KILL_ONCE_SCRIPT = """
import os, signal, time

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    killed = os.environ["KILLED_FILE"]
    if names == ["item-0004.txt"] and not os.path.exists(killed):
        for _ in range(1200):
            if os.path.exists(os.environ["GO_FILE"]):
                break
            time.sleep(0.1)
        open(killed, "w").close()
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
    return names
"""


@pytest.mark.slow
def test_a_mini_batch_counted_live_is_counted_once_when_its_pack_runs_again(tmp_path):
    script = write_script(tmp_path / "src", KILL_ONCE_SCRIPT)
    make_files(tmp_path / "in", N_FILES)
    go, killed = tmp_path / "go", tmp_path / "killed"
    recorder = Recorder(go, go_at=4)
    config = {"daskscore.pack.max-mini-batches": N_FILES, "daskscore.pack.divisor": 1}
    with dask.config.set(config):
        result = make_step(
            script, ds.Dataset.File.from_files(str(tmp_path / "in")),
            tmp_path / "out", mini_batch_size="1", node_count=1,
            process_count_per_node=1, run_max_try=3,
            environment_variables={"GO_FILE": str(go), "KILLED_FILE": str(killed)},
        ).run(progress=recorder)  # its own embedded cluster: the worker restarts

    assert killed.exists() and go.read_text() == "4"
    assert result.status == "Completed", result.reason
    assert counts(result) == (N_FILES, N_FILES, 0)
    # 0-3 were counted live before the worker died; their records came back
    # with the pack's second execution and were not counted again
    assert recorder.seen[:4] == [1, 2, 3, 4]
    assert recorder.seen == sorted(set(recorder.seen))
    assert recorder.seen[-1] == N_FILES
