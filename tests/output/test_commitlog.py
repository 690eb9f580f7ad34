"""The commit log of a pack (a real local folder; blob storage's file-per-mark
log over fsspec's local filesystem): what a worker appends, what a resume and
``--rerun-failed`` read back."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from daskscore.engine.resume import load_state
from daskscore.output.commitlog import FileLog, PackLog, open_log
from daskscore.output.store import StateStore, pack_name, pack_range


def record(index: int, failed: bool = False) -> dict:
    return {"index": index, "succeeded": 0 if failed else 1, "failed": int(failed),
            "failed_mini_batch": failed, "tries": [{"try": 1}]}


def mark(run: str, at: float, lost: list | None = None) -> dict:
    return {"worker": "w-1", "run": run, "started_at": at, "lost": lost or []}


@pytest.fixture
def store(tmp_path):
    s = StateStore(str(tmp_path / "out"))
    load_state(s, "fp", 10, step_name="step")
    return s


def test_pack_names_carry_the_first_and_last_mini_batch():
    assert pack_name(40, 49) == "000000040-000000049.pack"
    assert pack_range("/x/records/000000040-000000049.pack") == (40, 49)
    assert pack_range("000000040.json") is None
    assert pack_range(".000000040-000000049.pack") is None
    assert pack_range("a-b.pack") is None


def test_a_pack_log_is_one_file_that_a_rerun_of_the_pack_reads_back(store):
    log = PackLog(store.records, 0, 2)
    log.start(0, mark("run-1", 1.0))
    log.commit(0, record(0))
    log.start(1, mark("run-1", 2.0))
    log.close()  # the worker died while scoring mini-batch 1

    again = PackLog(store.records, 0, 2)  # Dask runs the pack again
    assert again.record(0) == record(0) and again.mark(0) is None
    assert again.record(1) is None and again.mark(1)["started_at"] == 2.0
    assert again.mark(2) is None
    again.close()
    names = [p.name for p in Path(store.records).iterdir()]
    assert names == ["000000000-000000002.pack"]  # no file per mini-batch


def test_a_torn_line_is_skipped_and_the_lines_after_it_still_count(store):
    log = PackLog(store.records, 0, 3)
    log.start(0, mark("run-1", 1.0))
    log.commit(0, record(0))
    log.close()
    with open(log.path, "ab") as f:  # a line cut short (a crash, a full disk)
        f.write(b'\nR {"index": 1, "succeeded": 1, "fail')
    log = PackLog(store.records, 0, 3)
    log.start(2, mark("run-1", 3.0))
    log.commit(2, record(2))
    log.close()

    assert dict(store.iter_records()) == {0: record(0), 2: record(2)}
    assert PackLog(store.records, 0, 3).record(1) is None


def test_a_resume_finds_what_an_earlier_run_started_and_never_recorded(store):
    """From pack logs and from blob storage's mark files alike; a mini-batch
    recorded in another pack's log (scored again meanwhile) is not interrupted."""
    fs = fsspec.filesystem("file")
    old = PackLog(store.records, 0, 3)
    for i in range(4):
        old.start(i, mark("run-1", float(i)))
    old.commit(0, record(0))
    old.close()
    later = PackLog(store.records, 3, 3)  # 3 was scored again in a pack of its own
    later.start(3, mark("run-2", 9.0, lost=[{"try": 0}]))
    later.commit(3, record(3))
    later.close()
    blob = FileLog(fs, store.records)
    blob.start(7, mark("run-1", 7.0))

    state = load_state(store, "fp", 10)

    assert sorted(state.records) == [0, 3]
    assert sorted(state.interrupted) == [1, 2, 7]
    assert state.interrupted[2]["run"] == "run-1"
    assert state.interrupted[2]["started_at"] == 2.0
    assert store.started([1, 2, 3, 4, 7]) == [1, 2, 7]


def test_the_latest_of_several_marks_wins(store):
    for first, at in ((0, 5.0), (1, 1.0)):
        log = PackLog(store.records, first, 1)
        log.start(1, mark(f"run-at-{at}", at))
        log.close()
    assert load_state(store, "fp", 10).interrupted[1]["run"] == "run-at-5.0"


def test_rerun_failed_drops_the_failed_records_and_their_marks(store):
    log = PackLog(store.records, 0, 2)
    for i, failed in ((0, False), (1, True), (2, False)):
        log.start(i, mark("run-1", float(i)))
        log.commit(i, record(i, failed))
    log.close()
    fs = fsspec.filesystem("file")
    FileLog(fs, store.records).commit(5, record(5, failed=True))

    state = load_state(store, "fp-other", 10, rerun_failed=True)

    assert sorted(state.records) == [0, 2]
    assert sorted(store.load_records()) == [0, 2]
    again = PackLog(store.records, 0, 2)
    assert again.record(1) is None and again.mark(1) is None  # scored afresh
    assert again.record(2) == record(2)
    again.close()
    assert state.interrupted == {}


def test_blob_storage_keeps_a_file_per_mark_and_record(tmp_path):
    """Appends are for a local disk: elsewhere each mark and record is a file."""
    memory = fsspec.filesystem("memory")
    memory.mkdirs("/out/records", exist_ok=True)

    class Spec:
        def __init__(self, index):
            self.index = index

    log = open_log(memory, "/out/records", [Spec(4), Spec(5)])
    assert isinstance(log, FileLog)
    log.start(4, mark("run-1", 1.0))
    assert memory.exists("/out/records/000000004.json.started")
    log.commit(4, record(4))
    assert memory.exists("/out/records/000000004.json")
    assert not memory.exists("/out/records/000000004.json.started")
    assert isinstance(open_log(fsspec.filesystem("file"), str(tmp_path), [Spec(1)]),
                      PackLog)


def test_a_log_whose_every_mini_batch_is_known_is_not_read_again(store):
    """The end of a job reads the records it has not counted: a log of a pack it
    counted whole is skipped by its name alone (a million-mini-batch job would
    read every log again)."""
    log = PackLog(store.records, 0, 2)
    for i in range(3):
        log.commit(i, record(i))
    log.close()
    assert list(store.iter_records(known={0, 1, 2})) == []
    assert list(store.iter_records(known={0, 1})) == [(2, record(2))]
